//! net_attach: the cost of giving a container its network.
//!
//! Attach+detach of one container (bridge mode, IPv4+IPv6, default gateway,
//! arp_notify and the three keepalive sysctls) done three ways in the same run:
//!  * rpaas-netsetup (one call each way);
//!  * the same work as a shell script would do it with iproute2 `ip` commands;
//!  * a CNI-like sequence in-process over netlink: veth created in the host
//!    netns, the peer moved into the container netns, then configured there
//!    (what the reference bridge plugin does), instead of creating it in place.
//!
//! Then 100 containers attached to one bridge: total and median per attach.
//! Everything happens in namespaces named rpaas-bench-*; the host's own network
//! is not touched. Run as root: `cargo run --release -p rpaas-benches --bin net_attach`.
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rpaas_netsetup::rtnetlink::{LinkUnspec, LinkVeth};
use rpaas_netsetup::{addr, link, netns, route, AttachSpec, IpCidr, Mode, Netns};

const BRIDGE: &str = "rpbr0";

/// A named netns, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(name: String) -> anyhow::Result<Ns> {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name])?;
        Ok(Ns(name))
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("spawn {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn spec(id: &str, n: u32) -> AttachSpec {
    let v4: IpCidr = format!("10.231.{}.{}/16", n / 250, n % 250 + 2)
        .parse()
        .expect("v4");
    let v6: IpCidr = format!("fd00:231::{:x}/64", n + 2).parse().expect("v6");
    let mut s = AttachSpec::new(
        id,
        Mode::Bridge {
            bridge: BRIDGE.into(),
        },
        vec![v4, v6],
    );
    s.gateways = vec!["10.231.0.1".parse().expect("gw")];
    s
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The shell-script way: one `ip` process per step.
fn ip_attach(host: &Ns, c: &Ns, s: &AttachSpec) -> anyhow::Result<()> {
    let hv = rpaas_netsetup::names::host_veth(&s.id);
    let tmp = rpaas_netsetup::names::temp_name(&s.id);
    let mac = rpaas_netsetup::spec::format_mac(&s.effective_mac().unwrap_or([2, 0, 0, 0, 0, 1]));
    let (a4, a6) = (s.addresses[0].to_string(), s.addresses[1].to_string());
    sh(&[
        "ip", "-n", &host.0, "link", "add", &hv, "type", "veth", "peer", "name", &tmp, "netns",
        &c.0,
    ])?;
    sh(&[
        "ip", "-n", &host.0, "link", "set", &hv, "master", BRIDGE, "up",
    ])?;
    sh(&[
        "ip", "-n", &c.0, "link", "set", &tmp, "address", &mac, "name", "eth0",
    ])?;
    sh(&["ip", "-n", &c.0, "link", "set", "lo", "up"])?;
    sh(&["ip", "-n", &c.0, "addr", "add", &a4, "dev", "eth0"])?;
    sh(&["ip", "-n", &c.0, "addr", "add", &a6, "dev", "eth0", "nodad"])?;
    sh(&["ip", "-n", &c.0, "link", "set", "eth0", "up"])?;
    sh(&[
        "ip",
        "-n",
        &c.0,
        "route",
        "add",
        "default",
        "via",
        "10.231.0.1",
    ])?;
    sh(&[
        "ip", "netns", "exec", &c.0, "sh", "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify; echo 300 > /proc/sys/net/ipv4/tcp_keepalive_time; \
         echo 30 > /proc/sys/net/ipv4/tcp_keepalive_intvl; echo 5 > /proc/sys/net/ipv4/tcp_keepalive_probes",
    ])
}

fn ip_detach(host: &Ns, s: &AttachSpec) -> anyhow::Result<()> {
    sh(&[
        "ip",
        "-n",
        &host.0,
        "link",
        "del",
        &rpaas_netsetup::names::host_veth(&s.id),
    ])
}

/// CNI-like, in-process: create the pair in the host netns, move the peer,
/// configure it inside.
fn cni_attach(host: &Netns, c: &Netns, s: &AttachSpec) -> anyhow::Result<()> {
    let hv = rpaas_netsetup::names::host_veth(&s.id);
    let tmp = rpaas_netsetup::names::temp_name(&s.id);
    netns::run_dedicated(|rt| {
        rt.block_on(async {
            host.enter()?;
            let hh = netns::connect("host")?;
            let br = link::by_name(&hh, "host", BRIDGE).await?.expect("bridge");
            hh.link()
                .add(LinkVeth::new(&hv, &tmp).build())
                .execute()
                .await
                .map_err(|e| rpaas_netsetup::Error::Thread(e.to_string()))?;
            let h = link::by_name(&hh, "host", &hv).await?.expect("host end");
            let msg = LinkUnspec::new_with_index(h.index)
                .controller(br.index)
                .up()
                .build();
            hh.link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| rpaas_netsetup::Error::Thread(e.to_string()))?;
            let p = link::by_name(&hh, "host", &tmp).await?.expect("peer");
            let msg = LinkUnspec::new_with_index(p.index)
                .setns_by_fd(c.raw_fd())
                .build();
            hh.link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| rpaas_netsetup::Error::Thread(e.to_string()))?;
            c.enter()?;
            let th = netns::connect("c")?;
            let p = link::by_name(&th, "c", &tmp).await?.expect("moved peer");
            let mac = s.effective_mac().unwrap_or([2, 0, 0, 0, 0, 1]).to_vec();
            let msg = LinkUnspec::new_with_index(p.index)
                .address(mac)
                .name("eth0")
                .build();
            th.link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| rpaas_netsetup::Error::Thread(e.to_string()))?;
            link::set_up(&th, "c", 1, "lo").await?;
            for a in &s.addresses {
                addr::add(&th, "c", "eth0", p.index, *a, true).await?;
            }
            link::set_up(&th, "c", p.index, "eth0").await?;
            route::add(&th, "c", "eth0", p.index, None, s.gateways[0]).await?;
            for (k, v) in [
                ("net/ipv4/conf/eth0/arp_notify", "1"),
                ("net/ipv4/tcp_keepalive_time", "300"),
                ("net/ipv4/tcp_keepalive_intvl", "30"),
                ("net/ipv4/tcp_keepalive_probes", "5"),
            ] {
                std::fs::write(format!("/proc/sys/{k}"), v)
                    .map_err(|e| rpaas_netsetup::Error::Thread(format!("{k}: {e}")))?;
            }
            Ok(())
        })
    })?;
    Ok(())
}

fn cni_detach(host: &Netns, s: &AttachSpec) -> anyhow::Result<()> {
    let hv = rpaas_netsetup::names::host_veth(&s.id);
    netns::run_dedicated(|rt| {
        rt.block_on(async {
            host.enter()?;
            let hh = netns::connect("host")?;
            if let Some(l) = link::by_name(&hh, "host", &hv).await? {
                link::delete(&hh, "host", &l).await?;
            }
            Ok(())
        })
    })?;
    Ok(())
}

struct Times {
    attach: Vec<Duration>,
    both: Vec<Duration>,
}

fn measure(
    iters: usize,
    mut at: impl FnMut() -> anyhow::Result<()>,
    mut de: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Times> {
    let mut t = Times {
        attach: Vec::new(),
        both: Vec::new(),
    };
    for _ in 0..iters {
        let t0 = Instant::now();
        at()?;
        let t1 = Instant::now();
        de()?;
        let t2 = Instant::now();
        t.attach.push(t1 - t0);
        t.both.push(t2 - t0);
    }
    Ok(t)
}

fn main() -> anyhow::Result<()> {
    let iters: usize = std::env::var("RPAAS_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let many: u32 = std::env::var("RPAAS_BENCH_MANY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let host = Ns::new("rpaas-bench-host".into())?;
    sh(&["ip", "-n", &host.0, "link", "add", BRIDGE, "type", "bridge"])?;
    sh(&["ip", "-n", &host.0, "link", "set", BRIDGE, "up"])?;
    let c = Ns::new("rpaas-bench-c".into())?;
    let (hn, cn) = (Netns::open(host.path())?, Netns::open(c.path())?);
    let s = spec("rpaas-bench-one", 0);

    // Warm-up (page cache, module state), then the three ways interleaved in
    // blocks so machine noise hits all of them.
    rpaas_netsetup::attach(&cn, Some(&hn), &s)?;
    rpaas_netsetup::detach(Some(&cn), Some(&hn), &s.id)?;
    let r = measure(
        iters,
        || Ok(rpaas_netsetup::attach(&cn, Some(&hn), &s).map(|_| ())?),
        || Ok(rpaas_netsetup::detach(Some(&cn), Some(&hn), &s.id).map(|_| ())?),
    )?;
    let ip = measure(iters, || ip_attach(&host, &c, &s), || ip_detach(&host, &s))?;
    let cni = measure(iters, || cni_attach(&hn, &cn, &s), || cni_detach(&hn, &s))?;

    let (mut ra, mut rb) = (r.attach, r.both);
    let (mut ia, mut ib) = (ip.attach, ip.both);
    let (mut ca, mut cb) = (cni.attach, cni.both);
    let (ra, rb, ia, ib, ca, cb) = (
        median(&mut ra),
        median(&mut rb),
        median(&mut ia),
        median(&mut ib),
        median(&mut ca),
        median(&mut cb),
    );
    println!(
        "net_attach: one container, bridge mode, v4+v6+gw+sysctls, {iters} iterations, medians"
    );
    println!("  {:<16} {:>12} {:>16}", "", "attach", "attach+detach");
    println!("  {:<16} {:>12} {:>16}", "rpaas-netsetup", ms(ra), ms(rb));
    println!("  {:<16} {:>12} {:>16}", "ip commands", ms(ia), ms(ib));
    println!("  {:<16} {:>12} {:>16}", "CNI-like", ms(ca), ms(cb));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  ratio rpaas/ip: attach {:.3}x, attach+detach {:.3}x (target <= 0.3x)",
        ratio(ra, ia),
        ratio(rb, ib)
    );
    println!(
        "  ratio rpaas/CNI-like: attach {:.3}x, attach+detach {:.3}x",
        ratio(ra, ca),
        ratio(rb, cb)
    );
    println!(
        "  target: median attach <= 5 ms: {}",
        if ra <= Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        }
    );

    // Many containers on one bridge.
    let mut nss = Vec::new();
    for i in 0..many {
        nss.push(Ns::new(format!("rpaas-bench-m{i}"))?);
    }
    let mut per = Vec::new();
    let t0 = Instant::now();
    for (i, ns) in nss.iter().enumerate() {
        let n = Netns::open(ns.path())?;
        let sp = spec(&format!("rpaas-bench-m{i}"), i as u32 + 1);
        let t = Instant::now();
        rpaas_netsetup::attach(&n, Some(&hn), &sp)?;
        per.push(t.elapsed());
    }
    let total = t0.elapsed();
    let first = per[0];
    let last = per[per.len() - 1];
    let med = median(&mut per);
    let t1 = Instant::now();
    for (i, ns) in nss.iter().enumerate() {
        let n = Netns::open(ns.path())?;
        rpaas_netsetup::detach(Some(&n), Some(&hn), &format!("rpaas-bench-m{i}"))?;
    }
    let dt = t1.elapsed();
    println!(
        "net_attach: {many} containers on one bridge: attach total {}, median {} (first {}, last {}); detach total {}",
        ms(total),
        ms(med),
        ms(first),
        ms(last),
        ms(dt)
    );
    Ok(())
}
