#!/usr/bin/env bash
# rpaas demo: one app container end to end, the way the PaaS agent runs it.
#
#  1. an app image (busybox httpd) is built locally as an OCI layout and imported
#     (on a real host: `rpaas-run image prefetch REG/app:tag` from the private registry);
#  2. a bundle is prepared from it on an overlay snapshot, with the app's page and a
#     config file written into the container's writable layer (never bind mounts);
#  3. a NUMA placement is chosen for it;
#  4. its "public network" interface is attached over netlink: a veth on a bridge of a
#     demo LAN (everything lives in network namespaces this script makes, named rpaas-demo-*);
#  5. it runs in keeper mode (daemonless: no rpaas process is needed while it runs),
#     is health-checked over HTTP from "another machine" on the LAN, exec'd into, stopped
#     with SIGTERM, its exit status read back, and everything is removed.
set -euo pipefail
RUN=${1:-target/release/rpaas-run}
RUN=$(realpath "$RUN")
work=$(mktemp -d /tmp/rpaas-demo.XXXXXX)
root=/run/rpaas-demo
images=$work/images
id=demo-web
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rr() { echo "+ rpaas-run $*" >&2; "$RUN" --root "$root" --image-root "$images" "$@"; }

cleanup() {
  set +e
  "$RUN" --root "$root" delete --force "$id" 2>/dev/null
  "$RUN" --root "$root" net detach --netns /run/netns/rpaas-demo-web --id "$id" --host-netns /run/netns/rpaas-demo-host 2>/dev/null
  "$RUN" --root "$root" --image-root "$images" bundle --remove "$work/bundle" 2>/dev/null
  for ns in rpaas-demo-web rpaas-demo-peer rpaas-demo-host; do ip netns del "$ns" 2>/dev/null; done
  rmdir "$root" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

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
rr image import "$oci" demo/web:1.0
rr image ls

say "2. bundle: rootfs on an overlay snapshot; the app's files go into its writable layer"
echo '<h1>hello from rpaas</h1>' >"$work/index.html"
echo 'keepalive=on' >"$work/app.conf"
rr bundle demo/web:1.0 "$work/bundle" --file "$work/index.html:/www/index.html" --file "$work/app.conf:/etc/app.conf"

say "3. NUMA placement (this host's topology)"
rr numa show
rr numa place --cpus 1 --memory 128M --policy preferred || true

say "4. public network: a demo LAN (bridge in namespace rpaas-demo-host), a veth for the container"
ip netns add rpaas-demo-host
ip netns add rpaas-demo-web
ip netns add rpaas-demo-peer
ip -n rpaas-demo-host link set lo up
ip -n rpaas-demo-host link add rpdemo0 type bridge
ip -n rpaas-demo-host link set rpdemo0 up
# "another machine on the LAN"
ip -n rpaas-demo-host link add rpdemo-peer type veth peer name eth0 netns rpaas-demo-peer
ip -n rpaas-demo-host link set rpdemo-peer master rpdemo0 up
ip -n rpaas-demo-peer addr add 10.231.0.20/24 dev eth0
ip -n rpaas-demo-peer link set eth0 up
ip -n rpaas-demo-peer link set lo up
rr net attach --netns /run/netns/rpaas-demo-web --host-netns /run/netns/rpaas-demo-host --id "$id" \
  --bridge rpdemo0 --ip 10.231.0.10/24 --gw 10.231.0.1 --sysctl net.ipv4.tcp_keepalive_time=300
rr net show --netns /run/netns/rpaas-demo-web

say "5. run it in keeper mode, joined to that netns"
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
for ns in c["linux"]["namespaces"]:
    if ns["type"] == "network":
        ns["path"] = "/run/netns/rpaas-demo-web"
c["process"]["terminal"] = False
c["process"].setdefault("rlimits", [])
json.dump(c, open(p, "w"), indent=1)
PY
rr run --detach --keeper --bundle "$work/bundle" "$id"
rr state "$id"
echo "no rpaas process is running for it except its keeper:"
pgrep -a -f -- "--root $root" || true

say "health check: HTTP from another machine on the LAN"
for _ in $(seq 50); do
  if ip netns exec rpaas-demo-peer busybox wget -q -O- http://10.231.0.10:8080/ 2>/dev/null; then break; fi
  sleep 0.1
done
say "exec into it: as the app user (a developer's login), then as root (an operator's)"
rr exec "$id" sh -c 'id; cat /etc/app.conf; ls -l /www'
echo "the config file is a real file in the writable layer: a tool that replaces files by rename works"
rr exec --user 0:0 "$id" sh -c 'id; cp /etc/app.conf /etc/app.conf.new && echo "keepalive=off" >>/etc/app.conf.new && mv /etc/app.conf.new /etc/app.conf && cat /etc/app.conf'
rr ps "$id"

say "stop it: SIGTERM, then SIGKILL after a grace period (httpd as pid 1 has no TERM handler)"
rr kill "$id" TERM
for _ in $(seq 10); do
  [ "$("$RUN" --root "$root" state "$id" | grep -c '"stopped"')" = 1 ] && break
  sleep 0.1
done
rr kill "$id" KILL 2>/dev/null || true
echo "the exit status, recorded by the keeper:"
rr wait "$id"
rr state "$id"
rr delete "$id"
rr net detach --netns /run/netns/rpaas-demo-web --id "$id" --host-netns /run/netns/rpaas-demo-host
rr bundle --remove "$work/bundle"
say "done: container, cgroups, links and snapshot are gone"
