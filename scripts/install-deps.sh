#!/usr/bin/env bash
# Everything rpaas needs on a fresh Debian 12 machine (root): build deps, the
# peers and clients the tests drive, and the VM test harness's kernel and qemu.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  # build
  build-essential pkg-config libdevmapper-dev libclang-dev libseccomp-dev
  # containers: the rootfs the tests build, peers and real clients
  busybox-static runc crun podman conmon skopeo docker-registry apache2-utils uidmap
  # a real terminal for the login tests (tests/app_login.rs)
  tmux
  # Prometheus text parser: tests/app_metrics.rs reads the exposition back with it
  python3-prometheus-client
  # containerd with its runc v2 shim: tests/containerd_shim.rs drives rpaas-run through it
  containerd
  # networking, NUMA, storage tools used by tests and the demo
  iproute2 iputils-ping zstd numactl dmsetup thin-provisioning-tools e2fsprogs xfsprogs util-linux procps
  # the VM harness (tests/vm): Debian's kernel under qemu (TCG)
  qemu-system-x86 linux-image-amd64 kmod xz-utils cpio
  # checkpoint/restore (issue 17): works in the VM guest only (this host's 6.18 kernel fails `criu check`)
  criu
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (rustup) is required" >&2; exit 1; }
