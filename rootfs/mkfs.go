package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Format is the root filesystem type.
type Format string

const (
	FormatExt4     Format = "ext4"     // writable; mkfs.ext4 -d, no journal
	FormatSquashfs Format = "squashfs" // read-only; the init overlays a tmpfs at RWDir
)

// ParseFormat accepts "ext4" or "squashfs" ("" = ext4).
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatExt4:
		return FormatExt4, nil
	case FormatSquashfs:
		return FormatSquashfs, nil
	}
	return "", fmt.Errorf("rootfs: format %q: want ext4 or squashfs", s)
}

// treeUsage is what a directory tree needs on an ext4 filesystem with 4 KiB blocks.
type treeUsage struct {
	inodes int64 // distinct inodes (hard links counted once)
	bytes  int64 // data blocks, in bytes
}

const blockSize = 4096

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// measure walks dir without following symlinks.
func measure(dir string) (treeUsage, error) {
	var u treeUsage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if ok && st.Nlink > 1 && !d.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.inodes++
		switch {
		case d.IsDir():
			u.bytes += roundUp(max(info.Size(), blockSize), blockSize)
		case info.Mode().IsRegular():
			u.bytes += roundUp(info.Size(), blockSize)
		case info.Mode()&fs.ModeSymlink != 0 && info.Size() >= 60:
			u.bytes += blockSize // longer targets do not fit in the inode
		}
		return nil
	})
	return u, err
}

// Sizing of the ext4 image (see ext4Size).
const (
	inodeSize        = 256
	minFreeInodes    = 16384     // room for files the benchmark creates
	defaultHeadroom  = 256 << 20 // free space for the benchmark when --disk is not given
	metadataSlackPct = 5         // bitmaps, group descriptors, directory growth
	fixedSlack       = 16 << 20
)

// ext4Size returns the image size in bytes and the inode count for a tree. diskMiB > 0 fixes
// the size; it must hold the content.
func ext4Size(u treeUsage, diskMiB int) (size, inodes int64, err error) {
	inodes = u.inodes + max(minFreeInodes, u.inodes/2)
	need := u.bytes + inodes*inodeSize
	need += need*metadataSlackPct/100 + fixedSlack
	if diskMiB > 0 {
		size = int64(diskMiB) << 20
		if size < need {
			return 0, 0, fmt.Errorf("rootfs: --disk %d MiB is too small: the image needs at least %d MiB",
				diskMiB, roundUp(need, 1<<20)>>20)
		}
		// Keep mke2fs's usual ratio (one inode per 16 KiB) on a large disk.
		inodes = max(inodes, size/16384)
		return size, inodes, nil
	}
	return roundUp(need+defaultHeadroom, 1<<20), inodes, nil
}

// run runs a tool, returning its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// mkfsExt4 makes an ext4 image of tree at out (a new file) with mkfs.ext4 -d.
//
// Flags: 4 KiB blocks and 256-byte inodes (ext4 defaults, pinned); no journal, because each
// run gets a throw-away copy that is discarded after the VM stops, so crash consistency buys
// nothing while the journal costs 64+ MiB of writes at mkfs, a jbd2 thread and a journal
// commit per fsync in an emulated guest; -m 0 (no root reserve: the benchmark runs as
// root anyway); lazy_itable_init=0 so the guest kernel never starts ext4lazyinit (mke2fs
// discards the sparse file first, so zeroed inode tables cost nothing); root_owner=0:0;
// uuid/hash seed fixed from the cache key so the same key gives the same image.
func mkfsExt4(ctx context.Context, tree, out string, size, inodes int64, uuid string) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return run(ctx, "mkfs.ext4", "-F", "-q",
		"-b", fmt.Sprint(blockSize), "-I", fmt.Sprint(inodeSize), "-N", fmt.Sprint(inodes),
		"-m", "0", "-L", "rootfs", "-U", uuid,
		"-O", "^has_journal",
		"-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0,hash_seed="+uuid,
		"-d", tree, out)
}

// mkfsSquashfs makes a squashfs image of tree at out with zstd compression (the guest
// kernel has SQUASHFS_ZSTD), keeping owners, modes, xattrs and times.
func mkfsSquashfs(ctx context.Context, tree, out string) error {
	return run(ctx, "mksquashfs", tree, out, "-noappend", "-quiet", "-no-progress",
		"-comp", "zstd", "-b", "131072", "-xattrs")
}
