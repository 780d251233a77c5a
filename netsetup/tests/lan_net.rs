//! Integration tests on a LAN of network namespaces (root). See lan/mod.rs.
mod lan;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use lan::{bridge_spec, cidr, id, in_netns, macvlan_spec, Lan, Ns, BRIDGE, NIC};
use rpaas_netsetup::{attach, detach, show, Error, Mode};

#[test]
fn bridge_mode_pings_both_ways_v4_and_v6() {
    let lan = Lan::new();
    let (c1, c2) = (Ns::new("c1"), Ns::new("c2"));
    let (id1, id2) = (id("br1"), id("br2"));
    let a1 = attach(
        &c1.open(),
        Some(&lan.host.open()),
        &bridge_spec(&id1, "10.231.0.11/24", "fd00:231::11/64"),
    )
    .expect("attach c1");
    attach(
        &c2.open(),
        Some(&lan.host.open()),
        &bridge_spec(&id2, "10.231.0.12/24", "fd00:231::12/64"),
    )
    .expect("attach c2");
    assert_eq!(a1.ifname, "eth0");
    assert_eq!(
        a1.mac, "02:72:0a:e7:00:0b",
        "MAC derived from the IPv4 address"
    );
    let host_end = a1.host_ifname.clone().expect("veth host end");
    assert!(lan
        .host
        .ip(&["-o", "link", "show", &host_end])
        .contains(&format!("master {BRIDGE}")));

    // The other machine and the containers, both directions, both families.
    for addr in ["10.231.0.11", "10.231.0.12", "fd00:231::11", "fd00:231::12"] {
        assert!(lan.other.ping(addr), "other machine -> {addr}");
    }
    for c in [&c1, &c2] {
        assert!(c.ping("10.231.0.100"), "{} -> other v4", c.name);
        assert!(c.ping("fd00:231::100"), "{} -> other v6", c.name);
    }
    assert!(
        c1.ping("10.231.0.12") && c1.ping("fd00:231::12"),
        "container to container"
    );
    // Bridge mode: the host reaches its containers.
    assert!(
        lan.host.ping("10.231.0.11"),
        "host -> container over the bridge"
    );
    // The default route points at the gateway.
    assert!(c1
        .ip(&["route", "show", "default"])
        .contains("via 10.231.0.1 dev eth0"));

    detach(Some(&c1.open()), Some(&lan.host.open()), &id1).unwrap();
    detach(Some(&c2.open()), Some(&lan.host.open()), &id2).unwrap();
}

#[test]
fn macvlan_mode_pings_both_ways_and_the_host_is_isolated() {
    let lan = Lan::new();
    let (c1, c2) = (Ns::new("m1"), Ns::new("m2"));
    let (id1, id2) = (id("mv1"), id("mv2"));
    let a1 = attach(
        &c1.open(),
        Some(&lan.host.open()),
        &macvlan_spec(&id1, "10.231.1.11/24", "fd00:231:1::11/64"),
    )
    .expect("attach m1");
    attach(
        &c2.open(),
        Some(&lan.host.open()),
        &macvlan_spec(&id2, "10.231.1.12/24", "fd00:231:1::12/64"),
    )
    .expect("attach m2");
    assert_eq!(a1.host_ifname, None);
    assert!(c1
        .ip(&["-d", "link", "show", "eth0"])
        .contains("macvlan mode bridge"));

    for addr in [
        "10.231.1.11",
        "10.231.1.12",
        "fd00:231:1::11",
        "fd00:231:1::12",
    ] {
        assert!(lan.other2.ping(addr), "other machine -> {addr}");
    }
    for c in [&c1, &c2] {
        assert!(c.ping("10.231.1.100"), "{} -> other v4", c.name);
        assert!(c.ping("fd00:231:1::100"), "{} -> other v6", c.name);
    }
    assert!(
        c1.ping("10.231.1.12"),
        "macvlan siblings talk in bridge mode"
    );
    // The documented limit: the host cannot reach its own macvlan children
    // through the master, although the other machine on the same wire can.
    assert!(lan
        .host
        .ip(&["-o", "addr", "show", NIC])
        .contains("10.231.1.1/24"));
    assert!(
        !lan.host.ping_once("10.231.1.11"),
        "host reached its macvlan child: isolation not shown"
    );
    assert!(lan.other2.ping("10.231.1.11"));

    detach(Some(&c1.open()), Some(&lan.host.open()), &id1).unwrap();
    detach(Some(&c2.open()), Some(&lan.host.open()), &id2).unwrap();
}

#[test]
fn sysctls_read_back_inside_the_container_netns() {
    let lan = Lan::new();
    let c = Ns::new("sys");
    let cid = id("sys");
    let mut spec = bridge_spec(&cid, "10.231.0.21/24", "fd00:231::21/64");
    spec.sysctls
        .insert("net.core.somaxconn".into(), "2048".into());
    spec.sysctls
        .insert("net.ipv4.ip_local_port_range".into(), "20000 40000".into());
    attach(&c.open(), Some(&lan.host.open()), &spec).unwrap();

    // Read by an independent reader inside the netns.
    let cat = |ns: &Ns, k: &str| {
        ns.exec_ok(&["cat", &format!("/proc/sys/{}", k.replace('.', "/"))])
            .trim()
            .to_string()
    };
    assert_eq!(cat(&c, "net.ipv4.tcp_keepalive_time"), "300");
    assert_eq!(cat(&c, "net.ipv4.tcp_keepalive_intvl"), "30");
    assert_eq!(cat(&c, "net.ipv4.tcp_keepalive_probes"), "5");
    assert_eq!(cat(&c, "net.core.somaxconn"), "2048");
    assert_eq!(
        cat(&c, "net.ipv4.ip_local_port_range")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["20000", "40000"]
    );
    assert_eq!(cat(&c, "net.ipv4.conf.eth0.arp_notify"), "1");
    assert_eq!(cat(&c, "net.ipv6.conf.eth0.ndisc_notify"), "1");
    // A netns we did not attach keeps the kernel's defaults: the values are per netns.
    assert_eq!(cat(&lan.other, "net.ipv4.tcp_keepalive_time"), "7200");
    // And show() reads the same values through the library's thread.
    let st = show(&c.open(), &[]).unwrap();
    assert_eq!(st.sysctls["net.ipv4.tcp_keepalive_time"], "300");
    assert_eq!(st.sysctls["net.core.somaxconn"], "2048");
    assert!(st
        .links
        .iter()
        .any(|l| l.name == "eth0" && l.alias == format!("rpaas:{cid}") && l.up));
    assert!(st
        .addresses
        .iter()
        .any(|a| a.cidr == cidr("10.231.0.21/24")));
    detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();
}

#[test]
fn keepalive_detects_a_peer_that_silently_vanished() {
    let lan = Lan::new();
    let c = Ns::new("ka");
    let cid = id("ka");
    let mut spec = bridge_spec(&cid, "10.231.0.31/24", "fd00:231::31/64");
    for (k, v) in [("time", "1"), ("intvl", "1"), ("probes", "2")] {
        spec.sysctls
            .insert(format!("net.ipv4.tcp_keepalive_{k}"), v.into());
    }
    attach(&c.open(), Some(&lan.host.open()), &spec).unwrap();

    let listener = in_netns(&lan.other.path(), || {
        TcpListener::bind("10.231.0.100:7070").expect("bind")
    });
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"x").expect("server write");
        s // handed back so it stays open until the test ends
    });
    let mut client = in_netns(&c.path(), || {
        TcpStream::connect("10.231.0.100:7070").expect("connect")
    });
    // Keepalive is per socket; the timing comes from the netns's sysctls.
    nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::KeepAlive, &true).unwrap();
    let mut b = [0u8; 1];
    client.read_exact(&mut b).expect("first byte");
    let server_side = server.join().expect("server thread");

    // The peer disappears without a FIN or RST: its only link goes down.
    lan.other.ip(&["link", "set", "eth0", "down"]);
    // A safety net so a broken test cannot hang; the assertion is on the error kind.
    client
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let err = client
        .read(&mut b)
        .expect_err("the read must fail once keepalive gives up");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ETIMEDOUT),
        "expected ETIMEDOUT from keepalive, got {err:?}"
    );
    drop(client);
    drop(server_side);
}

#[test]
fn teardown_leaves_no_link_address_or_route() {
    let lan = Lan::new();
    let c = Ns::new("td");
    let cid = id("td");
    let host_before = lan.host.snapshot();
    let c_before = c.snapshot();
    let mut spec = bridge_spec(&cid, "10.231.0.41/24", "fd00:231::41/64");
    spec.gateways.push("fd00:231::1".parse().unwrap());
    spec.routes.push(rpaas_netsetup::RouteSpec {
        dest: cidr("10.99.0.0/16"),
        via: "10.231.0.1".parse().unwrap(),
    });
    attach(&c.open(), Some(&lan.host.open()), &spec).unwrap();
    assert_ne!(
        lan.host.snapshot(),
        host_before,
        "attach changed nothing on the host side?"
    );
    assert!(c.ip(&["route"]).contains("10.99.0.0/16 via 10.231.0.1"));

    let rep = detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();
    assert!(!rep.removed.is_empty());
    // lo stays up after detach (attach brought it up); compare everything else.
    let strip_lo = |s: std::collections::BTreeSet<String>| {
        s.into_iter()
            .filter(|l| !l.contains(" lo") && !l.contains("dev lo"))
            .collect::<Vec<_>>()
    };
    assert_eq!(lan.host.snapshot(), host_before);
    assert_eq!(strip_lo(c.snapshot()), strip_lo(c_before));
    // Idempotent.
    assert!(detach(Some(&c.open()), Some(&lan.host.open()), &cid)
        .unwrap()
        .removed
        .is_empty());

    // Macvlan, and detach after the container netns is gone.
    let m = Ns::new("td2");
    let mid = id("td2");
    attach(
        &m.open(),
        Some(&lan.host.open()),
        &macvlan_spec(&mid, "10.231.1.41/24", "fd00:231:1::41/64"),
    )
    .unwrap();
    let rep = detach(Some(&m.open()), Some(&lan.host.open()), &mid).unwrap();
    assert_eq!(rep.removed.len(), 1, "{rep:?}");
    assert_eq!(lan.host.snapshot(), host_before);

    let g = Ns::new("td3");
    let gid = id("td3");
    attach(
        &g.open(),
        Some(&lan.host.open()),
        &bridge_spec(&gid, "10.231.0.43/24", "fd00:231::43/64"),
    )
    .unwrap();
    drop(g); // the netns (and the veth's container end) vanish; the host end is removed with its peer
    detach(None, Some(&lan.host.open()), &gid).unwrap();
    assert_eq!(lan.host.snapshot(), host_before);
}

#[test]
fn reattach_of_the_same_id_replaces_the_previous_one() {
    let lan = Lan::new();
    let c = Ns::new("re");
    let cid = id("re");
    let spec = bridge_spec(&cid, "10.231.0.51/24", "fd00:231::51/64");
    attach(&c.open(), Some(&lan.host.open()), &spec).unwrap();
    attach(&c.open(), Some(&lan.host.open()), &spec).expect("second attach of one id");
    assert!(lan.other.ping("10.231.0.51"));
    let links = c.ip(&["-o", "link"]);
    assert_eq!(links.matches("eth0").count(), 1, "{links}");
    detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();
}

/// Every bad-input error names the interface and netns, carries the reason,
/// and leaves both namespaces as they were.
fn assert_clean_failure(
    lan: &Lan,
    c: &Ns,
    spec: &rpaas_netsetup::AttachSpec,
    want: &[&str],
) -> Error {
    let (hb, cb) = (lan.host.snapshot(), c.snapshot());
    let err = attach(&c.open(), Some(&lan.host.open()), spec).expect_err("attach must fail");
    let msg = err.to_string();
    for w in want {
        assert!(msg.contains(w), "error {msg:?} lacks {w:?}");
    }
    let strip_lo = |s: std::collections::BTreeSet<String>| {
        s.into_iter()
            .filter(|l| !l.contains(" lo") && !l.contains("dev lo"))
            .collect::<Vec<_>>()
    };
    assert_eq!(lan.host.snapshot(), hb, "host netns changed after: {msg}");
    assert_eq!(
        strip_lo(c.snapshot()),
        strip_lo(cb),
        "container netns changed after: {msg}"
    );
    err
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_nothing() {
    let lan = Lan::new();
    let c = Ns::new("bad");
    let hostns = lan.host.path().display().to_string();
    let cns = c.path().display().to_string();

    let mut s = bridge_spec(&id("bad"), "10.231.0.61/24", "fd00:231::61/64");
    s.mode = Mode::Bridge {
        bridge: "rpnope0".into(),
    };
    let e = assert_clean_failure(&lan, &c, &s, &["rpnope0", "not found", &hostns, "eth0"]);
    assert!(matches!(e, Error::MasterNotFound { .. }));

    let mut s = macvlan_spec(&id("bad"), "10.231.1.61/24", "fd00:231:1::61/64");
    s.mode = Mode::Macvlan {
        master: "rpnope1".into(),
        mode: Default::default(),
    };
    assert_clean_failure(&lan, &c, &s, &["rpnope1", "not found", &hostns]);

    let mut s = bridge_spec(&id("bad"), "10.231.0.61/24", "fd00:231::61/64");
    s.mode = Mode::Bridge { bridge: NIC.into() };
    assert_clean_failure(&lan, &c, &s, &[NIC, "not a bridge", "veth"]);

    for mode in [
        Mode::Bridge {
            bridge: BRIDGE.into(),
        },
        Mode::Macvlan {
            master: NIC.into(),
            mode: Default::default(),
        },
    ] {
        let mut s = bridge_spec(&id("bad"), "10.231.0.61/24", "fd00:231::61/64");
        s.mode = mode;
        s.mtu = Some(9000);
        let e = assert_clean_failure(&lan, &c, &s, &["MTU 9000", "1500", "eth0", &cns]);
        assert!(matches!(e, Error::MtuTooLarge { .. }));
    }

    // Name collision on the host side: a foreign link with our derived name.
    let cid = id("coll");
    let host_name = rpaas_netsetup::names::host_veth(&cid);
    lan.host.ip(&["link", "add", &host_name, "type", "bridge"]);
    let s = bridge_spec(&cid, "10.231.0.62/24", "fd00:231::62/64");
    let e = assert_clean_failure(
        &lan,
        &c,
        &s,
        &[&host_name, "already exists", &hostns, "bridge"],
    );
    assert!(matches!(e, Error::NameCollision { .. }));
    assert!(
        lan.host.ip(&["-o", "link"]).contains(&host_name),
        "the foreign link must survive"
    );
    lan.host.ip(&["link", "del", &host_name]);

    // Name collision inside the container: eth0 is already there.
    c.ip(&["link", "add", "eth0", "type", "bridge"]);
    let s = bridge_spec(&id("coll2"), "10.231.0.63/24", "fd00:231::63/64");
    assert_clean_failure(&lan, &c, &s, &["eth0", "already exists", &cns]);
    c.ip(&["link", "del", "eth0"]);

    // Duplicate IPv4 on the LAN (the other machine's), found by the ARP probe.
    let mut s = bridge_spec(&id("dup4"), "10.231.0.100/24", "fd00:231::64/64");
    s.probe_duplicates = true;
    let e = assert_clean_failure(
        &lan,
        &c,
        &s,
        &["10.231.0.100/24", "already in use", "ARP", "eth0", &cns],
    );
    assert!(matches!(e, Error::DuplicateAddress { .. }));

    // Duplicate IPv6, found by the kernel's DAD.
    let mut s = bridge_spec(&id("dup6"), "10.231.0.65/24", "fd00:231::100/64");
    s.probe_duplicates = true;
    let e = assert_clean_failure(
        &lan,
        &c,
        &s,
        &["fd00:231::100/64", "already in use", "DAD", "eth0"],
    );
    assert!(matches!(e, Error::DuplicateAddress { .. }));

    // With probing on and no conflict, attach works (and DAD completes).
    let mut s = bridge_spec(&id("nodup"), "10.231.0.66/24", "fd00:231::66/64");
    s.probe_duplicates = true;
    let cid = s.id.clone();
    attach(&c.open(), Some(&lan.host.open()), &s).expect("probing attach without conflict");
    assert!(lan.other.ping("fd00:231::66"));
    detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();

    // A non-net sysctl is refused before anything happens.
    let mut s = bridge_spec(&id("sysk"), "10.231.0.67/24", "fd00:231::67/64");
    s.sysctls.insert("kernel.pid_max".into(), "100".into());
    assert_clean_failure(&lan, &c, &s, &["sysctls.kernel.pid_max", "not a net.*"]);

    // A netns path that does not exist.
    let e = rpaas_netsetup::Netns::open("/run/netns/rpaas-does-not-exist").unwrap_err();
    assert!(e.to_string().contains("/run/netns/rpaas-does-not-exist"));
}

#[test]
fn the_callers_thread_stays_in_its_netns_even_inside_a_tokio_runtime() {
    let lan = Lan::new();
    let c = Ns::new("thr");
    let cid = id("thr");
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    // An agent calls us from async code; our runtime lives on our own thread,
    // so this nests nothing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(async {
        attach(
            &c.open(),
            Some(&lan.host.open()),
            &bridge_spec(&cid, "10.231.0.81/24", "fd00:231::81/64"),
        )
    });
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    show(&c.open(), &[]).unwrap();
    detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), before);
}

#[test]
fn a_netns_given_as_an_fd_works_like_a_path() {
    let lan = Lan::new();
    let c = Ns::new("fd");
    let cid = id("fd");
    let fd: std::os::fd::OwnedFd = std::fs::File::open(c.path()).unwrap().into();
    let ns = rpaas_netsetup::Netns::from_fd(fd, "container fd");
    attach(
        &ns,
        Some(&lan.host.open()),
        &bridge_spec(&cid, "10.231.0.82/24", "fd00:231::82/64"),
    )
    .unwrap();
    assert!(lan.other.ping("10.231.0.82"));
    let err = attach(&ns, Some(&lan.host.open()), &{
        let mut s = bridge_spec(&id("fd2"), "10.231.0.83/24", "fd00:231::83/64");
        s.mtu = Some(9000);
        s
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("container fd"),
        "the label names the netns: {err}"
    );
    detach(Some(&ns), Some(&lan.host.open()), &cid).unwrap();
}
