//! `linux.sysctl`: which keys a container may set (only those its own
//! namespaces scope, as runc decides) and writing them under /proc/sys
//! without following anything out of it.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{Error, Result};

/// The namespaces of the container that decide which sysctls it may set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsFlags {
    /// Own IPC namespace (new or joined).
    pub ipc: bool,
    /// Own UTS namespace.
    pub uts: bool,
    /// A network namespace entry is present (new or joined).
    pub net: bool,
    /// The joined network namespace path is the host's own one.
    pub net_is_host: bool,
    /// `hostname` is set in the spec (then kernel.hostname conflicts with it).
    pub hostname_set: bool,
}

impl NsFlags {
    /// From `linux.namespaces` and `hostname`. A joined network namespace is
    /// compared (device + inode) with this process's own one, so that a
    /// bundle cannot reach the host's net.* sysctls by naming its netns path.
    pub fn from_spec(spec: &Spec) -> Result<NsFlags> {
        let mut ns = NsFlags {
            hostname_set: spec.hostname().as_deref().is_some_and(|h| !h.is_empty()),
            ..NsFlags::default()
        };
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for (i, n) in list.into_iter().flatten().enumerate() {
            match n.typ() {
                LinuxNamespaceType::Ipc => ns.ipc = true,
                LinuxNamespaceType::Uts => ns.uts = true,
                LinuxNamespaceType::Network => {
                    ns.net = true;
                    if let Some(path) = n.path() {
                        let field = format!("linux.namespaces[{i}].path");
                        let theirs = std::fs::metadata(path)
                            .map_err(|e| Error::spec(&field, format!("{}: {e}", path.display())))?;
                        let ours = std::fs::metadata("/proc/self/ns/net")
                            .map_err(|e| Error::io("stat", "/proc/self/ns/net", e))?;
                        ns.net_is_host = (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino());
                    }
                }
                _ => {}
            }
        }
        Ok(ns)
    }
}

/// IPC-namespaced sysctls outside fs.mqueue.* (ipc_namespaces(7)).
const IPC_KEYS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Check one `linux.sysctl` entry against the container's namespaces.
pub fn validate_sysctl(key: &str, value: &str, ns: &NsFlags) -> Result<()> {
    let field = format!("linux.sysctl.{key}");
    check_key(key).map_err(|r| Error::spec(&field, r))?;
    if value.contains('\0') {
        return Err(Error::spec(field, "value contains a NUL byte"));
    }
    let refuse = |reason: &str| Err(Error::spec(&field, reason));
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        return if ns.ipc {
            Ok(())
        } else {
            refuse("needs an IPC namespace (the container shares the host's)")
        };
    }
    if key.starts_with("net.") {
        return if !ns.net {
            refuse("needs a network namespace (the container shares the host's)")
        } else if ns.net_is_host {
            refuse("the joined network namespace is the host's own")
        } else {
            Ok(())
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if !ns.uts {
            refuse("needs a UTS namespace (the container shares the host's)")
        } else if key == "kernel.hostname" && ns.hostname_set {
            refuse("conflicts with the spec's hostname field")
        } else {
            Ok(())
        };
    }
    refuse("not scoped by any namespace of the container: it would change the host")
}

/// Keys are dotted names (`net.ipv4.ip_forward`); a `/` or an empty or `..`
/// component could name another file under (or above) /proc/sys.
fn check_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.contains('/') || key.contains('\0') {
        return Err("key must be dotted (no '/' or NUL)");
    }
    if key.contains("..") || key.starts_with('.') || key.ends_with('.') {
        return Err("key has an empty component");
    }
    Ok(())
}

/// Write `value` to /proc/sys/<key with dots as slashes>. The file is opened
/// beneath a /proc/sys fd that is checked to be procfs, with openat2 refusing
/// symlinks, magic links and mount crossings.
pub fn apply_sysctl(key: &str, value: &str) -> Result<()> {
    let field = format!("linux.sysctl.{key}");
    check_key(key).map_err(|r| Error::spec(&field, r))?;
    let root = "/proc/sys";
    let dir = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("{field}: open {root}"), e))?;
    let fs = nix::sys::statfs::fstatfs(&dir)
        .map_err(|e| Error::sys(format!("{field}: statfs {root}"), e))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::security(&field, format!("{root} is not procfs")));
    }
    let rel = key.replace('.', "/");
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = openat2(&dir, rel.as_str(), how)
        .map_err(|e| Error::sys(format!("{field}: open {root}/{rel}"), e))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(value.as_bytes())
        .map_err(|e| Error::spec(&field, format!("write {root}/{rel}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: NsFlags = NsFlags {
        ipc: true,
        uts: true,
        net: true,
        net_is_host: false,
        hostname_set: false,
    };

    fn reason(key: &str, ns: NsFlags) -> String {
        validate_sysctl(key, "1", &ns).unwrap_err().to_string()
    }

    #[test]
    fn ipc_keys_need_ipc_ns() {
        for k in ["kernel.shmmax", "kernel.sem", "fs.mqueue.queues_max"] {
            validate_sysctl(k, "1", &ALL).unwrap();
            let e = reason(k, NsFlags { ipc: false, ..ALL });
            assert!(
                e.contains(&format!("linux.sysctl.{k}")) && e.contains("IPC"),
                "{e}"
            );
        }
    }

    #[test]
    fn net_keys_need_own_netns() {
        validate_sysctl("net.ipv4.ip_forward", "1", &ALL).unwrap();
        assert!(reason("net.ipv4.ip_forward", NsFlags { net: false, ..ALL }).contains("network"));
        let e = reason(
            "net.core.somaxconn",
            NsFlags {
                net_is_host: true,
                ..ALL
            },
        );
        assert!(e.contains("host's own"), "{e}");
    }

    #[test]
    fn uts_keys() {
        validate_sysctl("kernel.domainname", "x", &ALL).unwrap();
        validate_sysctl("kernel.hostname", "x", &ALL).unwrap();
        assert!(reason("kernel.domainname", NsFlags { uts: false, ..ALL }).contains("UTS"));
        let e = reason(
            "kernel.hostname",
            NsFlags {
                hostname_set: true,
                ..ALL
            },
        );
        assert!(e.contains("hostname field"), "{e}");
    }

    #[test]
    fn host_wide_and_malformed_keys_are_refused() {
        for k in [
            "kernel.panic",
            "vm.swappiness",
            "net/ipv4/ip_forward",
            "net..ipv4",
            ".net.ipv4",
            "",
        ] {
            assert!(validate_sysctl(k, "1", &ALL).is_err(), "{k}");
        }
        // A shm-looking prefix is not enough.
        assert!(validate_sysctl("kernel.shm_next_id_x", "1", &ALL).is_err());
    }

    #[test]
    fn ns_flags_from_spec() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.2.0","hostname":"web","linux":{"namespaces":[
                {"type":"ipc"},{"type":"network","path":"/proc/self/ns/net"}]}}"#,
        )
        .unwrap();
        let ns = NsFlags::from_spec(&spec).unwrap();
        assert!(ns.ipc && ns.net && ns.net_is_host && ns.hostname_set && !ns.uts);
    }

    #[test]
    fn apply_refuses_bad_keys_before_touching_proc() {
        let e = apply_sysctl("net/../../etc", "1").unwrap_err().to_string();
        assert!(e.contains("linux.sysctl.net/../../etc"), "{e}");
    }
}
