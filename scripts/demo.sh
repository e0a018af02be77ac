#!/usr/bin/env bash
# demo.sh — the main job end to end (make demo runs it after installing what is needed and
# building the kernel, the runner and the init): build the spec's test images without Docker,
# then run one through the whole pipeline — image → rootfs → microVM → result.
#
# On hardware KVM a run takes well under a second after the first (cached) rootfs build; on an
# emulated KVM host (kvm_pvm, like the development machines) the guest kernel needs ~1 minute.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${RUNNER_DEMO_IMAGES:-${XDG_CACHE_HOME:-$HOME/.cache}/vmbench/demo-images}
export CGO_ENABLED=0

echo "== building the test images (busybox-static, no Docker) into $images"
go run ./cmd/mkimages -o "$images"

echo "== runner inspect --image oci:$images:basic"
bin/runner inspect --image "oci:$images:basic"

echo "== runner run --image oci:$images:basic   (backend auto: a KVM microVM when /dev/kvm works)"
start=$(date +%s%N)
bin/runner --log-level info run --image "oci:$images:basic"
echo "== done in $(( ($(date +%s%N) - start) / 1000000 )) ms"
