//! End to end: a busybox httpd in a real container joins a netns that
//! `rpaas-run net attach` gave a public interface (bridge and macvlan modes),
//! and another machine on the LAN (a netns) fetches a page from it over IPv4
//! and IPv6; the reverse direction is an HTTP GET (busybox nc) run inside the container through
//! `exec`. The same test runs with runc as the runtime, as a peer check of the
//! test itself. Root only; every namespace and link is named "rpaas…" and
//! removed by Drop guards.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{default_config, rpaas_run_bin, state_root, unique_id, Bundle};

struct Ns(String);

impl Ns {
    fn new(role: &str) -> Ns {
        let name = format!("rpaas-e2e-{}-{role}", unique_id("n"));
        sh(&["ip", "netns", "add", &name]);
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.0];
        v.extend_from_slice(args);
        sh(&v);
    }
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// host netns: bridge rpbr0 with a veth uplink to `other` (10.231.0.100,
/// fd00:231::100) and a veth "NIC" rpnic0 to `other2` (10.231.1.100,
/// fd00:231:1::100) for macvlan.
struct Lan {
    host: Ns,
    other: Ns,
    other2: Ns,
}

impl Lan {
    fn new() -> Lan {
        let (host, other, other2) = (Ns::new("host"), Ns::new("other"), Ns::new("other2"));
        host.ip(&["link", "add", "rpbr0", "type", "bridge"]);
        host.ip(&["link", "set", "rpbr0", "up"]);
        for (peer, hostif, v4, v6) in [
            (&other, "rpup0", "10.231.0.100/24", "fd00:231::100/64"),
            (&other2, "rpnic0", "10.231.1.100/24", "fd00:231:1::100/64"),
        ] {
            sh(&[
                "ip", "link", "add", hostif, "netns", &host.0, "type", "veth", "peer", "name",
                "eth0", "netns", &peer.0,
            ]);
            host.ip(&["link", "set", hostif, "up"]);
            peer.ip(&["link", "set", "lo", "up"]);
            peer.ip(&["addr", "add", v4, "dev", "eth0"]);
            peer.ip(&["addr", "add", v6, "dev", "eth0", "nodad"]);
            peer.ip(&["link", "set", "eth0", "up"]);
        }
        host.ip(&["link", "set", "rpup0", "master", "rpbr0"]);
        Lan {
            host,
            other,
            other2,
        }
    }
}

/// A busybox httpd in the "other machine" netns, killed on drop (the temp dir
/// holding its document root lives as long as it does).
struct PeerHttpd(Child, #[allow(dead_code)] tempfile::TempDir);

impl PeerHttpd {
    fn start(ns: &Ns, port: &str, body: &str) -> PeerHttpd {
        let dir = tempfile::Builder::new()
            .prefix("rpaas-e2e-www")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns.0, "busybox", "httpd", "-f", "-p", port, "-h",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PeerHttpd(child, dir)
    }
}

impl Drop for PeerHttpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An OCI runtime (rpaas-run or runc) with its own state root.
struct Runtime {
    bin: PathBuf,
    root: common::StateRoot,
}

impl Runtime {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }
    /// `run --detach`: stdio to /dev/null so the container holds no pipe of ours.
    fn run_detached(&self, bundle: &Path, id: &str) {
        let st = self
            .cmd()
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "{} run --detach {id}: {st}",
            self.bin.display()
        );
    }
    fn exec(&self, id: &str, args: &[&str]) -> Output {
        self.cmd()
            .arg("exec")
            .arg(id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Deletes the container (forced) on drop, even when an assertion failed.
struct ContainerGuard<'a>(&'a Runtime, String);

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .cmd()
            .args(["delete", "--force", &self.1])
            .stdin(Stdio::null())
            .output();
    }
}

/// Detaches on drop.
struct AttachGuard(String, String, String);

impl Drop for AttachGuard {
    fn drop(&mut self) {
        let _ = Command::new(rpaas_run_bin())
            .args([
                "net",
                "detach",
                "--netns",
                &self.0,
                "--host-netns",
                &self.1,
                "--id",
                &self.2,
            ])
            .output();
    }
}

/// HTTP GET from inside `ns` (a client socket made on a thread that entered
/// the netns), retrying while the server starts (readiness, not timing).
/// busybox wget 1.35 (Debian 12) segfaults once connected, so the client is
/// ours on this side and busybox nc inside the container.
fn http_get_from(ns: &Ns, addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = addr.parse().expect("socket address");
    let ns_path = ns.path();
    let mut last = String::new();
    for _ in 0..50 {
        let r = std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<String> {
                let f = std::fs::File::open(&ns_path)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let mut c =
                    std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(2))?;
                c.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
                let mut resp = String::new();
                c.read_to_string(&mut resp)?;
                Ok(resp)
            })
            .join()
            .expect("client thread")
        });
        match r {
            Ok(resp) if resp.starts_with("HTTP/1.") => return body(&resp),
            Ok(resp) => last = resp,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("GET http://{addr}{path} from {} failed: {last}", ns.0);
}

/// The body of a 200 response (panics on another status).
fn body(resp: &str) -> String {
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP header end");
    assert!(
        head.lines().next().unwrap_or("").contains(" 200 "),
        "not a 200: {head}"
    );
    body.to_string()
}

fn http_both_ways(runtime_bin: PathBuf, macvlan: bool) {
    let lan = Lan::new();
    let app = Ns::new("app");
    let rt = Runtime {
        bin: runtime_bin,
        root: state_root(),
    };
    let id = unique_id("rpaas-net-e2e");
    let (v4, v6, peer, peer_v4, peer_v6) = if macvlan {
        (
            "10.231.1.50",
            "fd00:231:1::50",
            &lan.other2,
            "10.231.1.100",
            "fd00:231:1::100",
        )
    } else {
        (
            "10.231.0.50",
            "fd00:231::50",
            &lan.other,
            "10.231.0.100",
            "fd00:231::100",
        )
    };

    // The network first (an agent can do it before or after create).
    let app_path = app.path();
    let host_path = lan.host.path();
    let (ip4, ip6) = (format!("{v4}/24"), format!("{v6}/64"));
    let mut attach = vec![
        "net",
        "attach",
        "--netns",
        &app_path,
        "--host-netns",
        &host_path,
        "--id",
        &id,
    ];
    let upl = if macvlan {
        ["--macvlan", "rpnic0"]
    } else {
        ["--bridge", "rpbr0"]
    };
    attach.extend_from_slice(&upl);
    attach.extend_from_slice(&[
        "--ip",
        &ip4,
        "--ip",
        &ip6,
        "--sysctl",
        "net.core.somaxconn=512",
    ]);
    let out = Command::new(rpaas_run_bin())
        .args(&attach)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "net attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _attached = AttachGuard(app_path.clone(), host_path.clone(), id.clone());

    // The container joins that netns through the spec's namespace path.
    let mut cfg = default_config(&["httpd", "-f", "-p", "8080", "-h", "/www"]);
    let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
    for ns in nss.iter_mut() {
        if ns["type"] == "network" {
            *ns = serde_json::json!({"type": "network", "path": app_path});
        }
    }
    let bundle = Bundle::new(&cfg);
    std::fs::create_dir_all(bundle.rootfs().join("www")).unwrap();
    std::fs::write(
        bundle.rootfs().join("www/index.html"),
        format!("hello from {id}\n"),
    )
    .unwrap();
    rt.run_detached(bundle.path(), &id);
    let _container = ContainerGuard(&rt, id.clone());

    // The other machine reaches the app: IPv4 and IPv6.
    let want = format!("hello from {id}\n");
    assert_eq!(
        http_get_from(peer, &format!("{v4}:8080"), "/index.html"),
        want
    );
    assert_eq!(
        http_get_from(peer, &format!("[{v6}]:8080"), "/index.html"),
        want
    );

    // And the app reaches the other machine, from inside the container.
    let _peer_httpd = PeerHttpd::start(peer, "8081", "hello from the LAN\n");
    for host in [peer_v4, peer_v6] {
        let get = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8081");
        let mut last = String::new();
        let mut got = None;
        for _ in 0..50 {
            let out = rt.exec(&id, &["sh", "-c", &get]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.starts_with("HTTP/1.") {
                got = Some(body(&text));
                break;
            }
            last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            got.as_deref(),
            Some("hello from the LAN\n"),
            "GET from inside the container to {host}: {last}"
        );
    }
    // The per-netns sysctls are what the container sees.
    let out = rt.exec(
        &id,
        &[
            "cat",
            "/proc/sys/net/ipv4/tcp_keepalive_time",
            "/proc/sys/net/core/somaxconn",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "300\n512\n");

    // Teardown through the CLI: the container, then its network; nothing of
    // ours is left in the host netns or the app netns.
    let st = rt
        .cmd()
        .args(["delete", "--force", &id])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "delete --force {id}");
    let out = Command::new(rpaas_run_bin())
        .args([
            "net",
            "detach",
            "--netns",
            &app_path,
            "--host-netns",
            &host_path,
            "--id",
            &id,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "net detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host_links = sh(&["ip", "-n", &lan.host.0, "-o", "link"]);
    assert!(
        !host_links.contains("rpv"),
        "host end left behind: {host_links}"
    );
    let app_links = sh(&["ip", "-n", &app.0, "-o", "link"]);
    assert_eq!(
        app_links.lines().count(),
        1,
        "only lo may remain: {app_links}"
    );
    let show = Command::new(rpaas_run_bin())
        .args(["net", "show", "--netns", &app_path, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("net show --json");
    assert_eq!(v["links"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn http_both_ways_bridge_mode_rpaas_run() {
    http_both_ways(rpaas_run_bin(), false);
}

#[test]
fn http_both_ways_macvlan_mode_rpaas_run() {
    http_both_ways(rpaas_run_bin(), true);
}

/// The same test with runc as the runtime: shows the test itself is sound.
#[test]
fn http_both_ways_bridge_mode_runc_peer() {
    http_both_ways(PathBuf::from("/usr/sbin/runc"), false);
}

/// The CLI's flags reach the kernel, and its errors name the interface, the
/// netns and the reason, leaving nothing behind.
#[test]
fn net_cli_flags_and_errors() {
    let lan = Lan::new();
    let app = Ns::new("cli");
    let id = unique_id("rpaas-net-cli");
    let (app_path, host_path) = (app.path(), lan.host.path());
    let net = |args: &[&str]| {
        Command::new(rpaas_run_bin())
            .args(["net"])
            .args(args)
            .output()
            .unwrap()
    };
    let base = [
        "--netns",
        &app_path,
        "--host-netns",
        &host_path,
        "--id",
        &id,
    ];

    let out = net(&[
        &["attach"][..],
        &base,
        &["--macvlan", "rpnope9", "--ip", "10.231.1.9/24"],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["rpnope9", "not found", &host_path, "eth0"] {
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
    let out = net(&[
        &["attach"][..],
        &base,
        &[
            "--bridge",
            "rpbr0",
            "--ip",
            "10.231.0.9/24",
            "--mtu",
            "9000",
        ],
    ]
    .concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MTU 9000") && err.contains("1500") && err.contains(&app_path),
        "{err}"
    );
    let out = net(&[
        &["attach"][..],
        &base,
        &[
            "--bridge",
            "rpbr0",
            "--ip",
            "10.231.0.9/24",
            "--sysctl",
            "kernel.x=1",
        ],
    ]
    .concat());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sysctls.kernel.x"));
    assert_eq!(
        sh(&["ip", "-n", &app.0, "-o", "link"]).lines().count(),
        1,
        "nothing left after failures"
    );

    let out = net(&[
        &["attach"][..],
        &base,
        &[
            "--bridge",
            "rpbr0",
            "--ip",
            "10.231.0.9/24",
            "--ip",
            "fd00:231::9/64",
            "--gw",
            "10.231.0.1",
            "--route",
            "10.77.0.0/16",
            "via",
            "10.231.0.1",
            "--mac",
            "02:00:00:00:00:99",
            "--mtu",
            "1400",
            "--sysctl",
            "net.ipv4.tcp_keepalive_time=60",
            "--json",
        ],
    ]
    .concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("attach --json");
    assert_eq!(v["mac"], "02:00:00:00:00:99");
    assert_eq!(v["mtu"], 1400);
    let routes = sh(&["ip", "-n", &app.0, "route"]);
    assert!(
        routes.contains("default via 10.231.0.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("10.77.0.0/16 via 10.231.0.1 dev eth0"),
        "{routes}"
    );
    let ka = app.exec(&["cat", "/proc/sys/net/ipv4/tcp_keepalive_time"]);
    assert_eq!(String::from_utf8_lossy(&ka.stdout).trim(), "60");
    let out = net(&[&["detach"][..], &base].concat());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    // Idempotent, and fine once the netns is gone.
    drop(app);
    let out = net(&[&["detach"][..], &base].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
