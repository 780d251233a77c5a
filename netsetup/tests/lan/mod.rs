//! A small LAN made of network namespaces, for the integration tests. Nothing
//! here touches the host's own interfaces: every link is created directly
//! inside namespaces whose names contain "rpaas", and removed with them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};
use rpaas_netsetup::{AttachSpec, IpCidr, Mode, Netns};

/// A named netns (`ip netns add`), deleted on drop (which also deletes every
/// link inside it).
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(role: &str) -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rpaas-t{}-{}-{role}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(&["ip", "netns", "add", &name]);
        Ns { name }
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
    pub fn open(&self) -> Netns {
        Netns::open(self.path()).expect("open netns")
    }
    /// Run a command inside this netns.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run_ok(&full)
    }
    /// `ip -n NS args…`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        run_ok(&full)
    }
    /// busybox ping from this netns; true when a reply came back.
    pub fn ping(&self, addr: &str) -> bool {
        self.exec(&["busybox", "ping", "-c", "2", "-W", "2", addr])
            .status
            .success()
    }
    pub fn ping_once(&self, addr: &str) -> bool {
        self.exec(&["busybox", "ping", "-c", "1", "-W", "1", addr])
            .status
            .success()
    }
    /// Links, addresses and main-table routes, for before/after comparisons.
    pub fn snapshot(&self) -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        for l in self.ip(&["-o", "link", "show"]).lines() {
            // "3: name@peer: <FLAGS> …": keep the name only (counters and
            // carrier state may legitimately change).
            if let Some(name) = l.split(": ").nth(1) {
                s.insert(format!("link {name}"));
            }
        }
        for l in self.ip(&["-o", "addr", "show"]).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 3 {
                s.insert(format!("addr {} {}", f[1], f[3]));
            }
        }
        for fam in ["-4", "-6"] {
            for l in self.ip(&[fam, "route", "show", "table", "all"]).lines() {
                s.insert(format!("route {l}"));
            }
        }
        // Link-local addresses and their routes come and go with the kernel's
        // own DAD timing; our links themselves are listed above.
        s.retain(|l| !l.contains("fe80::"));
        s
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn")
}

pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a thread that has entered the netns at `path` (sockets made
/// there stay in that netns afterwards).
pub fn in_netns<T: Send>(path: &std::path::Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// The "host" netns with a bridge `rpbr0` (10.231.0.1/24, fd00:231::1/64) whose
/// uplink is a veth to the "other machine" (10.231.0.100, fd00:231::100), and a
/// second uplink `rpnic0` (a veth standing in for a NIC, 10.231.1.1/24) to a
/// second machine (10.231.1.100, fd00:231:1::100) for macvlan tests.
pub struct Lan {
    pub host: Ns,
    pub other: Ns,
    pub other2: Ns,
}

pub const BRIDGE: &str = "rpbr0";
pub const NIC: &str = "rpnic0";

impl Lan {
    pub fn new() -> Lan {
        let host = Ns::new("host");
        let other = Ns::new("other");
        let other2 = Ns::new("other2");
        host.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        host.ip(&["link", "set", BRIDGE, "up"]);
        host.ip(&["addr", "add", "10.231.0.1/24", "dev", BRIDGE]);
        host.ip(&["addr", "add", "fd00:231::1/64", "dev", BRIDGE, "nodad"]);
        run_ok(&[
            "ip",
            "link",
            "add",
            "rpup0",
            "netns",
            &host.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &other.name,
        ]);
        host.ip(&["link", "set", "rpup0", "master", BRIDGE, "up"]);
        other.ip(&["link", "set", "lo", "up"]);
        other.ip(&["addr", "add", "10.231.0.100/24", "dev", "eth0"]);
        other.ip(&["addr", "add", "fd00:231::100/64", "dev", "eth0", "nodad"]);
        other.ip(&["link", "set", "eth0", "up"]);

        run_ok(&[
            "ip",
            "link",
            "add",
            NIC,
            "netns",
            &host.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &other2.name,
        ]);
        host.ip(&["link", "set", NIC, "up"]);
        host.ip(&["addr", "add", "10.231.1.1/24", "dev", NIC]);
        other2.ip(&["link", "set", "lo", "up"]);
        other2.ip(&["addr", "add", "10.231.1.100/24", "dev", "eth0"]);
        other2.ip(&["addr", "add", "fd00:231:1::100/64", "dev", "eth0", "nodad"]);
        other2.ip(&["link", "set", "eth0", "up"]);
        Lan {
            host,
            other,
            other2,
        }
    }
}

pub fn cidr(s: &str) -> IpCidr {
    s.parse().expect("cidr")
}

/// A bridge-mode spec on the LAN's bridge.
pub fn bridge_spec(id: &str, v4: &str, v6: &str) -> AttachSpec {
    let mut s = AttachSpec::new(
        id,
        Mode::Bridge {
            bridge: BRIDGE.into(),
        },
        vec![cidr(v4), cidr(v6)],
    );
    s.gateways = vec!["10.231.0.1".parse().unwrap()];
    s
}

/// A macvlan-mode spec on the LAN's NIC.
pub fn macvlan_spec(id: &str, v4: &str, v6: &str) -> AttachSpec {
    AttachSpec::new(
        id,
        Mode::Macvlan {
            master: NIC.into(),
            mode: rpaas_netsetup::MacvlanMode::Bridge,
        },
        vec![cidr(v4), cidr(v6)],
    )
}

/// A unique container id with "rpaas" in it.
pub fn id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "rpaas-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
