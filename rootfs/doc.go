// Package rootfs turns an OCI image into a root filesystem image for the guest.
//
// Flatten applies an image's layers in order onto an empty directory with tar and OCI
// semantics: whiteouts (.wh.NAME) and opaque whiteouts (.wh..wh..opq) hide lower-layer
// content, hard links (also one that precedes its target in a layer), symlinks, device
// nodes, fifos, modes (setuid/setgid/sticky), uid/gid, mtimes and xattrs are kept. Layers
// are hostile input: every entry is resolved inside the root component by component,
// following the image's own symlinks as the guest would (an absolute target restarts at the
// root) and rejecting, with an error naming the layer and entry, any entry that would land
// outside it (".." traversal, writing through a symlink that climbs out, a hard link to
// outside). Absolute names are taken relative to the root, as Docker does. All writes go
// through directory fds opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a bug
// in the resolver fails closed instead of escaping. Limits caps bytes and entries against
// decompression bombs. Layers may be uncompressed, gzip or zstd.
//
// Build flattens an image, installs the guest init at InitPath with the directories the init
// needs (/.bencher/rw, and /proc /sys /dev /run /tmp when missing), and makes an ext4 image
// (mkfs.ext4 -d, no journal) or a squashfs image (mksquashfs, zstd). The tree is unpacked in
// /dev/shm when the image clearly fits in memory (file creation there is ~50x cheaper than
// on this host's disk) and on disk otherwise; it is deleted after mkfs, and trees left by a
// builder that died are swept by the next Build. Results are cached by (image digest, init
// sha256, format, size) under a file lock, so a second Build of the same image skips unpack
// and mkfs. CopyForRun gives each run a private writable copy cheaply (reflink where the
// filesystem has it, else a sparse copy). Flatten and Build need root (file ownership,
// device nodes).
package rootfs
