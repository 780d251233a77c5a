//! Network namespaces and the dedicated netlink thread.
//!
//! setns(2) changes the netns of the calling *thread* only. Doing it on a tokio
//! worker or any pooled thread would leave that thread in the container's netns
//! for whatever runs there next. So every operation runs on a fresh OS thread
//! (scoped: it is joined before we return and then ends; it never goes back to
//! a pool) with its own current-thread runtime for rtnetlink. Netlink sockets
//! bind to the netns current when they are created, which is how one thread
//! holds a socket in the host netns and another in the container's.
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

/// An open network namespace (by path or by fd) with a label for errors.
#[derive(Debug)]
pub struct Netns {
    file: File,
    label: String,
}

impl Netns {
    /// Open a netns file such as `/run/netns/X` or `/proc/PID/ns/net`.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let file = File::open(path).map_err(|source| Error::OpenNetns {
            netns: label.clone(),
            source,
        })?;
        Ok(Netns { file, label })
    }

    /// Wrap an already open netns fd (e.g. held by the runtime).
    pub fn from_fd(fd: OwnedFd, label: impl Into<String>) -> Netns {
        Netns {
            file: File::from(fd),
            label: label.into(),
        }
    }

    /// The path or label used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The fd, for IFLA_NET_NS_FD.
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Move the calling thread into this netns. Call it only on a thread of
    /// [`run_dedicated`], which ends afterwards, never on a pooled thread.
    pub fn enter(&self) -> Result<()> {
        nix::sched::setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
            Error::Setns {
                netns: self.label.clone(),
                source,
            }
        })
    }
}

/// The label used for the caller's own netns.
pub const CURRENT: &str = "(current netns)";

/// Label of an optional netns: its path, or [`CURRENT`].
pub(crate) fn label_of(ns: Option<&Netns>) -> &str {
    ns.map_or(CURRENT, Netns::label)
}

/// Run `job` on a new OS thread that owns a current-thread tokio runtime; the
/// thread ends when `job` returns, whatever netns it entered.
pub fn run_dedicated<T, F>(job: F) -> Result<T>
where
    F: FnOnce(&Runtime) -> Result<T> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("rpaas-netlink".into())
            .spawn_scoped(scope, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|e| Error::Thread(format!("tokio runtime: {e}")))?;
                job(&rt)
            })
            .map_err(|e| Error::Thread(format!("spawn: {e}")))?;
        handle.join().map_err(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Error::Thread(format!("panicked: {msg}"))
        })?
    })
}

/// Open an rtnetlink connection in the calling thread's current netns. Must be
/// called inside the runtime (the connection task is spawned on it).
pub fn connect(netns: &str) -> Result<rtnetlink::Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| Error::Io {
        netns: netns.to_string(),
        what: "open netlink socket".into(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}
