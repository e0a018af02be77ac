#!/usr/bin/env bash
# registry.sh — run Debian's docker-registry on loopback for tests and demos.
#
#   scripts/registry.sh start [PORT] [DIR]   start on 127.0.0.1:PORT (default 5000) with storage in DIR
#                                            (default ${RUNNER_CACHE_DIR:-~/.cache/vmbench}/registry);
#                                            prints HOST:PORT once it listens
#   scripts/registry.sh stop [DIR]           stop it
#   scripts/registry.sh status [DIR]         exit 0 and print HOST:PORT when running
#
# Plain HTTP, no auth: loopback only. The Go tests start their own registries
# (package testimages/testregistry); this script is for shell use, e.g.
#   host=$(scripts/registry.sh start) && go run ./cmd/mkimages -o /tmp/imgs --push "$host"
set -euo pipefail

cmd=${1:-}
bin=/usr/bin/docker-registry
default_dir=${RUNNER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmbench}/registry

running() { # DIR -> prints host, returns 0 if the registry recorded in DIR is alive
  local dir=$1
  [ -f "$dir/pid" ] && [ -f "$dir/host" ] || return 1
  local pid; pid=$(cat "$dir/pid")
  kill -0 "$pid" 2>/dev/null || return 1
  # The pid must still be our registry, not a reused number.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "docker-registry serve $dir/config.yml" || return 1
  cat "$dir/host"
}

case "$cmd" in
start)
  port=${2:-5000}
  dir=${3:-$default_dir}
  [ -x "$bin" ] || { echo "registry.sh: $bin missing (scripts/install-deps.sh base)" >&2; exit 1; }
  mkdir -p "$dir/storage"
  if host=$(running "$dir"); then echo "$host"; exit 0; fi
  host=127.0.0.1:$port
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $host
YAML
  nohup "$bin" serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  echo "$host" >"$dir/host"
  for _ in $(seq 100); do
    # Listening is enough: the registry binds only once it is ready to serve.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$host"; exit 0; fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "registry.sh: registry did not come up on $host; log:" >&2
  cat "$dir/log" >&2
  exit 1
  ;;
stop)
  dir=${2:-$default_dir}
  if running "$dir" >/dev/null; then
    pid=$(cat "$dir/pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/pid" "$dir/host"
  ;;
status)
  running "${2:-$default_dir}"
  ;;
*)
  sed -n '2,12p' "$0" >&2
  exit 2
  ;;
esac
