#!/usr/bin/env bash
# rpaas demo: the PaaS flow, done by the rpaas library (`rpaas::Host`) through
# `rpaas-run app …` (each verb is one short-lived process embedding the library,
# as an agent would be: nothing of rpaas keeps running but one keeper per instance).
#
#  1. an app image (busybox httpd) is built here as an OCI layout and imported into
#     the host's image store (on a real host: `rpaas-run image prefetch REG/app:tag`);
#  2. a demo LAN: a bridge in network namespace rpaas-demo-lan, and "another machine"
#     on it (namespace rpaas-demo-peer);
#  3. a host config (bridge mode, subnet, address pool, the netns holding the bridge)
#     and an app spec (image, 3 instances, a page file written into each instance's
#     writable layer, CPU and memory limits, how to stop it);
#  4. `app deploy`: 3 instances, each reached over HTTP from the other machine;
#  5. scale to 5 and back to 2;
#  6. `app scale demo-web 6` is killed with SIGKILL half way; `app recover`, a new process,
#     finishes the job;
#  7. `app rm` and `app gc`: nothing is left (containers, netns, links, mounts, cgroups).
set -euo pipefail
RUN=${1:-target/release/rpaas-run}
RUN=$(realpath "$RUN")
work=$(mktemp -d /tmp/rpaas-demo.XXXXXX)
state=/run/rpaas-demo
data=$work/data
images=$data/images
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rr() { echo "+ rpaas-run $*" >&2; "$RUN" --root "$state" --image-root "$images" "$@"; }
app() { echo "+ rpaas-run app $*" >&2; "$RUN" --root "$state" app --host-config "$work/host.json" "$@"; }
peer() { ip netns exec rpaas-demo-peer "$@"; }

cleanup() {
  set +e
  if [ -f "$work/host.json" ]; then
    "$RUN" --root "$state" app --host-config "$work/host.json" rm demo-web >/dev/null 2>&1
    "$RUN" --root "$state" app --host-config "$work/host.json" gc >/dev/null 2>&1
  fi
  for ns in rpaas-demo-peer rpaas-demo-lan; do ip netns del "$ns" 2>/dev/null; done
  # The runtime's state dir, once no mount is left under it.
  grep -q " $state[/ ]" /proc/self/mountinfo || rm -rf "$state"
  rm -rf "$work"
}
[ -n "${DEMO_KEEP:-}" ] || trap cleanup EXIT

# The addresses of the app's instances: the IP column of `app inspect`.
ips() {
  "$RUN" --root "$state" app --host-config "$work/host.json" inspect demo-web |
    awk 'NR > 2 && $4 != "-" { split($4, a, "/"); print a[1] }'
}

# GET / of every instance from the other machine (each may take a moment to listen).
reach_all() {
  local ip body n=0
  for ip in $(ips); do
    body=""
    for _ in $(seq 50); do
      # (busybox wget's own -T crashes in busybox 1.35: coreutils' timeout instead)
      body=$(peer timeout 2 busybox wget -q -O- "http://$ip:8080/" 2>/dev/null) && break
      sleep 0.1
    done
    [ -n "$body" ] || { echo "no answer from $ip" >&2; return 1; }
    printf '  http://%s:8080/ -> %s\n' "$ip" "$body"
    n=$((n + 1))
  done
  echo "  $n instances answered"
}

say "1. build the app image (busybox-static httpd) as an OCI layout and import it"
layer=$work/layer
mkdir -p "$layer"/{bin,etc,www,tmp,proc,sys,dev}
cp /bin/busybox "$layer/bin/busybox"
for a in sh httpd ls cat ps wget echo sleep id hostname ip; do ln -s busybox "$layer/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/www:/bin/sh\n' >"$layer/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$layer/etc/group"
oci=$work/oci
mkdir -p "$oci/blobs/sha256"
tar -C "$layer" --numeric-owner -czf "$work/layer.tar.gz" .
put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$oci/blobs/sha256/$d"; echo "$d"; }
layer_digest=$(put "$work/layer.tar.gz")
diff_id=$(gzip -dc "$work/layer.tar.gz" | sha256sum | cut -d' ' -f1)
cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"User":"app","Env":["PATH=/bin","APP_KIND=web"],
 "Cmd":["httpd","-f","-p","8080","-h","/www"],"WorkingDir":"/www","ExposedPorts":{"8080/tcp":{}}},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
JSON
config_digest=$(put "$work/config.json")
cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$(stat -c %s "$work/config.json")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$(stat -c %s "$work/layer.tar.gz")}]}
JSON
manifest_digest=$(put "$work/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
cat >"$oci/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$(stat -c %s "$work/manifest.json"),"annotations":{"org.opencontainers.image.ref.name":"1.0"}}]}
JSON
# The host's image store is <dataRoot>/images: `image` verbs and `app` share it.
rr image import "$oci" demo/web:1.0
rr image ls

say "2. a demo LAN: bridge rpdemo0 in netns rpaas-demo-lan, another machine in rpaas-demo-peer"
ip netns add rpaas-demo-lan
ip netns add rpaas-demo-peer
ip -n rpaas-demo-lan link set lo up
ip -n rpaas-demo-lan link add rpdemo0 type bridge
ip -n rpaas-demo-lan addr add 10.231.0.1/24 dev rpdemo0
ip -n rpaas-demo-lan link set rpdemo0 up
ip -n rpaas-demo-lan link add rpdemo-peer type veth peer name eth0 netns rpaas-demo-peer
ip -n rpaas-demo-lan link set rpdemo-peer master rpdemo0 up
ip -n rpaas-demo-peer addr add 10.231.0.200/24 dev eth0
ip -n rpaas-demo-peer link set eth0 up
ip -n rpaas-demo-peer link set lo up
ip -n rpaas-demo-lan -br addr

say "3. the host config and the app spec"
cat >"$work/host.json" <<JSON
{
  "stateRoot": "$state",
  "dataRoot": "$data",
  "snapshotter": {"kind": "overlay"},
  "network": {
    "mode": "bridge", "bridge": "rpdemo0", "hostNetns": "/run/netns/rpaas-demo-lan",
    "subnet": "10.231.0.0/24", "gateway": "10.231.0.1",
    "pool": {"first": "10.231.0.10", "last": "10.231.0.99"}
  },
  "sysctls": {"net.core.somaxconn": "1024"}
}
JSON
echo '<h1>hello from rpaas</h1>' >"$work/index.html"
echo 'keepalive=on' >"$work/app.conf"
cat >"$work/web.json" <<JSON
{
  "name": "demo-web",
  "image": "demo/web:1.0",
  "instances": 3,
  "env": {"APP_ENV": "demo"},
  "files": [
    {"source": "index.html", "dest": "/www/index.html", "mode": "0644"},
    {"source": "app.conf", "dest": "/etc/app.conf", "mode": "0640", "owner": "0:1000"}
  ],
  "resources": {"cpus": 250, "memory": "64M", "pids": 64},
  "numa": {"policy": "preferred"},
  "rlimits": {"nofile": 4096},
  "stop": {"signal": "SIGTERM", "grace": 1}
}
JSON
echo "--- $work/host.json"; cat "$work/host.json"
echo "--- $work/web.json"; cat "$work/web.json"

say "4. deploy 3 instances; reach each over HTTP from the other machine"
app deploy "$work/web.json"
app ls
reach_all
echo "the page is a file in each instance's writable layer (not a bind mount):"
rr exec demo-web-1 sh -c 'id; ls -l /www /etc/app.conf; cat /etc/app.conf; grep -q " /www" /proc/mounts || echo "no mount on /www"'

say "5. scale to 5, then back to 2 (the highest-numbered go; their addresses return to the pool)"
app scale demo-web 5
reach_all
app scale demo-web 2
reach_all

say "6. an agent killed half way: 'app scale demo-web 6' gets SIGKILL, a new process recovers"
"$RUN" --root "$state" app --host-config "$work/host.json" scale demo-web 6 >/dev/null 2>&1 &
agent=$!
# Until the first new instance has a record (or a few seconds passed), then a bit more.
for _ in $(seq 100); do
  [ -e "$data/apps/demo-web/instances/3.json" ] && break
  sleep 0.02
done
sleep 0.15
kill -9 "$agent" 2>/dev/null || true
wait "$agent" 2>/dev/null || true
echo "killed the agent (pid $agent) with SIGKILL; what it left:"
app inspect demo-web
echo "the instances that were up kept running without it; now a new process recovers:"
app recover
app inspect demo-web
reach_all

say "7. remove the app, collect garbage, and look for leftovers"
app rm demo-web
app gc
app ls
echo "--- leftovers (each list should be empty):"
left=0
check() {
  local what=$1 out=$2
  if [ -n "$out" ]; then echo "LEFT: $what: $out"; left=1; else echo "  $what: none"; fi
}
check "containers" "$(rr list -q 2>/dev/null | grep '^demo-web-' || true)"
check "instance netns" "$(ls "$state/#netns" 2>/dev/null || true)"
check "veths on the LAN bridge" "$(ip -n rpaas-demo-lan -o link | grep -v -e 'rpdemo0' -e 'rpdemo-peer' -e ' lo:' || true)"
check "mounts" "$(grep -e "$state" -e "$data" /proc/self/mountinfo || true)"
check "cgroups" "$(ls -d /sys/fs/cgroup/*/rpaas-demo-web-* /sys/fs/cgroup/rpaas-demo-web-* 2>/dev/null || true)"
check "processes" "$(pgrep -a -f -- "--root $state" || true)"
check "records" "$(ls "$data/apps" 2>/dev/null || true)"
[ "$left" = 0 ] || { echo "demo: something was left" >&2; exit 1; }
say "done: the app came and went through the library; nothing is left"
