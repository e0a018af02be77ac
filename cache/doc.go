// Package cache owns the runner's cache directory: where it is, the lock that keeps a prune
// from removing what a starting run is about to use, and the usage report and prune over its
// areas.
//
// The directory (Dir) holds three areas, each written by the package that owns its format:
//
//	oci/blobs/sha256/HEX          image blobs by digest (package oci)
//	rootfs/DIGEST-KEY.FORMAT      built root filesystem images, with a .lock each (package rootfs)
//	kernel/FLAVOUR/KEY/           guest kernel builds; FLAVOUR/vmlinux links the newest (kernel/build.sh)
//	kernel/build/FLAVOUR-KEY/     a kernel source tree left by a failed or interrupted build
//
// A file's modification time is its last use: the blob store and the rootfs builder refresh
// it on every cache hit, so "older than" means "not used for". Runs hold the cache lock shared
// while they read the cache (resolve, build, per-run copy); Prune holds it exclusively, so it
// never removes an entry between a run's cache hit and its copy.
package cache
