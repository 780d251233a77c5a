//! The crate's one error type. Every variant names the network namespace and,
//! where there is one, the interface, plus the kernel's reason.
use std::io;

/// Errors of attach, detach and show.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is wrong before anything is touched.
    #[error("invalid network spec: {field}: {reason}")]
    InvalidSpec { field: String, reason: String },

    /// The netns path could not be opened.
    #[error("netns {netns}: open: {source}")]
    OpenNetns { netns: String, source: io::Error },

    /// setns(2) into the netns failed on the netlink thread.
    #[error("netns {netns}: setns: {source}")]
    Setns { netns: String, source: nix::Error },

    /// A netlink request failed; `source` carries the kernel's errno.
    #[error("netns {netns}: {op} {iface}: {source}")]
    Netlink {
        netns: String,
        iface: String,
        op: &'static str,
        source: io::Error,
    },

    /// The bridge or macvlan master does not exist in the host netns.
    #[error("netns {netns}: master interface {master} not found (needed by {iface})")]
    MasterNotFound {
        netns: String,
        master: String,
        iface: String,
    },

    /// Bridge mode was asked on something that is not a Linux bridge.
    #[error("netns {netns}: {master} is not a bridge (kind {kind}); cannot attach {iface}")]
    NotABridge {
        netns: String,
        master: String,
        kind: String,
        iface: String,
    },

    /// The requested MTU exceeds the master's.
    #[error("netns {netns}: interface {iface}: MTU {mtu} is larger than master {master}'s MTU {master_mtu}")]
    MtuTooLarge {
        netns: String,
        iface: String,
        mtu: u32,
        master: String,
        master_mtu: u32,
    },

    /// An interface with the name we need exists and was not made for this id.
    #[error("netns {netns}: interface {iface} already exists and does not belong to container {id} (alias {owner:?}, kind {kind})")]
    NameCollision {
        netns: String,
        iface: String,
        id: String,
        owner: String,
        kind: String,
    },

    /// Duplicate address detection (IPv6 DAD or the IPv4 ARP probe) found another owner.
    #[error(
        "netns {netns}: interface {iface}: address {addr} is already in use on the LAN ({how})"
    )]
    DuplicateAddress {
        netns: String,
        iface: String,
        addr: String,
        how: String,
    },

    /// Reading or writing a sysctl inside the netns failed.
    #[error("netns {netns}: sysctl {key}: {source}")]
    Sysctl {
        netns: String,
        key: String,
        source: io::Error,
    },

    /// Another I/O step (ARP socket, runtime) failed.
    #[error("netns {netns}: {what}: {source}")]
    Io {
        netns: String,
        what: String,
        source: io::Error,
    },

    /// The dedicated netlink thread could not start or panicked.
    #[error("netlink thread: {0}")]
    Thread(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The kernel's reason inside an rtnetlink error, as an io::Error (errno).
pub(crate) fn kernel_reason(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Build a [`Error::Netlink`] from an rtnetlink error.
pub(crate) fn netlink(netns: &str, iface: &str, op: &'static str, err: rtnetlink::Error) -> Error {
    Error::Netlink {
        netns: netns.to_string(),
        iface: iface.to_string(),
        op,
        source: kernel_reason(err),
    }
}

/// True when the rtnetlink error is the given errno.
pub(crate) fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno || m.raw_code() == errno)
}
