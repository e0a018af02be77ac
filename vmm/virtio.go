package vmm

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/devices/virtio"
	"github.com/vmbench/runner/vmm/devices/virtio/mmio"
	"github.com/vmbench/runner/vmm/kvm"
)

// virtioSlot is one attached virtio-mmio device: its transport, its interrupt (an irqfd)
// and its queue-notify eventfds with the goroutines that forward them.
type virtioSlot struct {
	index     int
	transport *mmio.Transport
	irq       *irqfd
	notifiers []*os.File // one eventfd per queue, registered as ioeventfds
	wg        sync.WaitGroup
}

func virtioBase(i int) uint64       { return VirtioMMIOBase + uint64(i)*mmio.Size }
func virtioIRQ(i int) uint32        { return uint32(firstDeviceIRQ + i) }
func virtioCmdlineArg(i int) string { return mmio.CmdlineArg(virtioBase(i), virtioIRQ(i)) }

// attachVirtio wires device i: irqfd on GSI 5+i, the transport on the MMIO bus, and (when
// KVM has ioeventfds) one ioeventfd per queue on QueueNotify with datamatch = queue index,
// so a guest kick costs no exit to user space and no work on the vCPU thread.
// It returns the slot even on error, for cleanup.
func (m *Machine) attachVirtio(i int, dev virtio.Device, ioeventfds bool) (*virtioSlot, error) {
	base, gsi := virtioBase(i), virtioIRQ(i)
	s := &virtioSlot{index: i}
	irq, err := newIRQFD(m.vm, gsi)
	if err != nil {
		return s, fmt.Errorf("vmm: virtio device %d (%v): %w", i, dev.ID(), err)
	}
	s.irq = irq
	s.transport = mmio.New(dev, m.mem, irq, m.log.With("virtio", i))
	if err := m.mmio.Register(base, mmio.Size, fmt.Sprintf("virtio-%d-%v", i, dev.ID()), s.transport); err != nil {
		return s, fmt.Errorf("vmm: %w", err)
	}
	if !ioeventfds {
		return s, nil // kicks arrive as MMIO writes to QueueNotify on the vCPU thread
	}
	for q := range s.transport.NumQueues() {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return s, fmt.Errorf("vmm: virtio device %d queue %d: eventfd: %w", i, q, err)
		}
		f := os.NewFile(uintptr(efd), fmt.Sprintf("virtio-%d-q%d", i, q))
		match := uint64(q)
		if err := m.vm.RegisterIOEventFD(efd, kvm.IOEventFDSpec{Addr: base + mmio.QueueNotifyOffset, Len: 4, Datamatch: &match}); err != nil {
			f.Close()
			return s, fmt.Errorf("vmm: virtio device %d queue %d: %w", i, q, err)
		}
		s.notifiers = append(s.notifiers, f)
		s.wg.Add(1)
		go s.forwardKicks(f, q)
	}
	return s, nil
}

// forwardKicks turns eventfd wake-ups into Transport.Notify calls until f is closed.
func (s *virtioSlot) forwardKicks(f *os.File, q int) {
	defer s.wg.Done()
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			return // closed
		}
		s.transport.Notify(q)
	}
}

// close stops the kick forwarders, closes the transport (and with it the device, if owned)
// and the irqfd. The VM fd's closing drops the KVM registrations.
func (s *virtioSlot) close(ownDevice bool) error {
	var errs []error
	for _, f := range s.notifiers {
		errs = append(errs, f.Close())
	}
	s.wg.Wait()
	if s.transport != nil && ownDevice {
		errs = append(errs, s.transport.Close())
	}
	if s.irq != nil {
		errs = append(errs, s.irq.close())
	}
	return errors.Join(errs...)
}

// irqfd is an edge-triggered interrupt line: writing the eventfd makes KVM inject the GSI.
// It implements mmio.IRQ.
type irqfd struct {
	fd  int
	gsi uint32
}

func newIRQFD(vm *kvm.VM, gsi uint32) (*irqfd, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("irqfd eventfd: %w", err)
	}
	if err := vm.RegisterIRQFD(fd, gsi); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &irqfd{fd: fd, gsi: gsi}, nil
}

var one = [8]byte{1}

// Trigger raises the interrupt. A saturated counter (EAGAIN) means an injection is already
// pending, which is as good.
func (q *irqfd) Trigger() error {
	if _, err := unix.Write(q.fd, one[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("irqfd gsi %d: %w", q.gsi, err)
	}
	return nil
}

func (q *irqfd) close() error {
	if q.fd < 0 {
		return nil
	}
	err := unix.Close(q.fd)
	q.fd = -1
	return err
}
