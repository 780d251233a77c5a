# rpaas — the two commands of the README:
#   make demo   set up a fresh Debian 12 machine, build, run a demo app container end to end
#   make test   set up, build and run every test (host + qemu guest)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build demo test test-host test-vm bench clean-host

deps:
	scripts/install-deps.sh

# target/dist: what a host installs. The runtime and the keeper are static-pie
# (glibc and libseccomp linked in, as runc's release builds are): they are
# exec'd at every container start, and dynamic loading was a large part of
# their start-up (docs/DECISIONS.md). rpaas-tools stays dynamic (OpenSSL).
# Their relative relocations are packed (DT_RELR: binutils >= 2.38, glibc >= 2.36,
# both in Debian 12): 5 KB instead of 405 KB of .rela.dyn to read and apply at
# every start.
TRIPLE := x86_64-unknown-linux-gnu
STATIC := RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
	LIBSECCOMP_LINK_TYPE=static \
	LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
DIST := target/dist

build: deps
	$(CARGO) build --release --bin rpaas-tools
	$(STATIC) $(CARGO) build --release --target $(TRIPLE) --bin rpaas-run --bin rpaas-keeper
	mkdir -p $(DIST)
	install -m 0755 target/release/rpaas-tools target/$(TRIPLE)/release/rpaas-run \
		target/$(TRIPLE)/release/rpaas-keeper $(DIST)/

demo: build
	scripts/demo.sh $(DIST)/rpaas-run

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
	$(CARGO) run --release -p rpaas-benches --bin app_scale

# Remove whatever a crashed run left behind (containers, cgroups) under the default root.
clean-host:
	-$(DIST)/rpaas-run gc --all || target/debug/rpaas-run gc --all
