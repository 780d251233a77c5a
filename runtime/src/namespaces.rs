//! Namespaces from the spec: which to create, which to join by path.

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::{Error, Result};

/// The spec's namespaces, split into new ones and ones joined by path.
#[derive(Debug, Clone)]
pub struct Plan {
    /// CLONE_NEW* flags of namespaces to create.
    pub new: CloneFlags,
    /// (flag, path) of namespaces to join, user namespace first.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

pub fn flag_of(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of the namespace under /proc/<pid>/ns/.
pub fn proc_name(flag: CloneFlags) -> &'static str {
    match flag {
        f if f == CloneFlags::CLONE_NEWPID => "pid",
        f if f == CloneFlags::CLONE_NEWNET => "net",
        f if f == CloneFlags::CLONE_NEWNS => "mnt",
        f if f == CloneFlags::CLONE_NEWIPC => "ipc",
        f if f == CloneFlags::CLONE_NEWUTS => "uts",
        f if f == CloneFlags::CLONE_NEWUSER => "user",
        f if f == CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "time",
    }
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        }
    }
}

impl Plan {
    pub fn from_spec(nss: Option<&Vec<LinuxNamespace>>) -> Plan {
        let mut plan = Plan::default();
        for ns in nss.into_iter().flatten() {
            let flag = flag_of(ns.typ());
            match ns.path() {
                Some(p) if flag == CloneFlags::CLONE_NEWUSER => {
                    plan.join.insert(0, (flag, p.clone()))
                }
                Some(p) => plan.join.push((flag, p.clone())),
                None => plan.new |= flag,
            }
        }
        plan
    }

    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.join.iter().any(|(f, _)| *f == flag)
    }

    /// The path of a joined pid namespace: it must be entered by the parent
    /// before clone (setns of a pid namespace only affects children).
    pub fn pid_path(&self) -> Option<&PathBuf> {
        self.join
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
            .map(|(_, p)| p)
    }
}

/// setns into the namespace at `path`.
pub fn join(flag: CloneFlags, path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
    nix::sched::setns(file.as_fd(), flag).map_err(|e| {
        Error::sys(
            format!("setns {} namespace {}", proc_name(flag), path.display()),
            e,
        )
    })
}

pub fn unshare(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|e| Error::sys(format!("unshare {flags:?}"), e))
}

/// Bring up `lo` in a new network namespace (crun does too; runc leaves it
/// down): apps and in-netns health checks expect 127.0.0.1 to work even when
/// no other interface has been attached yet. Two ioctls on a throwaway socket,
/// cheaper than a netlink round trip.
pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a struct ifreq we own; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Error::sys(
                "socket for loopback setup",
                nix::errno::Errno::last(),
            ));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        }
        let err = nix::errno::Errno::last();
        libc::close(fd);
        if rc != 0 {
            return Err(Error::sys(
                "bring up lo in the container's network namespace",
                err,
            ));
        }
    }
    Ok(())
}
