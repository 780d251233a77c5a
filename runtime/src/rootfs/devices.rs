//! /dev inside the container: the default nodes, the spec's `linux.devices`,
//! and the usual symlinks. Nodes are made with mknod, or bind-mounted from the
//! host inside a user namespace (where mknod is not allowed).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use pathrs::Root;
use std::os::fd::AsFd;

use super::{fd_path, mounts, Plan};
use crate::{Error, Result};

/// A device node to create.
struct Node {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The nodes every container gets (runc's and crun's list).
fn defaults() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub fn setup(root: &Root, plan: &Plan, dev_is_tmpfs: bool) -> Result<()> {
    let mut nodes = Vec::new();
    if dev_is_tmpfs {
        nodes = defaults();
    }
    if let Some(devs) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
    {
        for (i, d) in devs.iter().enumerate() {
            let kind = match d.typ() {
                oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                    SFlag::S_IFCHR
                }
                oci_spec::runtime::LinuxDeviceType::B => SFlag::S_IFBLK,
                oci_spec::runtime::LinuxDeviceType::P => SFlag::S_IFIFO,
                oci_spec::runtime::LinuxDeviceType::A => {
                    return Err(Error::spec(
                        format!("linux.devices[{i}].type"),
                        "\"a\" is not a device type",
                    ))
                }
            };
            if !d.path().starts_with("/dev") {
                return Err(Error::spec(
                    format!("linux.devices[{i}].path"),
                    "must be under /dev",
                ));
            }
            nodes.retain(|n| n.path != *d.path());
            nodes.push(Node {
                path: d.path().clone(),
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
    }
    for n in &nodes {
        create_node(root, plan, n)?;
    }
    if dev_is_tmpfs {
        // symlinkat in /dev opened inside the root (as the nodes above): one
        // syscall each, where pathrs' create re-verified /proc every time.
        let dev = mounts::ensure_dir(root, Path::new("/dev"))?;
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            match nix::unistd::symlinkat(target, dev.as_fd(), name) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::sys(format!("symlink /dev/{name} -> {target}"), e)),
            }
        }
    }
    Ok(())
}

fn create_node(root: &Root, plan: &Plan, n: &Node) -> Result<()> {
    let name = n
        .path
        .file_name()
        .ok_or_else(|| Error::Other(format!("device path {} has no name", n.path.display())))?;
    let parent = n.path.parent().unwrap_or(Path::new("/dev"));
    if plan.userns {
        // mknod is refused in a user namespace: bind the host's node instead.
        let target = mounts::ensure_file(root, &n.path)?;
        return mount(
            Some(&n.path),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind device {}", n.path.display()), e));
    }
    let dir = mounts::ensure_dir(root, parent)?;
    // The *at calls below take the O_PATH fd as it is: no reopen through
    // /proc (pathrs' reopen re-verifies procfs every time).
    let dirfd = &dir;
    let _ = nix::unistd::unlinkat(dirfd, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    mknodat(
        dirfd,
        name,
        n.kind,
        Mode::from_bits_truncate(n.mode & 0o7777),
        makedev(n.major, n.minor),
    )
    .map_err(|e| Error::sys(format!("mknod {}", n.path.display()), e))?;
    // mknod applies the umask: set the exact mode, then the owner.
    nix::sys::stat::fchmodat(
        dirfd,
        name,
        Mode::from_bits_truncate(n.mode & 0o7777),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EOPNOTSUPP {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(|e| Error::sys(format!("chmod {}", n.path.display()), e))?;
    nix::unistd::fchownat(
        dirfd,
        name,
        Some(nix::unistd::Uid::from_raw(n.uid)),
        Some(nix::unistd::Gid::from_raw(n.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::sys(format!("chown {}", n.path.display()), e))?;
    Ok(())
}
