#!/usr/bin/env bash
# rpaas tests/vm/run-tests.sh — build test binaries on the host, run each one in
# a fresh qemu guest (tests/vm/run-in-vm), stream its output, return non-zero if
# any failed. Nothing is compiled in the guest (TCG is ~15x slower).
#
#   tests/vm/run-tests.sh                 the project's VM suite (what `make test-vm` runs)
#   tests/vm/run-tests.sh [VM-OPTS] -- CARGO-ARGS... [-- TEST-ARGS...]
#       builds `cargo test --no-run CARGO-ARGS` (e.g. -p rpaas-runtime --test cgroups)
#       and runs every test binary it produced in one guest each, with TEST-ARGS.
#
# VM-OPTS are passed to run-in-vm (--cgroup v2|v1|hybrid, --numa N, --cpus N,
# --mem, --disk, --timeout SEC, -v); the defaults here: --cgroup v2, --timeout 1200.
# Exit: 0 when every binary passed; else the first failing binary's status
# (124: a guest timed out; 125: the harness failed).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$here/../.." && pwd)
vm=$here/run-in-vm
say() { echo "run-tests: $*" >&2; }

# Print the test executables that `cargo test --no-run ARGS` builds, one a line.
build() {
	local json
	json=$(cd "$repo" && cargo test --no-run --message-format=json-render-diagnostics "$@") || {
		say "build failed: cargo test --no-run $*"
		return 1
	}
	# compiler-artifact lines of test targets carry "profile":{..."test":true...};
	# the target's own "test":true (set on bins too) must not match
	# and the binary's path in "executable"
	grep '"reason":"compiler-artifact"' <<<"$json" |
		grep -E '"profile":\{[^}]*"test":true' |
		grep -o '"executable":"[^"]*"' |
		cut -d'"' -f4 || true
}

# run_set "VM-OPTS" "CARGO-ARGS" "TEST-ARGS": build, then one guest per binary
failed=0
run_set() {
	local -a vmopts cargo targs bins
	read -r -a vmopts <<<"$1"
	read -r -a cargo <<<"$2"
	read -r -a targs <<<"$3"
	mapfile -t bins < <(build "${cargo[@]}") || true
	if ((${#bins[@]} == 0)); then
		say "no test binary from: cargo test --no-run ${cargo[*]}"
		((failed)) || failed=125
		return 0
	fi
	local b rc start
	for b in "${bins[@]}"; do
		say "=== ${b##*/} in a guest (${vmopts[*]})"
		start=$SECONDS
		rc=0
		(cd "$repo" && "$vm" "${vmopts[@]}" -- "$b" "${targs[@]}") || rc=$?
		say "=== ${b##*/}: exit $rc after $((SECONDS - start))s"
		((rc == 0)) || ((failed)) || failed=$rc
	done
}

defaults="--cgroup v2 --timeout 1200"

if (($# == 0)); then
	# --- the project's VM suite ---
	# Tests that need what only the guest has are #[ignore = "needs X: runs in
	# the VM suite"] (so the host reports them ignored, not passed); here they
	# run with --include-ignored. --skip drops helpers that are only run as a
	# child by another test, and tests of what the guest lacks (v1_*: cgroup v1).
	#
	# dm-thin snapshotter: pool on loop files, crash recovery via fail points.
	# One test at a time: the tests attach loop devices.
	run_set "$defaults --disk 0" "-p rpaas-images --features failpoints --test vm_devmapper" \
		"--test-threads=1 --include-ignored --skip crash_child"
	# the runtime's cgroup tests on pure cgroup v2 (the CI host is v1 hybrid);
	# each runs only once its file exists
	for t in cgroups lifecycle resources update; do
		[[ -f $repo/runtime/tests/$t.rs ]] || continue
		run_set "$defaults --cgroup v2" "-p rpaas-runtime --test $t" \
			"--test-threads=1 --include-ignored --skip v1_"
	done
	# real containers (rpaas-run beside runc and crun), keeper mode and the
	# agent's library API, on pure cgroup v2
	for t in runtime_lifecycle keeper_daemonless host_api; do
		[[ -f $repo/tests/$t.rs ]] || continue
		run_set "$defaults --cgroup v2" "-p rpaas --test $t" "--test-threads=1"
	done
	# NUMA: a container placed on node 1 of a two-node guest, on v2 and v1
	for cg in v2 v1; do
		run_set "--cgroup $cg --timeout 1200 --numa 2 --cpus 2" "-p rpaas-numa --test vm_numa" \
			"--test-threads=1 --include-ignored"
	done
	# runtime-spec 1.3 linux.memoryPolicy across two nodes (numa_maps of a real
	# container): only the ignored test of spec13; the rest runs on the host
	if [[ -f $repo/tests/spec13.rs ]]; then
		run_set "--cgroup v2 --timeout 1200 --numa 2 --cpus 2" "-p rpaas --test spec13" \
			"--test-threads=1 --ignored"
	fi
	# checkpoint/restore through CRIU (issue 17): CRIU fails `criu check` on
	# the CI host's kernel; the guest's 6.1 kernel passes it
	if [[ -f $repo/tests/vm_criu.rs ]]; then
		run_set "$defaults --cgroup v2" "-p rpaas --test vm_criu" "--test-threads=1 --ignored"
	fi
	# A host reboot: two guests, one after the other, on one persistent disk
	# (dm-thin loopback pool and overlay layers on it); boot 1 deploys, boot 2
	# recovers. Phase 2 runs only when phase 1 passed.
	if [[ -f $repo/tests/vm_reboot.rs ]]; then
		reboot_disk=$(mktemp -u /tmp/rpaas-reboot-disk.XXXXXX)
		for phase in 1 2; do
			before=$failed
			export RPAAS_REBOOT_PHASE=$phase
			run_set "$defaults --disk 3G --disk-file $reboot_disk" "-p rpaas --test vm_reboot" \
				"--test-threads=1 --ignored"
			unset RPAAS_REBOOT_PHASE
			((failed == before)) || break
		done
		rm -f -- "$reboot_disk"
	fi
	exit "$failed"
fi

vmopts=()
while (($#)) && [[ $1 != -- ]]; do
	case $1 in
	-v | --verbose) vmopts+=("$1"); shift ;;
	--*) (($# >= 2)) || { say "$1 needs a value"; exit 125; }; vmopts+=("$1" "$2"); shift 2 ;;
	*) say "unknown argument '$1' (cargo arguments go after --)"; exit 125 ;;
	esac
done
(($#)) || { say "usage: run-tests.sh [VM-OPTS] -- CARGO-ARGS... [-- TEST-ARGS...]"; exit 125; }
shift
cargo_args=()
while (($#)) && [[ $1 != -- ]]; do cargo_args+=("$1"); shift; done
(($#)) && shift
((${#cargo_args[@]})) || { say "no cargo arguments after --"; exit 125; }
run_set "$defaults ${vmopts[*]}" "${cargo_args[*]}" "$*"
exit "$failed"
