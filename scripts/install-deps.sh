#!/usr/bin/env bash
# install-deps.sh — install the system packages the runner, its tests and the kernel build need.
#
# Idempotent and quick when everything is present (one dpkg-query, no apt-get). Groups:
#   base    tools the runner calls at run time and the tests use (mkfs, mksquashfs, busybox, registry)
#   kernel  what kernel/build.sh needs (Debian's linux-source-6.1 and the build toolchain)
#   qemu    qemu-system-x86 for the kernel smoke tests and the side-by-side benchmarks
# Usage: scripts/install-deps.sh [base] [kernel] [qemu]   (no argument = all groups)
set -euo pipefail

declare -A groups=(
  [base]="e2fsprogs squashfs-tools busybox-static docker-registry iproute2 util-linux"
  [kernel]="linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils make gcc"
  [qemu]="qemu-system-x86"
)

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(base kernel qemu)

pkgs=()
for g in "${want[@]}"; do
  [ -n "${groups[$g]:-}" ] || { echo "install-deps: unknown group '$g' (base, kernel, qemu)" >&2; exit 2; }
  # shellcheck disable=SC2206
  pkgs+=(${groups[$g]})
done

# One dpkg-query for all packages (kernel/build.sh calls this on every run; it must stay fast).
declare -A installed=()
while read -r name status; do
  [ "${status:0:2}" = "ii" ] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
  [ -n "${installed[$p]:-}" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Update the package lists at most once per hour; a fresh machine has none.
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -1)
if [ -z "$lists" ]; then
  $SUDO apt-get update -q >&2 || { echo "install-deps: apt-get update failed" >&2; exit 1; }
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
