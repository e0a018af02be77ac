#!/usr/bin/env bash
# kernel/build.sh — build the runner's guest kernel (vmlinux) from Debian's linux-source-6.1.
#
#   kernel/build.sh [--flavour stock|kvm-pvm|auto|all] [--print-key]
#
# Flavours share one configuration (kernel/config/microvm.config):
#   stock    the Debian source as shipped — what hardware-KVM hosts boot.
#   kvm-pvm  the same plus kernel/patches/kvm-pvm/*.patch, for hosts whose /dev/kvm is kvm_pvm
#            without PVM-guest support (see kernel/README.md); auto-detected by /sys/module/kvm_pvm.
# The result is cached outside the repository, keyed by (source package version, config, patches,
# this script):  $CACHE/kernel/<flavour>/<key>/vmlinux, with $CACHE/kernel/<flavour>/vmlinux a
# symlink to the newest build — that is where the runner looks by default.
# CACHE = $RUNNER_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/vmbench.
# A cache hit does no apt, no extraction, no make: it prints the path and exits.
# The LAST LINE of output is the vmlinux path of the selected flavour (with --flavour all: the
# auto-detected one). Everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${RUNNER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmbench}
flavour=${KERNEL_FLAVOUR:-auto}
print_key=0

while [ $# -gt 0 ]; do
  case "$1" in
    --flavour) flavour=$2; shift 2 ;;
    --flavour=*) flavour=${1#*=}; shift ;;
    --print-key) print_key=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "kernel/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf 'kernel: %s\n' "$*" >&2; }

detect_flavour() {
  # kvm_pvm is the only KVM module whose guests need the patched kernel; hardware KVM is stock.
  if [ -d /sys/module/kvm_pvm ]; then echo kvm-pvm; else echo stock; fi
}

src_version() {
  dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true
}

# cache_key FLAVOUR: short hash of everything that determines the vmlinux bytes.
cache_key() {
  local fl=$1 ver
  ver=$(src_version)
  {
    echo "linux-source-6.1=$ver"
    echo "flavour=$fl"
    cat "$here/config/microvm.config"
    if [ "$fl" = kvm-pvm ]; then cat "$here"/patches/kvm-pvm/*.patch; fi
    # The build recipe itself (this file) is part of the key.
    cat "$here/build.sh"
  } | sha256sum | cut -c1-16
}

build_one() {
  local fl=$1 ver key out dir tree jobs start
  ver=$(src_version)
  if [ -z "$ver" ]; then
    "$repo/scripts/install-deps.sh" kernel
    ver=$(src_version)
  fi
  key=$(cache_key "$fl")
  dir="$cache/kernel/$fl/$key"
  out="$dir/vmlinux"
  if [ -s "$out" ]; then
    ln -sfn "$key/vmlinux" "$cache/kernel/$fl/vmlinux"
    log "$fl: cache hit ($key)"
    return 0
  fi

  "$repo/scripts/install-deps.sh" kernel
  mkdir -p "$cache/kernel/$fl"
  # One build per flavour at a time; a second caller waits and then hits the cache.
  exec 9>"$cache/kernel/$fl/.lock"
  flock 9
  if [ -s "$out" ]; then
    ln -sfn "$key/vmlinux" "$cache/kernel/$fl/vmlinux"
    log "$fl: cache hit after wait ($key)"
    exec 9>&-
    return 0
  fi

  start=$(date +%s)
  tree="$cache/kernel/build/$fl-$key"
  rm -rf "$tree"
  mkdir -p "$tree"
  log "$fl: extracting linux-source-6.1 $ver"
  tar -xf /usr/src/linux-source-6.1.tar.xz -C "$tree" --strip-components=1
  if [ "$fl" = kvm-pvm ]; then
    for p in "$here"/patches/kvm-pvm/*.patch; do
      log "$fl: applying $(basename "$p")"
      patch -s -p1 -d "$tree" < "$p"
    done
  fi

  # Reproducible: no timestamps, user or host name from this machine end up in the image.
  export KBUILD_BUILD_TIMESTAMP="1970-01-01 00:00:00 UTC" KBUILD_BUILD_USER=vmbench \
         KBUILD_BUILD_HOST=vmbench KBUILD_BUILD_VERSION=1 ARCH=x86_64
  jobs=$(nproc)
  (
    cd "$tree"
    make -s allnoconfig
    scripts/kconfig/merge_config.sh -m .config "$here/config/microvm.config" >/dev/null
    make -s olddefconfig
  ) >&2
  verify_config "$tree/.config"
  log "$fl: building vmlinux with -j$jobs (a few minutes)"
  if ! make -C "$tree" -s -j"$jobs" vmlinux > "$tree/build.log" 2>&1; then
    tail -n 40 "$tree/build.log" >&2
    log "$fl: build failed; full log in $tree/build.log"
    exit 1
  fi
  mkdir -p "$dir"
  cp "$tree/.config" "$dir/config"
  cp "$tree/vmlinux" "$out.tmp"
  mv "$out.tmp" "$out"
  ln -sfn "$key/vmlinux" "$cache/kernel/$fl/vmlinux"
  [ "${KEEP_BUILD:-0}" = 1 ] || rm -rf "$tree"
  log "$fl: built in $(( $(date +%s) - start )) s, $(stat -c %s "$out") bytes"
  exec 9>&-
}

# verify_config FILE: every option the fragment asks for must be in the final .config;
# Kconfig silently drops options whose dependencies are missing, and that must fail the build.
verify_config() {
  local cfg=$1 bad=0 line name want got
  while IFS= read -r line; do
    case "$line" in ''|\#*) continue ;; esac
    name=${line%%=*}
    want=${line#*=}
    got=$(grep -E "^$name=|^# $name is not set" "$cfg" || true)
    if [ "$want" = n ]; then
      case "$got" in "# $name is not set"|"") ;; *) log "config: $name wanted n, got '$got'"; bad=1 ;; esac
    elif [ "$got" != "$name=$want" ]; then
      log "config: $name wanted $want, got '${got:-absent}'"
      bad=1
    fi
  done < "$here/config/microvm.config"
  [ $bad -eq 0 ] || { log "config fragment not satisfied"; exit 1; }
}

detected=$(detect_flavour)
case "$flavour" in
  auto) flavours=("$detected") ; final=$detected ;;
  all) flavours=(stock kvm-pvm) ; final=$detected ;;
  stock|kvm-pvm) flavours=("$flavour") ; final=$flavour ;;
  *) echo "kernel/build.sh: unknown flavour '$flavour' (stock, kvm-pvm, auto, all)" >&2; exit 2 ;;
esac

if [ $print_key = 1 ]; then
  for fl in "${flavours[@]}"; do echo "$fl $(cache_key "$fl")"; done
  exit 0
fi

for fl in "${flavours[@]}"; do build_one "$fl"; done
readlink -f "$cache/kernel/$final/vmlinux"
