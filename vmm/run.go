package vmm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbench/runner/vmm/kvm"
)

// rekickInterval is how often Run re-sends the kick signal to vCPU threads that have not
// yet stopped (a belt to immediate_exit's braces).
const rekickInterval = 10 * time.Millisecond

// vcpuResult is how one vCPU thread ended.
type vcpuResult struct {
	exit Exit
	err  error
}

// errAlreadyRan is returned by a second Run.
var errAlreadyRan = errors.New("vmm: machine already ran")

// Run starts the vCPUs and blocks until the run ends: the guest resets or powers off, a
// vCPU fails (the error is returned, Exit.Reason is ExitError), ctx is done or Stop is
// called (ExitStopped, no error). All vCPU threads have stopped when Run returns. A
// machine runs once.
func (m *Machine) Run(ctx context.Context) (Exit, error) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	m.lifeMu.RLock()
	closed := m.closed
	m.lifeMu.RUnlock()
	if closed {
		return Exit{}, fmt.Errorf("vmm: run: machine closed")
	}
	if m.ran.Swap(true) {
		return Exit{}, errAlreadyRan
	}
	start := time.Now()
	m.timer.Start(start)
	results := make(chan vcpuResult, len(m.vcpus))
	done := make([]chan struct{}, len(m.vcpus))
	for i, v := range m.vcpus {
		done[i] = make(chan struct{})
		go m.vcpuThread(v, results, done[i])
	}

	var first vcpuResult
	remaining := len(m.vcpus)
	select {
	case first = <-results:
		remaining--
	case <-ctx.Done():
		first = vcpuResult{exit: Exit{Reason: ExitStopped, VCPU: -1}}
		m.log.Debug("vmm: context done, stopping", "cause", context.Cause(ctx))
	}
	m.Stop()
	// Collect the other vCPUs, re-kicking stragglers.
	tick := time.NewTicker(rekickInterval)
	defer tick.Stop()
	for remaining > 0 {
		select {
		case r := <-results:
			remaining--
			if r.err != nil && first.err == nil && first.exit.Reason == ExitStopped {
				first = r // a real failure outranks a stop
			}
		case <-tick.C:
			for i, v := range m.vcpus {
				select {
				case <-done[i]:
				default:
					m.kick(v)
				}
			}
		}
	}
	exit := first.exit
	exit.Duration = time.Since(start)
	for _, v := range m.vcpus {
		exit.IOExits += v.ioExits.Load()
		exit.MMIOExits += v.mmioExits.Load()
	}
	exit.ConsoleDropped = m.console.Dropped()
	ur, uw := m.pio.Unclaimed()
	mr, mw := m.mmio.Unclaimed()
	m.log.Debug("vmm: run ended", "reason", exit.Reason, "vcpu", exit.VCPU, "rip", fmt.Sprintf("%#x", exit.RIP),
		"duration", exit.Duration, "io_exits", exit.IOExits, "mmio_exits", exit.MMIOExits,
		"unclaimed_pio", ur+uw, "unclaimed_mmio", mr+mw, "console_dropped", exit.ConsoleDropped, "error", first.err)
	return exit, first.err
}

// Stop ends a run: every vCPU leaves KVM_RUN promptly (immediate_exit plus a kick signal)
// and Run returns ExitStopped. Safe from any goroutine, before, during or after Run.
func (m *Machine) Stop() {
	m.stopping.Store(true)
	m.lifeMu.RLock()
	defer m.lifeMu.RUnlock()
	if m.closed {
		return
	}
	for _, v := range m.vcpus {
		m.kick(v)
	}
}

// kick makes v leave KVM_RUN: immediate_exit first (covers a thread about to enter), then
// the signal (covers a thread inside).
// Precondition: the machine is not closed (lifeMu held shared, or Run in progress).
func (m *Machine) kick(v *vcpu) {
	v.cpu.Run().SetImmediateExit(true)
	if err := kickThread(int(v.tid.Load())); err != nil {
		m.log.Warn("vmm: kick vCPU thread", "vcpu", v.id, "error", err)
	}
}

// vcpuThread runs one vCPU on a locked OS thread until it stops, then reports. The thread
// is not unlocked: it exits with the goroutine, so no other goroutine ever runs on a
// thread that may still receive a kick.
func (m *Machine) vcpuThread(v *vcpu, results chan<- vcpuResult, done chan<- struct{}) {
	runtime.LockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	var res vcpuResult
	defer func() {
		if p := recover(); p != nil {
			res = vcpuResult{exit: Exit{Reason: ExitError, VCPU: v.id},
				err: fmt.Errorf("vmm: vCPU %d: panic in exit handling: %v", v.id, p)}
		}
		v.tid.Store(0)
		close(done)
		results <- res
	}()
	res = m.vcpuLoop(v)
}

// vcpuLoop enters the guest until the vCPU's run ends.
func (m *Machine) vcpuLoop(v *vcpu) vcpuResult {
	run := v.cpu.Run()
	for {
		if m.stopping.Load() {
			return m.stopped(v)
		}
		if v.id == 0 {
			m.firstRunNs.CompareAndSwap(0, int64(time.Since(m.created)))
		}
		if err := v.cpu.RunOnce(); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue // a kick (stopping is checked above) or the Go runtime's preemption
			}
			return m.fail(v, err)
		}
		switch reason := run.ExitReason(); reason {
		case kvm.ExitIO:
			if err := m.handleIO(v, run); err != nil {
				return m.fail(v, err)
			}
			if m.resetReq.Load() {
				return m.guestExit(v, Exit{Reason: ExitReset})
			}
		case kvm.ExitMMIO:
			if err := m.handleMMIO(v, run); err != nil {
				return m.fail(v, err)
			}
		case kvm.ExitShutdown:
			return m.guestExit(v, Exit{Reason: ExitShutdown})
		case kvm.ExitSystemEvent:
			ev := run.SystemEvent()
			return m.guestExit(v, Exit{Reason: ExitSystemEvent, SystemEvent: ev.Type})
		case kvm.ExitInternalError:
			return vcpuResult{exit: Exit{Reason: ExitError, VCPU: v.id}, err: m.internalError(v, run.Internal())}
		case kvm.ExitIntr:
			// A signal arrived while KVM was about to enter; loop.
		case kvm.ExitFailEntry:
			hw, cpu := run.FailEntry()
			return m.fail(v, fmt.Errorf("KVM_EXIT_FAIL_ENTRY: hardware reason %#x on host CPU %d", hw, cpu))
		default:
			return m.fail(v, fmt.Errorf("unexpected exit %v", reason))
		}
	}
}

// stopped is v's result when Stop ended the run; where each vCPU was is logged, which is
// what one needs to see where a hung guest was stuck.
func (m *Machine) stopped(v *vcpu) vcpuResult {
	if regs, err := v.cpu.Regs(); err == nil {
		m.log.Debug("vmm: vCPU stopped", "vcpu", v.id, "rip", fmt.Sprintf("%#x", regs.RIP))
	}
	return vcpuResult{exit: Exit{Reason: ExitStopped, VCPU: -1}}
}

// guestExit completes an Exit the guest caused on v.
func (m *Machine) guestExit(v *vcpu, e Exit) vcpuResult {
	e.VCPU = v.id
	if regs, err := v.cpu.Regs(); err == nil {
		e.RIP = regs.RIP
	}
	return vcpuResult{exit: e}
}

// fail wraps a vCPU error.
func (m *Machine) fail(v *vcpu, err error) vcpuResult {
	e := Exit{Reason: ExitError, VCPU: v.id}
	if regs, rerr := v.cpu.Regs(); rerr == nil {
		e.RIP = regs.RIP
	}
	return vcpuResult{exit: e, err: fmt.Errorf("vmm: vCPU %d at RIP %#x: %w", v.id, e.RIP, err)}
}

// handleIO dispatches a port I/O exit (Count repetitions for string instructions).
func (m *Machine) handleIO(v *vcpu, run *kvm.Run) error {
	v.ioExits.Add(1)
	io, err := run.IO()
	if err != nil {
		return err
	}
	size := int(io.Size)
	for i := range int(io.Count) {
		d := io.Data[i*size : (i+1)*size]
		if io.Direction == kvm.IODirectionOut {
			m.pio.Write(uint64(io.Port), d)
		} else {
			m.pio.Read(uint64(io.Port), d)
		}
	}
	return nil
}

// handleMMIO dispatches an MMIO exit.
func (m *Machine) handleMMIO(v *vcpu, run *kvm.Run) error {
	v.mmioExits.Add(1)
	a, err := run.MMIO()
	if err != nil {
		return err
	}
	if a.IsWrite {
		m.mmio.Write(a.PhysAddr, a.Data)
	} else {
		m.mmio.Read(a.PhysAddr, a.Data)
	}
	return nil
}

// internalError builds the *InternalError for a KVM_EXIT_INTERNAL_ERROR, with the
// instruction bytes at RIP.
func (m *Machine) internalError(v *vcpu, in kvm.Internal) error {
	e := &InternalError{VCPU: v.id, Suberror: in.Suberror, Data: in.Data, Code: in.Insn}
	regs, err := v.cpu.Regs()
	if err != nil {
		return errors.Join(e, err)
	}
	e.RIP = regs.RIP
	if len(e.Code) == 0 {
		e.Code = m.codeAt(v, regs.RIP)
	}
	return e
}

// codeAt reads up to 15 bytes at the vCPU's RIP through its page tables (nil on failure).
// The read stops at the page boundary (the next page may not be mapped).
func (m *Machine) codeAt(v *vcpu, rip uint64) []byte {
	sregs, err := v.cpu.Sregs()
	if err != nil {
		return nil
	}
	linear := sregs.CS.Base + rip
	gpa, ok, err := v.cpu.Translate(linear)
	if err != nil || !ok {
		return nil
	}
	n := min(uint64(15), 0x1000-gpa&0xfff)
	code := make([]byte, n)
	if _, err := m.mem.ReadAt(code, int64(gpa)); err != nil {
		return nil
	}
	return code
}
