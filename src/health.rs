//! Health checks: an HTTP URL on ip:port, a TCP port, a file.
//!
//! Network checks run from inside the container's network namespace, on a
//! dedicated thread that setns()es and then ends: with macvlan the host
//! cannot reach its own containers, and the namespace change must never leak
//! into a thread the agent reuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use rpaas_runtime::Container;

/// One check.
#[derive(Debug, Clone)]
pub enum Check {
    /// GET `path` from `addr`; healthy on a 2xx or 3xx status.
    Http { addr: SocketAddr, path: String },
    /// A TCP connect to `addr` succeeds.
    Tcp { addr: SocketAddr },
    /// This file exists inside the container.
    File { path: String },
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Http { addr, path } => write!(f, "http://{addr}{path}"),
            Check::Tcp { addr } => write!(f, "tcp {addr}"),
            Check::File { path } => write!(f, "file {path}"),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(2);

/// Ok when healthy; Err(reason) otherwise.
pub fn check(c: &Container, check: &Check) -> Result<(), String> {
    let init = c
        .live_init()
        .ok_or_else(|| "container is not running".to_string())?;
    match check {
        Check::File { path } => {
            // The magic link is followed on purpose (it is the container's root);
            // the path inside is then resolved by pathrs, never escaping it.
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(format!("/proc/{}/root", init.pid))
                .map_err(|e| format!("open the container's root: {e}"))?;
            let root = pathrs::Root::from_fd(std::os::fd::OwnedFd::from(dir));
            root.resolve(path)
                .map(|_| ())
                .map_err(|e| format!("{path}: {e}"))
        }
        Check::Tcp { addr } => in_netns(init.pid, {
            let addr = *addr;
            move || {
                TcpStream::connect_timeout(&addr, TIMEOUT)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }),
        Check::Http { addr, path } => in_netns(init.pid, {
            let (addr, path) = (*addr, path.clone());
            move || http_get(addr, &path)
        }),
    }
}

fn in_netns<F>(pid: i32, f: F) -> Result<(), String>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("open netns: {e}"))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join the container's netns: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "health check thread panicked".to_string())?
}

fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or_default()
            )
        })?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}
