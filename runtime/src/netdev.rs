//! `linux.netDevices` (runtime-spec 1.3): host network interfaces moved into
//! the container's new network namespace, each under the name it is given
//! (its host name when none), before the container's process starts.
//!
//! The runtime parent does the move right after clone, from the host's
//! network namespace, with the new namespace's fd from /proc/<init>/ns/net:
//! one RTM_NEWLINK request carrying IFLA_NET_NS_FD and IFLA_IFNAME, which the
//! kernel applies as one step (move and rename; it fails with EEXIST rather
//! than leave the device half-moved).
//!
//! Why no netlink crate: the runtime binary links no netlink code
//! (README, docs/ARCHITECTURE.md: `net` is exec'd into rpaas-tools), and this
//! is a single fixed request with a single ack; rtnetlink/netlink-packet-route
//! would bring their builders, parsers and (for rtnetlink) an async runtime
//! into every container start for ~40 bytes of message.
//!
//! Undo and delete: nothing is moved back by the runtime. The devices live in
//! the container's namespace until it dies (its last process exits and
//! nothing holds it): the kernel then returns physical devices to the host's
//! initial namespace and destroys virtual ones (dummy, macvlan, veth, ...).
//! The same holds when a create fails after the move. Only a new namespace
//! is accepted: a joined one (`path`) outlives the container, and the devices
//! would stay in it.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

use crate::namespaces;
use crate::{Error, Result};

const FIELD: &str = "linux.netDevices";

// include/uapi/linux/{netlink,rtnetlink,if_link}.h
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
/// IFNAMSIZ less the terminating NUL.
const MAX_NAME: usize = 15;

/// One device to move: its host name and index, and its name inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub host: String,
    pub index: u32,
    pub name: String,
}

/// Validate `linux.netDevices` before anything is made: a new network
/// namespace, valid and distinct names, and host interfaces that exist.
pub fn plan(spec: &Spec, ns: &namespaces::Plan) -> Result<Vec<Move>> {
    let Some(devices) = spec.linux().as_ref().and_then(|l| l.net_devices().as_ref()) else {
        return Ok(Vec::new());
    };
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    if !ns.new.contains(CloneFlags::CLONE_NEWNET) {
        return Err(Error::spec(
            FIELD,
            "needs a new network namespace (a \"network\" entry without a path in linux.namespaces)",
        ));
    }
    // A stable order (the map is a HashMap): errors and moves are repeatable.
    let mut hosts: Vec<&String> = devices.keys().collect();
    hosts.sort();
    let mut inside = HashSet::new();
    let mut moves = Vec::new();
    for host in hosts {
        let field = format!("{FIELD}.{host}");
        check_name(host).map_err(|e| Error::spec(&field, format!("host interface {e}")))?;
        let name = devices[host].name().clone().unwrap_or_else(|| host.clone());
        check_name(&name).map_err(|e| Error::spec(format!("{field}.name"), e))?;
        if name == "lo" {
            return Err(Error::spec(
                format!("{field}.name"),
                "\"lo\" already exists in the new network namespace",
            ));
        }
        if !inside.insert(name.clone()) {
            return Err(Error::spec(
                format!("{field}.name"),
                format!("{name:?} is given to two devices"),
            ));
        }
        let index = host_index(host)
            .ok_or_else(|| Error::spec(&field, format!("no interface {host:?} on the host")))?;
        moves.push(Move {
            host: host.clone(),
            index,
            name,
        });
    }
    Ok(moves)
}

/// The kernel's dev_valid_name: 1–15 bytes, not "." or "..", no '/', ':' or
/// white space.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let shown: String = name.chars().take(32).collect();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("name {shown:?} must be 1 to {MAX_NAME} bytes"));
    }
    if name == "." || name == ".." || name.contains(['/', ':', '\0']) {
        return Err(format!("name {shown:?} is not a valid interface name"));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("name {shown:?} contains white space"));
    }
    Ok(())
}

fn host_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Move the planned devices into the network namespace of `pid` (init, just
/// cloned). Called by the runtime parent in the host's network namespace.
pub fn move_into(moves: &[Move], pid: i32) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let sock = route_socket()?;
    for (seq, m) in moves.iter().enumerate() {
        let msg = newlink_request(m, netns.as_raw_fd() as u32, seq as u32 + 1);
        request(&sock, &msg).map_err(|errno| {
            let why = match errno {
                nix::errno::Errno::ENODEV => " (the interface is gone from the host)",
                nix::errno::Errno::EEXIST => " (the name is taken in the container)",
                nix::errno::Errno::EINVAL => " (this device cannot change namespace)",
                _ => "",
            };
            Error::spec(
                format!("{FIELD}.{}", m.host),
                format!("move into the container as {:?}: {errno}{why}", m.name),
            )
        })?;
    }
    Ok(())
}

fn route_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(Error::sys(
            format!("{FIELD}: netlink socket"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// nlmsghdr + ifinfomsg{index} + IFLA_NET_NS_FD(u32) + IFLA_IFNAME("name\0").
fn newlink_request(m: &Move, netns_fd: u32, seq: u32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    // nlmsghdr: len (patched below), type, flags, seq, port id (0: the kernel).
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&(m.index as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut msg, IFLA_NET_NS_FD, &netns_fd.to_ne_bytes());
    let mut name = m.name.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut msg, IFLA_IFNAME, &name);
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    msg
}

/// An rtattr (len, type, payload), padded to 4 bytes.
fn push_attr(msg: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(payload);
    msg.resize(msg.len() + (4 - len % 4) % 4, 0);
}

/// Send one request and read its ack: Ok, or the kernel's errno.
fn request(sock: &OwnedFd, msg: &[u8]) -> std::result::Result<(), nix::errno::Errno> {
    // SAFETY: send from a live buffer of msg.len() bytes.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(nix::errno::Errno::last());
    }
    let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: recv into a live buffer of buf.len() bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        let mut rest = &buf[..n as usize];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let got_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
            if len < 16 || len > rest.len() {
                return Err(nix::errno::Errno::EBADMSG);
            }
            if kind == NLMSG_ERROR && got_seq == seq && len >= 20 {
                let code = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
                return if code == 0 {
                    Ok(())
                } else {
                    Err(nix::errno::Errno::from_raw(-code))
                };
            }
            rest = &rest[(len + 3) & !3..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_rules() {
        for ok in ["eth0", "a", "net1.100", "x-y_z", "abcdefghijklmno"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "abcdefghijklmnop"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_request_is_well_formed() {
        let m = Move {
            host: "d0".into(),
            index: 7,
            name: "eth1".into(),
        };
        let msg = newlink_request(&m, 9, 1);
        // 16 header + 16 ifinfomsg + 8 fd attr + 12 name attr ("eth1\0" padded)
        assert_eq!(msg.len(), 52);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 52);
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 7);
        assert_eq!(
            u16::from_ne_bytes(msg[34..36].try_into().unwrap()),
            IFLA_NET_NS_FD
        );
        assert_eq!(&msg[44..49], b"eth1\0");
    }
}
