//! attach: the container's interface, addresses, routes and sysctls, in one
//! readable list of steps. Anything made before a failure is removed again
//! (by the same code as detach), so a failed attach leaves nothing behind.
use std::net::IpAddr;

use rtnetlink::Handle;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::link::{self, ContainerEnd, Link};
use crate::netns::{connect, label_of, run_dedicated, Netns};
use crate::spec::{format_mac, AttachSpec, IpCidr, Mode};
use crate::{addr, arp, detach, names, route, sysctl};

/// What attach made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub id: String,
    pub netns: String,
    /// The interface inside the container netns.
    pub ifname: String,
    pub index: u32,
    /// The host end of the veth (bridge mode only).
    pub host_ifname: Option<String>,
    pub mac: String,
    pub mtu: u32,
    pub addresses: Vec<IpCidr>,
}

/// Give the netns `target` its public interface as `spec` says. `host` is the
/// netns holding the bridge or master (None: the caller's own netns).
/// Re-attaching an id first removes whatever an earlier attach of that id left.
pub fn attach(target: &Netns, host: Option<&Netns>, spec: &AttachSpec) -> Result<Attachment> {
    spec.validate()?;
    run_dedicated(|rt| {
        rt.block_on(async {
            if let Some(h) = host {
                h.enter()?;
            }
            let hh = connect(label_of(host))?;
            target.enter()?;
            let th = connect(target.label())?;
            let ctx = Ctx {
                hh: &hh,
                th: &th,
                host: label_of(host),
                target,
                spec,
            };
            match ctx.run().await {
                Ok(a) => Ok(a),
                Err(e) => {
                    if let Err(undo) =
                        detach::remove_for_id(&hh, Some(&th), ctx.host, target.label(), &spec.id)
                            .await
                    {
                        tracing::warn!(id = %spec.id, "undo of a failed attach failed: {undo}");
                    }
                    Err(e)
                }
            }
        })
    })
}

struct Ctx<'a> {
    hh: &'a Handle,
    th: &'a Handle,
    host: &'a str,
    target: &'a Netns,
    spec: &'a AttachSpec,
}

impl Ctx<'_> {
    async fn run(&self) -> Result<Attachment> {
        let spec = self.spec;
        let tl = self.target.label();
        let master = self.check_master().await?;
        let mtu = spec.mtu.unwrap_or(master.mtu);
        let host_name = names::host_veth(&spec.id);
        let temp = names::temp_name(&spec.id);
        let tag = names::alias(&spec.id);
        if let Mode::Bridge { .. } = spec.mode {
            self.check_not_foreign(self.hh, self.host, &host_name)
                .await?;
        }
        // Leftovers of an earlier attach of this id (e.g. killed halfway).
        detach::remove_for_id(self.hh, Some(self.th), self.host, tl, &spec.id).await?;
        if let Some(l) = link::by_name(self.th, tl, &spec.ifname).await? {
            return Err(collision(tl, &l, &spec.id));
        }

        let mac = spec.effective_mac();
        let end = ContainerEnd {
            temp_name: &temp,
            target_fd: self.target.raw_fd(),
            mtu: Some(mtu),
            mac,
        };
        let host_ifname = match &spec.mode {
            Mode::Bridge { .. } => {
                link::create_veth(self.hh, self.host, &host_name, master.index, &end).await?;
                fail::fail_point!("netsetup::after-create");
                let h = self.must_get(self.hh, self.host, &host_name).await?;
                link::set_alias(self.hh, self.host, &h, &tag).await?;
                Some(host_name)
            }
            Mode::Macvlan { mode, .. } => {
                link::create_macvlan(self.hh, self.host, master.index, *mode, &end).await?;
                fail::fail_point!("netsetup::after-create");
                None
            }
        };
        let c = self.must_get(self.th, tl, &temp).await?;
        link::set_alias(self.th, tl, &c, &tag).await?;
        link::rename(self.th, tl, &c, &spec.ifname).await?;
        fail::fail_point!("netsetup::after-rename");
        let c = self.must_get(self.th, tl, &spec.ifname).await?;

        self.write_sysctls(&c).await?;
        self.configure_addresses(&c).await?;
        for gw in &spec.gateways {
            route::add(self.th, tl, &c.name, c.index, None, *gw).await?;
        }
        for r in &spec.routes {
            route::add(self.th, tl, &c.name, c.index, Some(r.dest), r.via).await?;
        }
        fail::fail_point!("netsetup::before-done");
        Ok(Attachment {
            id: spec.id.clone(),
            netns: tl.to_string(),
            ifname: c.name.clone(),
            index: c.index,
            host_ifname,
            mac: c.mac.clone(),
            mtu: c.mtu,
            addresses: spec.addresses.clone(),
        })
    }

    /// The bridge or master must exist (bridge mode: be a bridge), and the
    /// requested MTU must fit under its MTU.
    async fn check_master(&self) -> Result<Link> {
        let (name, want_bridge) = match &self.spec.mode {
            Mode::Bridge { bridge } => (bridge, true),
            Mode::Macvlan { master, .. } => (master, false),
        };
        let m = link::by_name(self.hh, self.host, name)
            .await?
            .ok_or_else(|| Error::MasterNotFound {
                netns: self.host.into(),
                master: name.clone(),
                iface: self.spec.ifname.clone(),
            })?;
        if want_bridge && m.kind != "bridge" {
            return Err(Error::NotABridge {
                netns: self.host.into(),
                master: name.clone(),
                kind: if m.kind.is_empty() {
                    "device".into()
                } else {
                    m.kind.clone()
                },
                iface: self.spec.ifname.clone(),
            });
        }
        if let Some(mtu) = self.spec.mtu {
            if mtu > m.mtu {
                return Err(Error::MtuTooLarge {
                    netns: self.target.label().into(),
                    iface: self.spec.ifname.clone(),
                    mtu,
                    master: format!("{name} (netns {})", self.host),
                    master_mtu: m.mtu,
                });
            }
        }
        Ok(m)
    }

    async fn check_not_foreign(&self, h: &Handle, ns: &str, name: &str) -> Result<()> {
        match link::by_name(h, ns, name).await? {
            Some(l) if !detach::is_ours(&l, &self.spec.id) => Err(collision(ns, &l, &self.spec.id)),
            _ => Ok(()),
        }
    }

    async fn must_get(&self, h: &Handle, ns: &str, name: &str) -> Result<Link> {
        link::by_name(h, ns, name)
            .await?
            .ok_or_else(|| Error::Netlink {
                netns: ns.into(),
                iface: name.into(),
                op: "find new link",
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            })
    }

    /// Runs on the thread that is in the target netns, so /proc/sys/net is its.
    async fn write_sysctls(&self, c: &Link) -> Result<()> {
        let tl = self.target.label();
        let has_v6 = self.spec.addresses.iter().any(|a| a.addr.is_ipv6());
        // Announce ourselves when the link comes up: gratuitous ARP and
        // unsolicited neighbour advertisements.
        sysctl::write_path(
            tl,
            "net.ipv4.conf.<if>.arp_notify",
            &sysctl::iface_path("ipv4", &c.name, "arp_notify"),
            "1",
        )?;
        if has_v6 {
            sysctl::write_path(
                tl,
                "net.ipv6.conf.<if>.ndisc_notify",
                &sysctl::iface_path("ipv6", &c.name, "ndisc_notify"),
                "1",
            )?;
        }
        for (k, v) in self.spec.effective_sysctls() {
            sysctl::write(tl, &k, &v)?;
        }
        Ok(())
    }

    async fn configure_addresses(&self, c: &Link) -> Result<()> {
        let tl = self.target.label();
        if let Some(lo) = link::by_name(self.th, tl, "lo").await? {
            link::set_up(self.th, tl, lo.index, "lo").await?;
        }
        let probe = self.spec.probe_duplicates;
        if !probe {
            // Addresses before up: arp_notify/ndisc_notify announce them on up.
            for a in &self.spec.addresses {
                addr::add(self.th, tl, &c.name, c.index, *a, true).await?;
            }
            return link::set_up(self.th, tl, c.index, &c.name).await;
        }
        link::set_up(self.th, tl, c.index, &c.name).await?;
        let mac = self.spec.effective_mac().unwrap_or([0; 6]);
        let mac = crate::spec::parse_mac(&c.mac).unwrap_or(mac);
        for a in &self.spec.addresses {
            if let IpAddr::V4(ip) = a.addr {
                let found = arp::probe(c.index, mac, ip).map_err(|source| Error::Io {
                    netns: tl.into(),
                    what: format!("interface {}: ARP probe for {ip}", c.name),
                    source,
                })?;
                if let Some(other) = found {
                    return Err(Error::DuplicateAddress {
                        netns: tl.into(),
                        iface: c.name.clone(),
                        addr: a.to_string(),
                        how: format!("ARP probe answered by {}", format_mac(&other)),
                    });
                }
            }
        }
        for a in &self.spec.addresses {
            addr::add(self.th, tl, &c.name, c.index, *a, false).await?;
        }
        addr::wait_dad(self.th, tl, &c.name, c.index, &self.spec.addresses).await?;
        for a in &self.spec.addresses {
            if let IpAddr::V4(ip) = a.addr {
                arp::announce(c.index, mac, ip).map_err(|source| Error::Io {
                    netns: tl.into(),
                    what: format!("interface {}: gratuitous ARP for {ip}", c.name),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

fn collision(ns: &str, l: &Link, id: &str) -> Error {
    Error::NameCollision {
        netns: ns.into(),
        iface: l.name.clone(),
        id: id.into(),
        owner: l.alias.clone(),
        kind: if l.kind.is_empty() {
            "device".into()
        } else {
            l.kind.clone()
        },
    }
}
