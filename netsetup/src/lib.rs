//! rpaas-netsetup: give a container's network namespace its "public network"
//! interface — a veth whose host end sits on a bridge holding the uplink, or a
//! macvlan child of the NIC — with static addresses, routes, MTU, MAC and the
//! netns's own sysctls (TCP keepalive first of all), and take it down again.
//!
//! # Why rtnetlink (with its own current-thread runtime)
//! We use `rtnetlink` rather than hand-building `netlink-packet-route`
//! messages: its request builders and response streams cover everything we do
//! (veth with a peer in another netns, macvlan, alias, addresses with flags,
//! routes, dumps) and handle multi-part dumps, ACKs and errors, which is the
//! error-prone part of raw netlink. Its price is an async API, which we pay with
//! a `tokio` current-thread runtime built on the dedicated OS thread (see
//! [`netns`]): no worker pool, nothing shared with the caller's runtime. The
//! cost per operation is one thread spawn plus one runtime (tens of µs), small
//! next to the netlink round trips; the bench `net_attach` measures it.
//!
//! # Threads and namespaces
//! Each call runs on a fresh OS thread that enters the host netns (if given),
//! opens a netlink socket there, enters the container netns, opens a second
//! socket there, writes /proc/sys/net from there, and ends. Nothing forks.
//! The public calls block until that thread is done: from async code (the
//! agent's tokio runtime) call them through `spawn_blocking`.
//!
//! # Names and idempotency
//! Host-side names derive from the container id ([`names`]); every interface we
//! make carries the alias `rpaas:<id>`. Detach removes by name and alias, so it
//! is idempotent and works after a crash at any step. Attach of an id first
//! removes the leftovers of an earlier attach of the same id.
//!
//! # Macvlan and the host
//! The host cannot reach its own macvlan children through the master (the
//! kernel does not hairpin between a macvlan and its lower device). Health
//! checks and scrapes for macvlan containers must run inside the container
//! netns; bridge mode has no such limit.

pub mod addr;
mod arp;
mod attach;
mod detach;
pub mod error;
pub mod link;
pub mod names;
pub mod netns;
pub mod pin;
pub mod route;
mod show;
pub mod spec;
pub mod sysctl;

/// The netlink crate our building blocks ([`link`], [`addr`], [`route`]) take handles of.
pub use rtnetlink;

pub use attach::{attach, Attachment};
pub use detach::{detach, DetachReport};
pub use error::{Error, Result};
pub use netns::Netns;
pub use show::{show, NetnsState, SHOWN_SYSCTLS};
pub use spec::{AttachSpec, IpCidr, MacvlanMode, Mode, RouteSpec};
