package x86

import (
	"fmt"
	"io"
	"os"

	"github.com/vmbench/runner/vmm/guestmem"
)

// BootConfig names what to boot.
type BootConfig struct {
	Kernel  string // vmlinux (ELF) or bzImage
	Initrd  string // optional
	Cmdline string
}

// BootInfo is what LoadLinux put where.
type BootInfo struct {
	Kernel     *Kernel
	InitrdAddr uint64
	InitrdSize uint64
}

// LoadLinux loads the kernel, the optional initrd and the command line into guest memory
// and writes the zero page and the long-mode boot tables. The MP table and the vCPU
// registers are the caller's (they depend on the vCPU count and CPUID).
func LoadLinux(mem *guestmem.Memory, cfg BootConfig) (*BootInfo, error) {
	k, err := LoadKernelFile(mem, cfg.Kernel)
	if err != nil {
		return nil, err
	}
	info := &BootInfo{Kernel: k}
	if cfg.Initrd != "" {
		if info.InitrdAddr, info.InitrdSize, err = LoadInitrdFile(mem, cfg.Initrd, k); err != nil {
			return nil, err
		}
	}
	if err := WriteCmdline(mem, cfg.Cmdline, k.CmdlineMax); err != nil {
		return nil, err
	}
	bp := BootParams{
		Setup:       k.Setup,
		CmdlineAddr: CmdlineAddr,
		CmdlineSize: uint32(len(cfg.Cmdline)),
		InitrdAddr:  info.InitrdAddr,
		InitrdSize:  info.InitrdSize,
		E820:        E820Map(mem),
	}
	zp, err := bp.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := mem.WriteAt(zp, ZeroPageAddr); err != nil {
		return nil, fmt.Errorf("zero page: %w", err)
	}
	if err := WriteLongModeTables(mem); err != nil {
		return nil, err
	}
	return info, nil
}

// LoadInitrdFile places the initrd at the top of low RAM (below the MMIO hole and the
// kernel's initrd_addr_max), page aligned, above the kernel, as qemu and Firecracker do.
func LoadInitrdFile(mem *guestmem.Memory, path string, k *Kernel) (addr, size uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("initrd: %w", err)
	}
	addr, err = InitrdAddr(mem, k, uint64(st.Size()))
	if err != nil {
		return 0, 0, fmt.Errorf("initrd %s: %w", path, err)
	}
	dst, err := mem.Slice(addr, uint64(st.Size()))
	if err != nil {
		return 0, 0, fmt.Errorf("initrd %s: %w", path, err)
	}
	if _, err := io.ReadFull(f, dst); err != nil {
		return 0, 0, fmt.Errorf("initrd %s: read: %w", path, err)
	}
	return addr, uint64(st.Size()), nil
}

// InitrdAddr computes where an initrd of size bytes goes.
func InitrdAddr(mem *guestmem.Memory, k *Kernel, size uint64) (uint64, error) {
	r := mem.Regions()[0]
	top := min(r.GuestAddr+r.Size, k.InitrdAddrMax+1)
	if size == 0 {
		return 0, fmt.Errorf("empty initrd")
	}
	if size > top || (top-size)&^0xfff < k.End {
		return 0, fmt.Errorf("%d bytes do not fit between the kernel (ends %#x) and %#x: give the guest more memory",
			size, k.End, top)
	}
	return (top - size) &^ 0xfff, nil
}
