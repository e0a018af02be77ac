#!/usr/bin/env bash
# fuzz.sh — run the project's fuzz targets (go test -fuzz), one after the other.
#
#   scripts/fuzz.sh [DURATION] [REGEX]     e.g. scripts/fuzz.sh 10m 'FuzzChain|FuzzRequest|FuzzPacket'
#
# Targets are discovered from the source (every `func FuzzXxx` in a _test.go file), so the
# list never goes stale. Each seed corpus lives in its package's testdata/fuzz/<Target>/ and
# also runs as a plain test in `make test`. New crashers are written there by go test and
# fail the script.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-1m}
filter=${2:-.}
export CGO_ENABLED=0
status=0
while IFS=: read -r file _ decl; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"$decl")
  grep -Eq "$filter" <<<"$name" || continue
  pkg=$(dirname "$file")
  echo "== $name ($pkg) for $time"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" -fuzzminimizetime 5s "$pkg" 2>&1 | tail -n 3; then
    status=1
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(' . | sort)
exit $status
