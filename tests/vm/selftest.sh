#!/usr/bin/env bash
# Self-test of tests/vm/run-in-vm: the promises the VM tests rely on.
# Run after changing the harness: tests/vm/selftest.sh  (about 1-2 min, 7 boots)
set -uo pipefail
vm=$(dirname -- "$0")/run-in-vm
fails=0
check() { # name expected actual
	if [[ $2 == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected '$2', got '$3'"; fails=$((fails + 1)); fi
}

"$vm" -- sh -c 'exit 3'
check "exit code passes through" 3 $?

out=$("$vm" -- sh -c 'echo to-out; echo to-err >&2' 2>/dev/null)
check "stdout streams back, stderr apart" to-out "$out"
err=$("$vm" -- sh -c 'echo to-out; echo to-err >&2' 2>&1 >/dev/null)
check "stderr streams back" to-err "$err"

"$vm" --timeout 15 -- sleep 600 2>/dev/null
check "--timeout gives 124" 124 $?

check "pure cgroup v2 by default" cgroup2fs "$("$vm" -- stat -fc %T /sys/fs/cgroup 2>&1)"
check "--cgroup v1 layout" cgroupfs "$("$vm" --cgroup v1 -- stat -fc %T /sys/fs/cgroup/memory 2>&1)"

got=$("$vm" --disk 64M -- sh -c 'export DM_DISABLE_UDEV=1; modprobe dm-thin-pool && dmsetup targets | grep -c thin-pool; blockdev --getsize64 "$RUN_IN_VM_DISK"; echo "$RUN_IN_VM"' 2>&1 | tr '\n' ' ')
check "dm-thin, scratch disk, RUN_IN_VM" "1 67108864 1 " "$got"

((fails == 0)) && echo "run-in-vm selftest: all ok" || echo "run-in-vm selftest: $fails failed"
exit $((fails > 0))
