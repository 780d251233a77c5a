//! IPv4 duplicate detection and announcement (RFC 5227): an ARP probe with a
//! zero sender address asks "who has IP?" without claiming it; any answer whose
//! sender is that IP with another MAC means the address is taken. The kernel
//! has no IPv4 equivalent of IPv6 DAD, hence this small raw-socket helper.
//! Called on the dedicated thread after setns, so the packet socket lives in
//! the container's netns.
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];

fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = sockaddr(ifindex, None);
    // SAFETY: sa is a valid sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn sockaddr(ifindex: u32, dest: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ARP.to_be();
    sa.sll_ifindex = ifindex as i32;
    if let Some(d) = dest {
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&d);
    }
    sa
}

/// An Ethernet/IPv4 ARP request.
fn request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&sha);
    p[14..18].copy_from_slice(&spa.octets());
    p[24..28].copy_from_slice(&tpa.octets());
    p
}

fn send(fd: &OwnedFd, ifindex: u32, pkt: &[u8]) -> io::Result<()> {
    let sa = sockaddr(ifindex, Some(BROADCAST));
    // SAFETY: pkt and sa are valid for the lengths passed.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait up to `timeout` for an ARP packet whose sender is `ip` with a MAC other
/// than `ours`; returns that MAC.
fn listen(
    fd: &OwnedFd,
    ip: Ipv4Addr,
    ours: [u8; 6],
    timeout: Duration,
) -> io::Result<Option<[u8; 6]>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        let mut buf = [0u8; 64];
        // SAFETY: buf is valid for its length.
        let len = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if len < 28 {
            continue;
        }
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&buf[8..14]);
        let spa = Ipv4Addr::new(buf[14], buf[15], buf[16], buf[17]);
        if spa == ip && sha != ours {
            return Ok(Some(sha));
        }
    }
}

/// RFC 5227 probe: three probes ~150 ms apart, then a short wait. Returns the
/// MAC of a host that already uses `ip`, if any. The link must be up.
pub fn probe(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    let fd = packet_socket(ifindex)?;
    let pkt = request(mac, Ipv4Addr::UNSPECIFIED, ip);
    for _ in 0..3 {
        send(&fd, ifindex, &pkt)?;
        if let Some(other) = listen(&fd, ip, mac, Duration::from_millis(150))? {
            return Ok(Some(other));
        }
    }
    listen(&fd, ip, mac, Duration::from_millis(300))
}

/// Gratuitous ARP (sender = target = `ip`) so neighbours update their caches,
/// e.g. when an IP moves to a new container with another MAC.
pub fn announce(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let fd = packet_socket(ifindex)?;
    send(&fd, ifindex, &request(mac, ip, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let p = request(
            [2, 0x72, 1, 2, 3, 4],
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 231, 0, 5),
        );
        assert_eq!(&p[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &[2, 0x72, 1, 2, 3, 4]);
        assert_eq!(&p[14..18], &[0, 0, 0, 0]);
        assert_eq!(&p[24..28], &[10, 231, 0, 5]);
    }
}
