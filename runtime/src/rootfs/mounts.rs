//! One spec mount, made on a target resolved inside the rootfs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;
use pathrs::{flags::OpenFlags, Handle, Root};

use super::options::{self, MountOptions};
use super::{fd_path, Plan};
use crate::{Error, Result};

pub fn mount_one(root: &Root, plan: &Plan, index: usize, m: &Mount) -> Result<()> {
    let field = format!("mounts[{index}]");
    let dest = m.destination();
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let kind = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(kind));
    let is_bind = opts.bind || kind == "bind";

    if kind == "cgroup" && !is_bind {
        return mount_cgroups(root, plan, &field, dest, &opts);
    }

    // A bind of a file needs a file to mount onto; everything else a directory.
    let source_is_file = is_bind
        && std::fs::metadata(&source)
            .map_err(|e| {
                Error::spec(
                    format!("{field}.source"),
                    format!("{}: {e}", source.display()),
                )
            })?
            .is_file();
    let target = if source_is_file {
        ensure_file(root, dest)
            .map_err(|e| Error::spec(format!("{field}.destination"), e.chain()))?
    } else {
        ensure_dir(root, dest)
            .map_err(|e| Error::spec(format!("{field}.destination"), e.chain()))?
    };
    let target_path = fd_path(&target);

    if is_bind {
        let mut flags = MsFlags::MS_BIND;
        if opts.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(&source),
            target_path.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| mount_err(&field, &source, dest, e))?;
        // Bind mounts ignore other flags on the first call: apply them by remounting.
        if !(opts.flags - MsFlags::MS_REC).is_empty() {
            // Reopen: the handle still points at the old (covered) dentry.
            let mounted = super::fast::resolve(root, dest)
                .map_err(|e| Error::Other(format!("{field}: resolve {}: {e}", dest.display())))?;
            remount_bind(&fd_path(&mounted), opts.flags)
                .map_err(|e| mount_err(&field, &source, dest, e))?;
        }
    } else {
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        let mut res = mount(
            Some(&source),
            target_path.as_str(),
            Some(kind),
            opts.flags,
            data,
        );
        if kind == "sysfs" && matches!(res, Err(nix::errno::Errno::EPERM)) && !plan.netns {
            // sysfs can't be mounted without owning a network namespace: bind the host's, read-only.
            res = mount(
                Some("/sys"),
                target_path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .and_then(|_| remount_bind(&target_path, opts.flags | MsFlags::MS_RDONLY));
        }
        if kind == "mqueue" && matches!(res, Err(nix::errno::Errno::EPERM)) {
            // Same for mqueue without an own IPC namespace (user namespaces).
            res = mount(
                Some("/dev/mqueue"),
                target_path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            );
        }
        res.map_err(|e| mount_err(&field, &source, dest, e))?;
    }
    for p in &opts.propagation {
        let mounted = super::fast::resolve(root, dest)
            .map_err(|e| Error::Other(format!("{field}: resolve {}: {e}", dest.display())))?;
        mount(
            None::<&str>,
            fd_path(&mounted).as_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(|e| mount_err(&field, &source, dest, e))?;
    }
    Ok(())
}

fn mount_err(field: &str, source: &Path, dest: &Path, e: nix::errno::Errno) -> Error {
    Error::sys(
        format!("{field}: mount {} on {}", source.display(), dest.display()),
        e,
    )
}

/// Remount a bind mount with `flags`, keeping the flags the kernel locks
/// (nosuid/nodev/noexec/atime) so the remount is allowed in user namespaces.
pub fn remount_bind(path: &str, flags: MsFlags) -> nix::Result<()> {
    let current = nix::sys::statvfs::statvfs(path)?.flags();
    let mut keep = MsFlags::empty();
    use nix::sys::statvfs::FsFlags;
    // statfs(2)'s ST_RELATIME (4096, as the kernel reports it): nix names it
    // for glibc targets only, and the runtime also builds against musl
    // (docs/DECISIONS.md, "rpaas-run stays on glibc").
    const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(4096);
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(fs) {
            keep |= ms;
        }
    }
    let flags = (flags | keep) - (MsFlags::MS_REC | MsFlags::MS_REMOUNT | MsFlags::MS_BIND);
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        None::<&str>,
    )
}

/// The directory `dest` inside the root, created (mode 0755) if missing.
pub fn ensure_dir(root: &Root, dest: &Path) -> Result<Handle> {
    if let Ok(h) = super::fast::resolve_dir(root, dest) {
        return Ok(h);
    }
    let made = match super::fast::mkdir_all(root, dest, 0o755) {
        Some(r) => r.map_err(|e| e.to_string()),
        None => root
            .mkdir_all(dest, &std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string()),
    };
    made.map_err(|e| Error::Other(format!("mkdir {} in rootfs: {e}", dest.display())))
}

/// The file `dest` inside the root, created empty if missing.
pub fn ensure_file(root: &Root, dest: &Path) -> Result<Handle> {
    if let Ok(h) = super::fast::resolve(root, dest) {
        return Ok(h);
    }
    let made = match super::fast::create_file(root, dest) {
        Some(r) => r.map_err(|e| e.to_string()),
        None => {
            if let Some(parent) = dest.parent() {
                ensure_dir(root, parent)?;
            }
            root.create_file(
                dest,
                OpenFlags::O_CREAT | OpenFlags::O_CLOEXEC,
                &std::fs::Permissions::from_mode(0o644),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }
    };
    made.map_err(|e| Error::Other(format!("create {} in rootfs: {e}", dest.display())))?;
    super::fast::resolve(root, dest)
        .map_err(|e| Error::Other(format!("resolve {} in rootfs: {e}", dest.display())))
}

/// `type: cgroup`: a tmpfs with one cgroup mount per v1 hierarchy, or one
/// cgroup2 mount on v2. In a cgroup namespace
/// each shows the container's own subtree.
fn mount_cgroups(
    root: &Root,
    plan: &Plan,
    field: &str,
    dest: &Path,
    opts: &MountOptions,
) -> Result<()> {
    let layout = crate::cgroups::layout()?;
    let target = ensure_dir(root, dest)?;
    let flags = opts.flags - MsFlags::MS_RDONLY;
    let _ = plan;
    match layout {
        crate::cgroups::Layout::V2 { .. } => {
            mount(
                Some("cgroup2"),
                fd_path(&target).as_str(),
                Some("cgroup2"),
                opts.flags,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("{field}: mount cgroup2 on {}", dest.display()), e))?;
        }
        // The hybrid host's unified mount is not shown, as runc and crun do not.
        crate::cgroups::Layout::V1 { hierarchies, .. } => {
            mount(
                Some("tmpfs"),
                fd_path(&target).as_str(),
                Some("tmpfs"),
                flags,
                Some("mode=755"),
            )
            .map_err(|e| Error::sys(format!("{field}: mount tmpfs on {}", dest.display()), e))?;
            // Without a cgroup namespace a fresh v1 mount shows the host's whole
            // hierarchy (podman on v1 runs so): bind our own directory instead, as
            // runc does, so the container sees its limits at the top.
            let own = if plan.cgroupns {
                None
            } else {
                Some(own_cgroups()?)
            };
            for h in hierarchies {
                let name = h
                    .mount
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| h.controllers.join(","));
                let sub = dest.join(&name);
                let t = ensure_dir(root, &sub)?;
                let data = h.controllers.join(",");
                match own.as_ref().and_then(|o| own_path(o, &h.controllers)) {
                    Some(rel) => {
                        let src = h.mount.join(rel.trim_start_matches('/'));
                        mount(
                            Some(&src),
                            fd_path(&t).as_str(),
                            None::<&str>,
                            MsFlags::MS_BIND,
                            None::<&str>,
                        )
                        .map_err(|e| mount_err(field, &src, &sub, e))?;
                        let mounted = super::fast::resolve(root, &sub).map_err(|e| {
                            Error::Other(format!("{field}: resolve {}: {e}", sub.display()))
                        })?;
                        remount_bind(&fd_path(&mounted), opts.flags)
                            .map_err(|e| mount_err(field, &src, &sub, e))?;
                    }
                    None => mount(
                        Some("cgroup"),
                        fd_path(&t).as_str(),
                        Some("cgroup"),
                        opts.flags,
                        Some(data.as_str()),
                    )
                    .map_err(|e| {
                        Error::sys(
                            format!("{field}: mount cgroup {data} on {}", sub.display()),
                            e,
                        )
                    })?,
                }
            }
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                let again = super::fast::resolve(root, dest).map_err(|e| {
                    Error::Other(format!("{field}: resolve {}: {e}", dest.display()))
                })?;
                mount(
                    None::<&str>,
                    fd_path(&again).as_str(),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                    Some("mode=755"),
                )
                .map_err(|e| {
                    Error::sys(format!("{field}: remount {} read-only", dest.display()), e)
                })?;
            }
        }
    }
    Ok(())
}

/// Our cgroup per v1 hierarchy, from /proc/self/cgroup: (controllers, path).
/// Init has joined its cgroup by the time it mounts.
fn own_cgroups() -> Result<Vec<(Vec<String>, String)>> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, p) = (parts.next()?, parts.next()?, parts.next()?);
            let mut ctrls: Vec<String> = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            ctrls.sort();
            (!ctrls.is_empty()).then(|| (ctrls, p.to_string()))
        })
        .collect())
}

/// The path of our cgroup in the hierarchy that binds exactly `controllers`.
fn own_path<'a>(own: &'a [(Vec<String>, String)], controllers: &[String]) -> Option<&'a str> {
    let mut want = controllers.to_vec();
    want.sort();
    own.iter()
        .find(|(c, _)| *c == want)
        .map(|(_, p)| p.as_str())
}
