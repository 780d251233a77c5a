//! show: what a netns has (links, addresses, routes, the sysctls we manage).
use std::collections::BTreeMap;

use serde::Serialize;

use crate::addr::{self, Address};
use crate::error::Result;
use crate::link::{self, Link};
use crate::netns::{connect, run_dedicated, Netns};
use crate::route::{self, Route};
use crate::sysctl;

/// The keys `show` reports.
pub const SHOWN_SYSCTLS: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.core.somaxconn",
    "net.ipv4.ip_local_port_range",
];

/// A netns's network state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsState {
    pub netns: String,
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub sysctls: BTreeMap<String, String>,
}

/// Read the state of `ns` (plus any extra sysctl keys asked for).
pub fn show(ns: &Netns, extra_sysctls: &[&str]) -> Result<NetnsState> {
    run_dedicated(|rt| {
        rt.block_on(async {
            ns.enter()?;
            let l = ns.label();
            let h = connect(l)?;
            let mut sysctls = BTreeMap::new();
            for k in SHOWN_SYSCTLS.iter().chain(extra_sysctls) {
                sysctls.insert(k.to_string(), sysctl::read(l, k)?);
            }
            Ok(NetnsState {
                netns: l.to_string(),
                links: link::list(&h, l).await?,
                addresses: addr::list(&h, l, None).await?,
                routes: route::list(&h, l).await?,
                sysctls,
            })
        })
    })
}
