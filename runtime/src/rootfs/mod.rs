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
    let linux = plan.spec.linux().as_ref();
    // Nothing we mount may propagate back to the host: slave by default,
    // or what rootfsPropagation asks (shared is applied after pivot_root).
    let requested = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(|p| {
            options::propagation_of(p).ok_or_else(|| {
                Error::spec("linux.rootfsPropagation", format!("unknown value {p:?}"))
            })
        })
        .transpose()?;
    let initial = match requested {
        Some(f) if f.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, initial, None::<&str>)
        .map_err(|e| Error::sys("make / a slave mount", e))?;

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

/// After pivot: read-only root, shared propagation.
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
    if let Some(p) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        if let Some(f) = options::propagation_of(p) {
            if f.contains(MsFlags::MS_SHARED) || f.contains(MsFlags::MS_UNBINDABLE) {
                mount(None::<&str>, "/", None::<&str>, f, None::<&str>)
                    .map_err(|e| Error::sys(format!("linux.rootfsPropagation {p}"), e))?;
            }
        }
    }
    Ok(())
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
