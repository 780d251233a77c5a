//! The container's root filesystem, set up by init inside its new mount
//! namespace: propagation, the spec's mounts, /dev, pivot_root, masked and
//! read-only paths.
//!
//! Every mount target is resolved inside the rootfs through a root fd with
//! pathrs (openat2 RESOLVE_IN_ROOT underneath) and the mount is made on
//! `/proc/self/fd/N` of the resolved O_PATH handle, so a symlink planted in the
//! image can never redirect a mount to the host (never canonicalize-then-open).

mod devices;
mod fast;
mod masked;
mod mounts;
pub mod options;
mod pivot;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;

use crate::{Error, Result};

/// What init knows when it sets up the rootfs.
pub struct Plan<'a> {
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    /// In a new user namespace: device nodes are bind-mounted, not mknod'ed.
    pub userns: bool,
    /// In a new cgroup namespace (cgroup mounts then show the container's subtree).
    pub cgroupns: bool,
    /// The container has its own network namespace (sysfs can be mounted).
    pub netns: bool,
}

/// What prepare made that init holds until execve.
pub struct Prepared {
    /// The verified /dev/null that masks paths; kept open until execve.
    _devnull: OwnedFd,
}

/// Mount propagation, the rootfs bind, the spec's mounts and /dev.
pub fn prepare(plan: &Plan) -> Result<Prepared> {
    // As runc: a recursive rootfsPropagation is given to / (every copy of
    // the runtime's mounts) before anything is mounted, and kept. With
    // rshared a volume bound from a shared host mount then joins the host's
    // peer group, so mounts travel both ways (Kubernetes' Bidirectional).
    // The default, rslave, lets host mounts in and none out; it is also the
    // base under the other values, which `finish` gives to the container's
    // / alone (unbindable could not be bound below).
    let base = match requested_propagation(plan)? {
        Some(f) if f.contains(MsFlags::MS_REC) && !f.contains(MsFlags::MS_UNBINDABLE) => f,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, base, None::<&str>)
        .map_err(|e| Error::sys(format!("make / {base:?} (linux.rootfsPropagation)"), e))?;
    // pivot_root refuses a new root whose parent mount is shared, and the
    // rootfs bind would propagate to the parent's peers (the host's).
    make_parent_private(&plan.rootfs)?;

    // pivot_root needs the new root to be a mount point.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind rootfs {}", plan.rootfs.display()), e))?;

    let devnull = std::fs::File::open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?
        .into();

    let root = open_root(&plan.rootfs)?;
    let mut dev_is_tmpfs = false;
    for (i, m) in plan.spec.mounts().iter().flatten().enumerate() {
        mounts::mount_one(&root, plan, i, m)?;
        if m.destination() == Path::new("/dev") {
            dev_is_tmpfs = true;
        }
    }
    devices::setup(&root, plan, dev_is_tmpfs)?;
    let devnull = masked::container_devnull(&root).unwrap_or(devnull);
    mask_and_protect(&root, plan, &devnull)?;
    Ok(Prepared { _devnull: devnull })
}

/// pivot_root into the rootfs (or MS_MOVE + chroot with --no-pivot).
pub fn pivot(plan: &Plan) -> Result<()> {
    if plan.no_pivot {
        pivot::move_root(&plan.rootfs)
    } else {
        pivot::pivot_root(&plan.rootfs)
    }
}

/// After pivot: read-only root; shared or unbindable propagation of /.
pub fn finish(plan: &Plan) -> Result<()> {
    if plan
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        masked::remount_readonly(Path::new("/"))?;
    }
    match requested_propagation(plan)? {
        // The rootfs bind was made from a private or slave mount: make /
        // itself shared (a new peer group, as crun shows it). Not
        // recursively: the spec's mounts keep the propagation they were given.
        Some(f) if f.contains(MsFlags::MS_SHARED) => {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_SHARED,
                None::<&str>,
            )
            .map_err(|e| Error::sys("linux.rootfsPropagation: make / shared", e))?;
        }
        // private, slave, unbindable, runbindable: for the container's / (rprivate
        // and rslave it has from `prepare`).
        Some(f) if f.contains(MsFlags::MS_UNBINDABLE) || !f.contains(MsFlags::MS_REC) => {
            mount(None::<&str>, "/", None::<&str>, f, None::<&str>)
                .map_err(|e| Error::sys(format!("linux.rootfsPropagation: make / {f:?}"), e))?;
        }
        _ => {}
    }
    Ok(())
}

/// `linux.rootfsPropagation` as mount flags.
fn requested_propagation(plan: &Plan) -> Result<Option<MsFlags>> {
    plan.spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(|p| {
            options::propagation_of(p).ok_or_else(|| {
                Error::spec("linux.rootfsPropagation", format!("unknown value {p:?}"))
            })
        })
        .transpose()
}

/// Make the mount that holds `rootfs` private in our mount namespace if it
/// is shared (runc does the same): found as the longest mount point of
/// /proc/self/mountinfo that contains the rootfs, the topmost if stacked.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let real = std::fs::canonicalize(rootfs).map_err(|e| Error::io("resolve", rootfs, e))?;
    let info = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(info).map_err(|e| Error::io("read", info, e))?;
    let Some((mount_point, shared)) = parent_mount(&text, &real) else {
        return Err(Error::Other(format!(
            "no mount in {info} holds the rootfs {}",
            real.display()
        )));
    };
    if shared {
        mount(
            None::<&str>,
            &mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| {
            Error::sys(
                format!(
                    "make {} (the mount holding the rootfs) private",
                    mount_point.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// The mount point in `mountinfo` that holds `path` (canonical), and
/// whether that mount is shared.
fn parent_mount(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let Some((before, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| unescape_mountinfo(m)) else {
            continue;
        };
        if !path.starts_with(&mp) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len());
        if longer {
            let shared = fields.iter().skip(6).any(|f| f.starts_with("shared:"));
            best = Some((mp, shared));
        }
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// maskedPaths and readonlyPaths, resolved inside the rootfs before
/// pivot_root, while the host's /dev/null can still be bind-mounted (a mount
/// source must be attached to our mount tree, and after pivot the old root is
/// gone). The source is the container's /dev/null only once it is proven to
/// be the real one (char device 1:3), else the host's.
fn mask_and_protect(root: &pathrs::Root, plan: &Plan, devnull: &OwnedFd) -> Result<()> {
    if let Some(linux) = plan.spec.linux() {
        for (i, p) in linux.masked_paths().iter().flatten().enumerate() {
            masked::mask(root, Path::new(p), devnull.as_raw_fd())
                .map_err(|e| with_field(e, format!("linux.maskedPaths[{i}]")))?;
        }
        for (i, p) in linux.readonly_paths().iter().flatten().enumerate() {
            masked::make_readonly(root, Path::new(p))
                .map_err(|e| with_field(e, format!("linux.readonlyPaths[{i}]")))?;
        }
    }
    Ok(())
}

fn open_root(path: &Path) -> Result<pathrs::Root> {
    pathrs::Root::open(path)
        .map_err(|e| Error::Other(format!("open rootfs {}: {e}", path.display())))
}

fn with_field(e: Error, field: String) -> Error {
    Error::spec(field, e.chain())
}

/// `/proc/self/fd/N` for an fd: mount(2) follows this magic link to the exact
/// inode we resolved, which is how we mount onto a handle safely.
pub(crate) fn fd_path(fd: &impl std::os::fd::AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw
2 1 8:1 /srv /srv rw,relatime - ext4 /dev/root rw
3 2 8:1 /b /srv/my\\040bundle rw,relatime shared:7 master:1 - ext4 /dev/root rw
4 2 0:30 / /srv/my\\040bundle rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn the_mount_holding_the_rootfs_is_the_longest_topmost_mount_point() {
        assert_eq!(
            parent_mount(INFO, Path::new("/srv/my bundle/rootfs")),
            Some((PathBuf::from("/srv/my bundle"), false)),
            "the tmpfs stacked last is on top"
        );
        let three = INFO.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(
            parent_mount(&three, Path::new("/srv/my bundle/rootfs")),
            Some((PathBuf::from("/srv/my bundle"), true))
        );
        assert_eq!(
            parent_mount(INFO, Path::new("/srv2/x")),
            Some((PathBuf::from("/"), true)),
            "/srv is not a prefix of /srv2"
        );
    }
}
