# Makefile — the project's entry points. See README.md.
#
#   make demo      install what is needed, build everything, run a real image through the runner
#   make test      vet + staticcheck + the default test tier (unit, KVM, sandbox scenarios)
#   make e2e-vm    slow tier: every spec scenario through a real VM boot (tens of minutes here)
#   make e2e-ci    the part of the slow tier CI runs on every change
#   make kernel    build (or find in the cache) the guest kernel; prints its path last
#   make bench     benchmarks against the spec's targets and baselines measured in the same run
#   make fuzz      run every fuzz target for FUZZTIME each

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
FUZZTIME ?= 10m
export CGO_ENABLED := 0

.PHONY: all deps build init runner kernel kernel-all test vet staticcheck unit e2e-vm e2e-ci demo bench fuzz clean

all: build

deps:
	@scripts/install-deps.sh

# The guest init is a static binary; the runner embeds nothing and finds it next to itself.
init:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/bencher-init ./cmd/bencher-init

runner:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/runner ./cmd/runner

build: init runner

kernel:
	@kernel/build.sh

kernel-all:
	@kernel/build.sh --flavour all

vet:
	$(GO) vet ./...
	$(GO) vet -tags slow ./...

staticcheck:
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags slow ./...

# Tests reuse the built init (runner/runnertest) instead of building their own.
unit: build
	RUNNER_TEST_INIT=$(BIN)/bencher-init $(GO) test -count=1 -timeout 30m ./...

test: deps kernel vet staticcheck unit

e2e-vm: deps kernel build
	$(GO) test -count=1 -tags slow -timeout 120m -v ./...

e2e-ci: deps kernel-all build
	RUNNER_E2E_SUBSET=ci $(GO) test -count=1 -tags slow -timeout 60m -v ./...

demo: deps kernel build
	scripts/demo.sh

bench: deps kernel build
	scripts/bench.sh

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN)
