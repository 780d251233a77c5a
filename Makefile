# rpaas — the two commands of the README:
#   make demo   set up a fresh Debian 12 machine, build, run a demo app container end to end
#   make test   set up, build and run every test (host + qemu guest)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build demo test test-host test-vm bench clean-host

deps:
	scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bin rpaas-run --bin rpaas-tools --bin rpaas-keeper

demo: build
	scripts/demo.sh target/release/rpaas-run

# Host tests run as root on the host's cgroup v1 (hybrid); VM tests boot a
# qemu guest for dm-thin, two NUMA nodes and pure cgroup v2.
test: deps test-host test-vm

test-host:
	scripts/test-setup.sh
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

test-vm:
	tests/vm/run-tests.sh

bench: build
	scripts/test-setup.sh
	$(CARGO) run --release -p rpaas-benches
	$(CARGO) run --release -p rpaas-benches --bin keeper_mem
	$(CARGO) run --release -p rpaas-benches --bin net_attach
	$(CARGO) run --release -p rpaas-benches --bin numa_place
	$(CARGO) run --release -p rpaas-benches --bin image_apply
	$(CARGO) run --release -p rpaas-benches --bin image_mount
	$(CARGO) run --release -p rpaas-benches --bin image_pull

# Remove whatever a crashed run left behind (containers, cgroups) under the default root.
clean-host:
	-target/release/rpaas-run gc --all || target/debug/rpaas-run gc --all
