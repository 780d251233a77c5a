//! Addresses: add (with or without DAD), list, and wait for IPv6 DAD.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::Handle;
use serde::Serialize;

use crate::error::{netlink, Error, Result};
use crate::spec::IpCidr;

/// One address of a link, with the DAD state the kernel reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub index: u32,
    pub cidr: IpCidr,
    pub tentative: bool,
    pub dad_failed: bool,
}

fn from_message(msg: &AddressMessage) -> Option<Address> {
    let mut addr = None;
    let mut local = None;
    // The 8-bit header flags are superseded by IFA_FLAGS when present.
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for a in &msg.attributes {
        match a {
            AddressAttribute::Address(ip) => addr = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address on point-to-point links.
    let ip: IpAddr = local.or(addr)?;
    Some(Address {
        index: msg.header.index,
        cidr: IpCidr {
            addr: ip,
            prefix: msg.header.prefix_len,
        },
        tentative: flags.contains(AddressFlags::Tentative),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
    })
}

/// Add `cidr` to the link. With `nodad` the address is usable at once (no
/// ~1-2 s tentative period); without it the kernel runs IPv6 DAD.
pub async fn add(
    h: &Handle,
    netns: &str,
    iface: &str,
    index: u32,
    cidr: IpCidr,
    nodad: bool,
) -> Result<()> {
    let mut req = h.address().add(index, cidr.addr, cidr.prefix);
    if nodad && cidr.addr.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .map_err(|e| netlink(netns, iface, "add address", e))
}

/// All addresses in the netns (or of one link).
pub async fn list(h: &Handle, netns: &str, index: Option<u32>) -> Result<Vec<Address>> {
    let mut req = h.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    let mut s = req.execute();
    let mut out = Vec::new();
    while let Some(msg) = s
        .try_next()
        .await
        .map_err(|e| netlink(netns, "*", "list addresses", e))?
    {
        if let Some(a) = from_message(&msg) {
            if index.is_none() || index == Some(a.index) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Wait until the kernel's DAD for `wanted` (IPv6) is over; a failed DAD is
/// [`Error::DuplicateAddress`]. DAD starts when the link comes up and takes
/// one retransmit interval after a random delay, so typically 1-2 s.
pub async fn wait_dad(
    h: &Handle,
    netns: &str,
    iface: &str,
    index: u32,
    wanted: &[IpCidr],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = list(h, netns, Some(index)).await?;
        let mut pending = false;
        for w in wanted.iter().filter(|w| w.addr.is_ipv6()) {
            match have.iter().find(|a| a.cidr.addr == w.addr) {
                Some(a) if a.dad_failed => {
                    return Err(Error::DuplicateAddress {
                        netns: netns.into(),
                        iface: iface.into(),
                        addr: w.to_string(),
                        how: "IPv6 duplicate address detection (DAD) failed: a neighbour answered"
                            .into(),
                    })
                }
                Some(a) if a.tentative => pending = true,
                Some(_) => {}
                None => {
                    return Err(Error::DuplicateAddress {
                        netns: netns.into(),
                        iface: iface.into(),
                        addr: w.to_string(),
                        how: "the kernel dropped the address during DAD".into(),
                    })
                }
            }
        }
        if !pending {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Io {
                netns: netns.into(),
                what: format!("interface {iface}: wait for DAD"),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "IPv6 DAD still tentative after 10 s",
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
