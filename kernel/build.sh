#!/usr/bin/env bash
# kernel/build.sh — build the runner's guest kernel (vmlinux) from Debian's linux-source-6.1.
#
#   kernel/build.sh [--flavour stock|kvm-pvm|auto|all] [--print-key]
#
# Flavours share one configuration (kernel/config/microvm.config):
#   stock    the Debian source as shipped — what hardware-KVM hosts boot.
#   kvm-pvm  the same plus kernel/patches/kvm-pvm/*.patch, for hosts whose /dev/kvm is kvm_pvm
#            without PVM-guest support (see kernel/README.md).
# auto (the default) picks kvm-pvm when /sys/module/kvm_pvm exists, else stock; $RUNNER_KERNEL_FLAVOUR
# (the variable the runner reads too) or --flavour overrides it.
# The result is cached outside the repository, keyed by everything that determines its bytes
# (source package version, compiler and linker versions, config fragment, patches, this script):
#   $CACHE/kernel/<flavour>/<key>/{vmlinux,config,build-info}
#   $CACHE/kernel/<flavour>/vmlinux -> <key>/vmlinux    (newest build; where the runner looks)
# CACHE = $RUNNER_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/vmbench (as kernel.CacheDir).
# A cache hit does no extraction and no make: it prints the path and exits (well under a second).
# The build is reproducible: fixed KBUILD_BUILD_TIMESTAMP/USER/HOST/VERSION, in-tree relative paths.
# The LAST LINE of output is the vmlinux path of the selected flavour (with --flavour all: the
# auto-detected one). Everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${RUNNER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmbench}
flavour=${RUNNER_KERNEL_FLAVOUR:-auto}
print_key=0

while [ $# -gt 0 ]; do
  case "$1" in
    --flavour) flavour=$2; shift 2 ;;
    --flavour=*) flavour=${1#*=}; shift ;;
    --print-key) print_key=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
  local fl=$1
  {
    echo "linux-source-6.1=$(src_version)"
    echo "flavour=$fl"
    gcc --version | head -n1
    ld --version | head -n1
    cat "$here/config/microvm.config"
    if [ "$fl" = kvm-pvm ]; then cat "$here"/patches/kvm-pvm/*.patch; fi
    # The build recipe itself (this file) is part of the key.
    cat "$here/build.sh"
  } | sha256sum | cut -c1-16
}

# publish FLAVOUR KEY: point $CACHE/kernel/FLAVOUR/vmlinux at KEY's build, atomically (a reader
# never sees the link missing).
publish() {
  local fl=$1 key=$2 link="$cache/kernel/$1/vmlinux"
  ln -sfn "$key/vmlinux" "$link.tmp.$$"
  mv -Tf "$link.tmp.$$" "$link"
}

build_one() {
  local fl=$1 ver key out dir tree jobs start secs
  # Quick (one dpkg-query) when everything is installed; installs linux-source-6.1 and the
  # toolchain with apt-get on a fresh machine. Must run before cache_key (it reads their versions).
  "$repo/scripts/install-deps.sh" kernel
  ver=$(src_version)
  key=$(cache_key "$fl")
  dir="$cache/kernel/$fl/$key"
  out="$dir/vmlinux"
  if [ -s "$out" ]; then
    publish "$fl" "$key"
    log "$fl: cache hit ($key)"
    return 0
  fi

  mkdir -p "$cache/kernel/$fl" "$cache/kernel/build"
  # One build per flavour at a time; a second caller waits and then hits the cache.
  exec 9>"$cache/kernel/$fl/.lock"
  flock 9
  if [ -s "$out" ]; then
    publish "$fl" "$key"
    log "$fl: cache hit after wait ($key)"
    exec 9>&-
    return 0
  fi

  start=$(date +%s)
  # Trees of this flavour are only left behind by failed or interrupted builds (we hold the
  # flavour's lock, so none is in use): drop them, they are 1-2 GB each.
  rm -rf "$cache/kernel/build/$fl-"*
  tree="$cache/kernel/build/$fl-$key"
  mkdir -p "$tree"
  log "$fl: extracting linux-source-6.1 $ver"
  tar -xf /usr/src/linux-source-6.1.tar.xz -C "$tree" --strip-components=1
  if [ "$fl" = kvm-pvm ]; then
    for p in "$here"/patches/kvm-pvm/*.patch; do
      log "$fl: applying $(basename "$p")"
      patch -s -p1 -d "$tree" < "$p"
    done
  fi

  # Reproducible: no timestamps, user or host name from this machine end up in the image, and
  # the in-tree build keeps source paths relative.
  export KBUILD_BUILD_TIMESTAMP="1970-01-01 00:00:00 UTC" KBUILD_BUILD_USER=vmbench \
         KBUILD_BUILD_HOST=vmbench KBUILD_BUILD_VERSION=1 ARCH=x86_64
  jobs=$(nproc)
  # allnoconfig with the fragment as KCONFIG_ALLCONFIG: unlisted options take their allnoconfig
  # value even when an option we set makes them visible (see the fragment's header).
  (cd "$tree" && scripts/kconfig/merge_config.sh -n "$here/config/microvm.config") > "$tree/config.log" 2>&1 || {
    tail -n 20 "$tree/config.log" >&2; log "$fl: configuration failed; log in $tree/config.log"; exit 1; }
  verify_config "$tree/.config"
  log "$fl: building vmlinux with -j$jobs (a few minutes)"
  if ! make -C "$tree" -s -j"$jobs" vmlinux > "$tree/build.log" 2>&1; then
    tail -n 40 "$tree/build.log" >&2
    log "$fl: build failed; full log in $tree/build.log"
    exit 1
  fi
  secs=$(( $(date +%s) - start ))
  # Fill a temporary directory and rename it into place: a key directory with a vmlinux is
  # always complete.
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cp "$tree/.config" "$dir.tmp/config"
  cp "$tree/vmlinux" "$dir.tmp/vmlinux"
  {
    echo "flavour=$fl"
    echo "key=$key"
    echo "linux-source-6.1=$ver"
    echo "compiler=$(gcc --version | head -n1)"
    echo "linker=$(ld --version | head -n1)"
    echo "jobs=$jobs"
    echo "cpus=$(nproc)"
    echo "build_seconds=$secs"
    echo "vmlinux_bytes=$(stat -c %s "$tree/vmlinux")"
    echo "vmlinux_sha256=$(sha256sum "$tree/vmlinux" | cut -d' ' -f1)"
  } > "$dir.tmp/build-info"
  rm -rf "$dir"
  mv -T "$dir.tmp" "$dir"
  publish "$fl" "$key"
  [ "${KEEP_BUILD:-0}" = 1 ] || rm -rf "$tree"
  log "$fl: built in $secs s, $(stat -c %s "$out") bytes"
  exec 9>&-
}

# verify_config FILE: every option the fragment sets must be in the final .config. Kconfig
# silently drops options whose dependencies are missing, and that must fail the build.
verify_config() {
  local cfg=$1 bad=0 line name want got
  while IFS= read -r line; do
    if [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      name=${BASH_REMATCH[1]}
      # Off means "is not set" or absent (hidden because a dependency is off).
      if grep -q -E "^$name=" "$cfg"; then
        log "config: $name wanted off, got '$(grep -E "^$name=" "$cfg")'"
        bad=1
      fi
      continue
    fi
    case "$line" in ''|\#*) continue ;; esac
    name=${line%%=*}
    want=${line#*=}
    got=$(grep -E "^$name=" "$cfg" || true)
    if [ "$got" != "$name=$want" ]; then
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
