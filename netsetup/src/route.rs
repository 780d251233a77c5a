//! Routes: default gateways and extra routes on the container's interface, and
//! a listing for `show` and for the tests' before/after comparisons.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, RouteMessageBuilder};
use serde::Serialize;

use crate::error::{netlink, Result};
use crate::spec::IpCidr;

/// One route of the main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dest: IpCidr,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn from_message(msg: &RouteMessage) -> Route {
    let v6 = msg.header.address_family == rtnetlink::packet_route::AddressFamily::Inet6;
    let any = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let mut r = Route {
        dest: IpCidr {
            addr: any,
            prefix: msg.header.destination_prefix_length,
        },
        gateway: None,
        oif: None,
        table: u32::from(msg.header.table),
    };
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = ip_of(d) {
                    r.dest.addr = ip;
                }
            }
            RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    r
}

/// Add `dest` via `gw` out of interface `index` (dest None = default route).
pub async fn add(
    h: &Handle,
    netns: &str,
    iface: &str,
    index: u32,
    dest: Option<IpCidr>,
    gw: IpAddr,
) -> Result<()> {
    let msg = match gw {
        IpAddr::V4(g) => {
            let (d, p) = match dest.map(|c| (c.network(), c.prefix)) {
                Some((IpAddr::V4(d), p)) => (d, p),
                _ => (Ipv4Addr::UNSPECIFIED, 0),
            };
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(d, p)
                .gateway(g)
                .output_interface(index)
                .build()
        }
        IpAddr::V6(g) => {
            let (d, p) = match dest.map(|c| (c.network(), c.prefix)) {
                Some((IpAddr::V6(d), p)) => (d, p),
                _ => (Ipv6Addr::UNSPECIFIED, 0),
            };
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(d, p)
                .gateway(g)
                .output_interface(index)
                .build()
        }
    };
    h.route()
        .add(msg)
        .execute()
        .await
        .map_err(|e| netlink(netns, iface, "add route", e))
}

/// The routes of both families in the main table (254).
pub async fn list(h: &Handle, netns: &str) -> Result<Vec<Route>> {
    let mut out = Vec::new();
    for q in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut s = h.route().get(q).execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| netlink(netns, "*", "list routes", e))?
        {
            let r = from_message(&m);
            if r.table == 254 {
                out.push(r);
            }
        }
    }
    Ok(out)
}
