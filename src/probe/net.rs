//! Network probes (tcp, http) as non-blocking sockets made inside the
//! instance's network namespace.
//!
//! A socket belongs to the netns it was created in, whatever thread later
//! uses it. So one helper thread (`rpaas-probe-netns`) does nothing but
//! `setns` into the asked namespace and create a socket there; the scheduler
//! thread stays in the host's netns and drives every socket through its epoll.
//! The helper never runs anything else, so its namespace never leaks.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType};

type Batch = Vec<(PathBuf, AddressFamily)>;
type Reply = mpsc::Sender<Vec<Result<OwnedFd, String>>>;

/// The handle on the socket-making thread.
pub(crate) struct SocketMaker {
    tx: mpsc::Sender<(Batch, Reply)>,
}

impl SocketMaker {
    pub(crate) fn start() -> std::io::Result<SocketMaker> {
        let (tx, rx) = mpsc::channel::<(Batch, Reply)>();
        std::thread::Builder::new()
            .name("rpaas-probe-netns".into())
            .spawn(move || {
                // The netns this thread is in now: (dev, ino) of the file it came from.
                let mut current: Option<(u64, u64)> = None;
                while let Ok((batch, reply)) = rx.recv() {
                    // Grouped by netns (one setns per namespace), answered in order.
                    let mut order: Vec<usize> = (0..batch.len()).collect();
                    order.sort_by(|a, b| batch[*a].0.cmp(&batch[*b].0));
                    let mut out: Vec<Option<Result<OwnedFd, String>>> =
                        (0..batch.len()).map(|_| None).collect();
                    for i in order {
                        let (path, family) = &batch[i];
                        out[i] = Some(make(path, *family, &mut current));
                    }
                    let _ = reply.send(out.into_iter().flatten().collect());
                }
            })?;
        Ok(SocketMaker { tx })
    }

    /// Non-blocking, close-on-exec stream sockets, each in the netns of its
    /// file (a pinned netns or `/proc/<pid>/ns/net`): one round trip to the
    /// helper thread for the whole batch.
    pub(crate) fn sockets(&self, batch: Batch) -> Vec<Result<OwnedFd, String>> {
        let n = batch.len();
        let gone = || {
            (0..n)
                .map(|_| Err("the netns socket thread is gone".to_string()))
                .collect()
        };
        let (rtx, rrx) = mpsc::channel();
        if self.tx.send((batch, rtx)).is_err() {
            return gone();
        }
        rrx.recv().unwrap_or_else(|_| gone())
    }
}

fn make(
    path: &std::path::Path,
    family: AddressFamily,
    current: &mut Option<(u64, u64)>,
) -> Result<OwnedFd, String> {
    use std::os::unix::fs::MetadataExt;
    let ns =
        std::fs::File::open(path).map_err(|e| format!("open netns {}: {e}", path.display()))?;
    let md = ns
        .metadata()
        .map_err(|e| format!("netns {}: {e}", path.display()))?;
    let id = (md.dev(), md.ino());
    if *current != Some(id) {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join netns {}: {e}", path.display()))?;
        *current = Some(id);
    }
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // An RST on close: no TIME_WAIT left in the instance's netns per probe.
    let _ = socket::setsockopt(
        &fd,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
    Ok(fd)
}

/// Start a non-blocking connect. Ok(true): connected already; Ok(false): in
/// progress (wait for writable).
pub(crate) fn connect(fd: &OwnedFd, addr: SocketAddr) -> Result<bool, String> {
    // SAFETY: zeroed sockaddr structs are valid; each is filled for its family
    // and passed with its own size.
    let r = unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                libc::connect(
                    fd.as_raw_fd(),
                    std::ptr::addr_of!(sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                sa.sin6_scope_id = a.scope_id();
                libc::connect(
                    fd.as_raw_fd(),
                    std::ptr::addr_of!(sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(false)
    } else {
        Err(format!("connect {addr}: {e}"))
    }
}

/// After writable: whether the connect succeeded.
pub(crate) fn connected(fd: &OwnedFd, addr: SocketAddr) -> Result<(), String> {
    match socket::getsockopt(fd, sockopt::SocketError) {
        Ok(0) => Ok(()),
        Ok(e) => Err(format!(
            "connect {addr}: {}",
            nix::errno::Errno::from_raw(e).desc()
        )),
        Err(e) => Err(format!("connect {addr}: {e}")),
    }
}

/// The request of an http probe.
pub(crate) fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[crate::probe::spec::Header],
) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
    if !has("host") {
        r.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("user-agent") {
        r.push_str("User-Agent: rpaas-probe/1\r\n");
    }
    if !has("accept") {
        r.push_str("Accept: */*\r\n");
    }
    for h in headers {
        r.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

/// Write the whole request (small: it fits the socket buffer at once).
pub(crate) fn send(fd: &OwnedFd, req: &[u8]) -> Result<(), String> {
    let mut f = std::fs::File::from(fd.try_clone().map_err(|e| format!("dup: {e}"))?);
    match f.write(req) {
        Ok(n) if n == req.len() => Ok(()),
        Ok(n) => Err(format!("sent {n} of {} request bytes", req.len())),
        Err(e) => Err(format!("send: {e}")),
    }
}

/// What reading the answer gave so far.
pub(crate) enum Answer {
    /// Not a whole status line yet.
    More,
    /// Healthy (2xx/3xx) or the reason not.
    Done(Result<(), String>),
}

/// Read what is there into `buf`; decide once the status line is in.
pub(crate) fn read_answer(fd: &OwnedFd, buf: &mut Vec<u8>) -> Answer {
    let mut chunk = [0u8; 512];
    let mut eof = false;
    loop {
        // SAFETY: reading into a stack buffer of its length from a fd we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if n > 0 {
            buf.extend_from_slice(&chunk[..n as usize]);
            if buf.len() > 4096 || buf.windows(2).any(|w| w == b"\r\n") {
                break;
            }
            continue;
        }
        if n == 0 {
            eof = true;
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            break;
        }
        if e.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Answer::Done(Err(format!("read: {e}")));
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n");
    let line = match line_end {
        Some(i) => &buf[..i],
        None if eof || buf.len() > 4096 => &buf[..],
        None => return Answer::More,
    };
    Answer::Done(status(line))
}

fn status(line: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_whitespace();
    let code = match (parts.next(), parts.next()) {
        (Some(v), Some(c)) if v.starts_with("HTTP/") => c.parse::<u16>().ok(),
        _ => None,
    };
    match code {
        Some(c) if (200..400).contains(&c) => Ok(()),
        Some(c) => Err(format!("HTTP status {c}")),
        None if text.is_empty() => Err("connection closed without an answer".into()),
        None => Err(format!(
            "not an HTTP answer: {:?}",
            text.chars().take(60).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert!(status(b"HTTP/1.0 200 OK").is_ok());
        assert!(status(b"HTTP/1.1 302 Found").is_ok());
        assert_eq!(status(b"HTTP/1.1 500 Oops").unwrap_err(), "HTTP status 500");
        assert!(status(b"SSH-2.0")
            .unwrap_err()
            .starts_with("not an HTTP answer"));
        assert!(status(b"").is_err());
    }

    #[test]
    fn a_request_with_headers() {
        let r = request(
            "10.0.0.2:80".parse().unwrap(),
            "/healthz",
            &[crate::probe::spec::Header {
                name: "X-Probe".into(),
                value: "1".into(),
            }],
        );
        let r = String::from_utf8(r).unwrap();
        assert!(
            r.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.0.2:80\r\n"),
            "{r}"
        );
        assert!(
            r.contains("X-Probe: 1\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }
}
