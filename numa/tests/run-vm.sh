#!/bin/bash
# Builds the NUMA VM test on the host and runs it in a two-node qemu guest, cgroup v2 then v1.
# Usage (from the repo root): numa/tests/run-vm.sh   [RUN_IN_VM_SCRIPT=/path/to/run-in-vm]
set -euo pipefail
cd "$(dirname "$0")/../.."
vm=${RUN_IN_VM_SCRIPT:-/work/shared/vm/run-in-vm}
bin=$(cargo test -p rpaas-numa --test vm_numa --no-run --message-format=json 2>/dev/null |
	grep -o '"executable":"[^"]*vm_numa-[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -x $bin ]] || { echo "vm_numa test binary not found" >&2; exit 1; }
for cg in v2 v1; do
	echo "=== vm_numa, cgroup $cg"
	"$vm" --numa 2 --cpus 2 --cgroup "$cg" -- "$bin"
done
