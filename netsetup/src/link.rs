//! Links: look up, create (veth into a bridge, macvlan on a master, both with
//! the container end created directly in the target netns through
//! IFLA_NET_NS_FD), alias, rename, up, delete.
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use rtnetlink::{Handle, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde::Serialize;

use crate::error::{is_errno, netlink, Result};
use crate::spec::{format_mac, MacvlanMode};

/// What we need to know about one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub alias: String,
    pub mtu: u32,
    pub mac: String,
    pub up: bool,
    pub master: Option<u32>,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let mut l = Link {
            index: msg.header.index,
            name: String::new(),
            kind: String::new(),
            alias: String::new(),
            mtu: 0,
            mac: String::new(),
            up: msg.header.flags.contains(LinkFlags::Up),
            master: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::IfAlias(a) => l.alias = a.clone(),
                LinkAttribute::Mtu(m) => l.mtu = *m,
                LinkAttribute::Address(a) => l.mac = format_mac(a),
                LinkAttribute::Controller(c) => l.master = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = k.to_string();
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// The link called `name`, or None.
pub async fn by_name(h: &Handle, netns: &str, name: &str) -> Result<Option<Link>> {
    let mut s = h.link().get().match_name(name).execute();
    match s.try_next().await {
        Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(netlink(netns, name, "get link", e)),
    }
}

/// Every link of the netns.
pub async fn list(h: &Handle, netns: &str) -> Result<Vec<Link>> {
    let mut out = Vec::new();
    let mut s = h.link().get().execute();
    while let Some(msg) = s
        .try_next()
        .await
        .map_err(|e| netlink(netns, "*", "list links", e))?
    {
        out.push(Link::from_message(&msg));
    }
    Ok(out)
}

/// Settings common to the container end of both modes.
pub struct ContainerEnd<'a> {
    pub temp_name: &'a str,
    pub target_fd: i32,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

fn container_end_attrs<T>(
    mut b: LinkMessageBuilder<T>,
    end: &ContainerEnd<'_>,
) -> LinkMessageBuilder<T> {
    b = b.setns_by_fd(end.target_fd);
    if let Some(mtu) = end.mtu {
        b = b.mtu(mtu);
    }
    if let Some(mac) = end.mac {
        b = b.address(mac.to_vec());
    }
    b
}

/// A veth pair in one request: `host_name` in the host netns, enslaved to the
/// bridge and up; its peer created directly in the target netns under its
/// temporary name (so no name is ever taken in the host netns for it).
pub async fn create_veth(
    h: &Handle,
    netns: &str,
    host_name: &str,
    bridge_index: u32,
    end: &ContainerEnd<'_>,
) -> Result<()> {
    let peer = container_end_attrs(
        LinkMessageBuilder::<LinkUnspec>::new().name(end.temp_name.to_string()),
        end,
    )
    .build();
    let mut b = LinkVeth::new(host_name, end.temp_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge_index)
        .up();
    if let Some(mtu) = end.mtu {
        b = b.mtu(mtu);
    }
    h.link()
        .add(b.build())
        .execute()
        .await
        .map_err(|e| netlink(netns, host_name, "create veth", e))
}

fn kernel_mode(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

/// A macvlan child of `master_index`, created directly in the target netns.
pub async fn create_macvlan(
    h: &Handle,
    netns: &str,
    master_index: u32,
    mode: MacvlanMode,
    end: &ContainerEnd<'_>,
) -> Result<()> {
    let b = LinkMessageBuilder::<LinkMacVlan>::new_with_info_kind(InfoKind::MacVlan)
        .name(end.temp_name.to_string())
        .link(master_index)
        .set_info_data(InfoData::MacVlan(vec![InfoMacVlan::Mode(kernel_mode(
            mode,
        ))]));
    let b = container_end_attrs(b, end);
    h.link()
        .add(b.build())
        .execute()
        .await
        .map_err(|e| netlink(netns, end.temp_name, "create macvlan", e))
}

async fn set(
    h: &Handle,
    netns: &str,
    name: &str,
    op: &'static str,
    msg: LinkMessage,
) -> Result<()> {
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| netlink(netns, name, op, e))
}

/// Tag the link with the container's alias (IFLA_IFALIAS is only honoured by
/// RTM_SETLINK, not at creation).
pub async fn set_alias(h: &Handle, netns: &str, link: &Link, alias: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(link.index).alias(alias).build();
    set(h, netns, &link.name, "set alias", msg).await
}

/// Rename (the link must be down).
pub async fn rename(h: &Handle, netns: &str, link: &Link, name: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(link.index)
        .name(name.to_string())
        .build();
    set(h, netns, &link.name, "rename", msg).await
}

/// Bring the link up.
pub async fn set_up(h: &Handle, netns: &str, index: u32, name: &str) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    set(h, netns, name, "set up", msg).await
}

/// Delete; a link already gone is not an error (detach is idempotent).
pub async fn delete(h: &Handle, netns: &str, link: &Link) -> Result<()> {
    match h.link().del(link.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(netlink(netns, &link.name, "delete", e)),
    }
}
