//! `rpaas-run net …`: debug verbs over rpaas-netsetup (attach, detach, show).
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use rpaas_netsetup::spec::parse_mac;
use rpaas_netsetup::{AttachSpec, IpCidr, MacvlanMode, Mode, Netns, RouteSpec};

use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Give a netns its interface: veth on a bridge, or macvlan on a NIC.
    Attach(Box<AttachArgs>),
    /// Remove what attach made for a container id (idempotent).
    Detach(DetachArgs),
    /// Show a netns's links, addresses, routes and managed sysctls.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("uplink").required(true).args(["bridge", "macvlan"])))]
pub struct AttachArgs {
    /// The container's netns (e.g. /run/netns/X or /proc/PID/ns/net).
    #[arg(long)]
    netns: PathBuf,
    /// Container id (host-side names and the interface alias derive from it).
    #[arg(long)]
    id: String,
    /// Bridge mode: the bridge holding the uplink.
    #[arg(long)]
    bridge: Option<String>,
    /// Macvlan mode: the master NIC (or VLAN sub-interface).
    #[arg(long)]
    macvlan: Option<String>,
    /// Macvlan mode: bridge (default), private, vepa, passthru.
    #[arg(long, requires = "macvlan", default_value = "bridge")]
    mode: MacvlanMode,
    /// Address with prefix (repeat for IPv4 and IPv6).
    #[arg(long = "ip", required = true)]
    ips: Vec<IpCidr>,
    /// Default gateway (at most one per family; repeatable).
    #[arg(long = "gw")]
    gateways: Vec<IpAddr>,
    /// Extra route: `--route CIDR via IP` (or one quoted "CIDR via IP").
    #[arg(long = "route", num_args = 1..=3, value_names = ["CIDR", "via", "IP"])]
    routes: Vec<String>,
    #[arg(long)]
    mtu: Option<u32>,
    /// MAC (default: derived from the first address).
    #[arg(long)]
    mac: Option<String>,
    /// Per-netns sysctl `net.x.y=value` (repeatable).
    #[arg(long = "sysctl")]
    sysctls: Vec<String>,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Check the LAN for the addresses first (ARP probe, IPv6 DAD).
    #[arg(long)]
    probe: bool,
    /// The netns holding the bridge/master (default: this process's).
    #[arg(long)]
    host_netns: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DetachArgs {
    /// The container's netns; may be gone already.
    #[arg(long)]
    netns: PathBuf,
    #[arg(long)]
    id: String,
    #[arg(long)]
    host_netns: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[arg(long)]
    netns: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(_g: &Global, cmd: NetCommand) -> anyhow::Result<i32> {
    match cmd {
        NetCommand::Attach(a) => attach(*a),
        NetCommand::Detach(d) => detach(d),
        NetCommand::Show(s) => show(s),
    }
}

fn parse_route(words: &[String]) -> anyhow::Result<RouteSpec> {
    let joined = words.join(" ");
    let parts: Vec<&str> = joined.split_whitespace().collect();
    match parts.as_slice() {
        [dest, "via", via] => Ok(RouteSpec {
            dest: dest
                .parse()
                .map_err(|e| anyhow::anyhow!("--route {joined:?}: {e}"))?,
            via: via
                .parse()
                .with_context(|| format!("--route {joined:?}: gateway {via:?}"))?,
        }),
        _ => bail!("--route {joined:?}: expected CIDR via IP"),
    }
}

fn host_netns(p: &Option<PathBuf>) -> anyhow::Result<Option<Netns>> {
    Ok(match p {
        Some(p) => Some(Netns::open(p)?),
        None => None,
    })
}

fn attach(a: AttachArgs) -> anyhow::Result<i32> {
    let mode = match (a.bridge, a.macvlan) {
        (Some(bridge), None) => Mode::Bridge { bridge },
        (None, Some(master)) => Mode::Macvlan {
            master,
            mode: a.mode,
        },
        _ => bail!("give exactly one of --bridge and --macvlan"),
    };
    let mut spec = AttachSpec::new(&a.id, mode, a.ips);
    spec.ifname = a.ifname;
    spec.gateways = a.gateways;
    // clap's derive cannot keep per-occurrence groups (Vec<Vec<_>> needs its
    // unstable-v5 feature): regroup "CIDR via IP" triples from the flat list.
    spec.routes = group_routes(&a.routes)
        .iter()
        .map(|r| parse_route(r))
        .collect::<anyhow::Result<_>>()?;
    spec.mtu = a.mtu;
    spec.mac = a
        .mac
        .as_deref()
        .map(parse_mac)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--mac: {e}"))?;
    spec.probe_duplicates = a.probe;
    for kv in &a.sysctls {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--sysctl {kv:?}: expected key=value"))?;
        spec.sysctls
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    let target = Netns::open(&a.netns)?;
    let host = host_netns(&a.host_netns)?;
    let att = rpaas_netsetup::attach(&target, host.as_ref(), &spec)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&att)?);
    } else {
        let addrs: Vec<String> = att.addresses.iter().map(ToString::to_string).collect();
        println!(
            "{} in {}: {} mac {} mtu {}{}",
            att.id,
            att.netns,
            att.ifname,
            att.mac,
            att.mtu,
            att.host_ifname
                .as_deref()
                .map(|h| format!(" host end {h}"))
                .unwrap_or_default()
        );
        println!("  {}", addrs.join(" "));
    }
    Ok(0)
}

fn detach(d: DetachArgs) -> anyhow::Result<i32> {
    // A netns that is gone took the container's interfaces with it; only the
    // host side is left to clean.
    let target = match Netns::open(&d.netns) {
        Ok(t) => Some(t),
        Err(rpaas_netsetup::Error::OpenNetns { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Err(e) => return Err(e.into()),
    };
    let host = host_netns(&d.host_netns)?;
    let rep = rpaas_netsetup::detach(target.as_ref(), host.as_ref(), &d.id)?;
    for r in &rep.removed {
        println!("removed {r}");
    }
    Ok(0)
}

fn show(s: ShowArgs) -> anyhow::Result<i32> {
    let ns = Netns::open(&s.netns)?;
    let st = rpaas_netsetup::show(&ns, &[])?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(0);
    }
    println!("netns {}", st.netns);
    for l in &st.links {
        let state = if l.up { "UP" } else { "DOWN" };
        let kind = if l.kind.is_empty() { "-" } else { &l.kind };
        println!(
            "{:>3}: {:<15} {:<6} {:<8} mtu {:<5} {}  {}",
            l.index, l.name, state, kind, l.mtu, l.mac, l.alias
        );
        for a in st.addresses.iter().filter(|a| a.index == l.index) {
            let flag = if a.dad_failed {
                " dadfailed"
            } else if a.tentative {
                " tentative"
            } else {
                ""
            };
            println!("       {}{flag}", a.cidr);
        }
    }
    for r in &st.routes {
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = r
            .oif
            .and_then(|i| st.links.iter().find(|l| l.index == i))
            .map(|l| l.name.as_str())
            .unwrap_or("-");
        println!("route {}{via} dev {dev}", r.dest);
    }
    for (k, v) in &st.sysctls {
        println!("{k} = {v}");
    }
    Ok(0)
}

fn group_routes(words: &[String]) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i].contains(' ') || words.get(i + 1).map(String::as_str) != Some("via") {
            groups.push(vec![words[i].clone()]);
            i += 1;
        } else {
            groups.push(words[i..(i + 3).min(words.len())].to_vec());
            i += 3;
        }
    }
    groups
}
