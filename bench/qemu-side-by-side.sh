#!/usr/bin/env bash
# bench/qemu-side-by-side.sh — time from start to the first /init line, our VMM against
# qemu-system-x86_64 -M microvm -enable-kvm (Debian's qemu), same kernel and initramfs,
# alternating runs; prints each run and the median ratio ours/qemu.
#
#   bench/qemu-side-by-side.sh [-runs N] [-vcpus N] [-mem MiB] [-kernel PATH] [-v]
#
# Needs /dev/kvm, qemu-system-x86_64, busybox-static and cpio (scripts/install-deps.sh) and
# the guest kernel (make kernel). On a kvm_pvm host each boot takes ~30 s of one core
# (the guest kernel runs in KVM's instruction emulator); run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/bootcmp "$@"
