#!/usr/bin/env bash
# bench.sh — the project's benchmarks in one run (make bench). Every number is printed next to
# a baseline measured in the same run (a ratio), or against the spec's target.
#
#   1. runner run of the spec's basic image through the VM: boot timer, total time and VMM memory
#      against the spec's targets (boot < 500 ms, VMM overhead < 100 MiB), and against qemu's
#      microvm booting the same kernel and root filesystem (bench/runbench)
#   2. the VMM: memory overhead for 128 MiB and 1 GiB guests, VMM start to first KVM_RUN
#   3. devices: virtio-blk 4 KiB random-read IOPS, vsock throughput both ways
#   4. host pipeline: flatten + mkfs vs tar + mkfs.ext4 by shell; init → host stdout throughput;
#      sandbox init start → exec
#
# RUNS (default 3) sets the number of VM boots per side in step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
runs=${RUNS:-3}

section() { printf '\n=== %s\n' "$*"; }
gobench() { go test -run '^$' -count=1 "$@" 2>&1 | grep -Ev '^(goos|goarch|pkg|cpu|PASS)' ; }

section "runner run (basic image) vs targets and vs qemu -M microvm"
go run ./bench/runbench -runs "$runs" -runner bin/runner

section "VMM: memory overhead, start to first KVM_RUN, Stop latency"
gobench -bench . -benchtime 3x ./vmm/

section "virtio-blk: 4 KiB random reads through the device vs plain pread"
gobench -bench BlkRandRead4K -benchtime 20000x ./vmm/devices/virtio/blk/

section "virtio-vsock: throughput vs a plain Unix socket pair"
gobench -bench Vsock -benchtime 2s ./vmm/devices/virtio/vsock/

section "rootfs: flatten + mkfs of a ~100 MB image vs tar -x + mkfs.ext4 -d by shell"
gobench -bench Build100MB -benchtime 3x ./rootfs/

section "protocol and init: stdout throughput init -> host; sandbox init start -> exec"
gobench -bench . ./runner/session/ ./runner/sandbox/
