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

    /// root.path and mounts are set up only in a new mount namespace: with
    /// none (the process would share the runtime's, the host's) or one
    /// joined by path (mounts would land in a namespace others use and
    /// outlive the container), the config is refused, never run on that
    /// namespace's own root (docs/DECISIONS.md).
    pub fn check_own_mount_namespace(&self) -> Result<()> {
        if self.new.contains(CloneFlags::CLONE_NEWNS) {
            return Ok(());
        }
        let why = match self
            .join
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
        {
            Some((_, p)) => format!("the mount namespace is joined by path {}", p.display()),
            None => "no \"mount\" namespace is listed".to_string(),
        };
        Err(Error::spec(
            "linux.namespaces",
            format!(
                "{why}: root.path and mounts need a new mount namespace (a \"mount\" entry \
                 without \"path\"); rpaas-run does not run a container on another namespace's root"
            ),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Plan {
        let nss: Vec<LinuxNamespace> = serde_json::from_str(json).expect("namespaces json");
        Plan::from_spec(Some(&nss))
    }

    #[test]
    fn a_new_mount_namespace_is_required() {
        assert!(plan(r#"[{"type":"mount"},{"type":"pid"}]"#)
            .check_own_mount_namespace()
            .is_ok());
        let none = plan(r#"[{"type":"pid"}]"#)
            .check_own_mount_namespace()
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("linux.namespaces") && none.contains("no \"mount\""),
            "{none}"
        );
        let joined = plan(r#"[{"type":"mount","path":"/proc/1/ns/mnt"}]"#)
            .check_own_mount_namespace()
            .unwrap_err()
            .to_string();
        assert!(joined.contains("joined by path /proc/1/ns/mnt"), "{joined}");
        assert!(!joined.contains('\n'), "one line: {joined}");
    }
}
