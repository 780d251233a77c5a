//! maskedPaths and readonlyPaths, applied after pivot_root.

use std::os::fd::RawFd;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use pathrs::Root;

use super::fd_path;
use super::mounts::remount_bind;
use crate::{Error, Result};

/// Hide `path`: a read-only empty tmpfs over a directory, the host's real
/// /dev/null (an fd opened before pivot_root) over anything else.
/// A missing path is fine: there is nothing to hide.
pub fn mask(root: &Root, path: &Path, devnull: RawFd) -> Result<()> {
    let handle = match super::fast::resolve_nofollow(root, path) {
        Ok(h) => h,
        Err(_) => return Ok(()),
    };
    let target = fd_path(&handle);
    let meta = std::fs::metadata(&target).map_err(|e| Error::io("stat", path, e))?;
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            target.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("mask directory {}", path.display()), e))
    } else {
        let src = format!("/proc/self/fd/{devnull}");
        mount(
            Some(src.as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("mask {} with /dev/null", path.display()), e))
    }
}

/// Bind `path` onto itself and remount it read-only. Missing paths are skipped.
pub fn make_readonly(root: &Root, path: &Path) -> Result<()> {
    let handle = match super::fast::resolve_nofollow(root, path) {
        Ok(h) => h,
        Err(_) => return Ok(()),
    };
    let target = fd_path(&handle);
    mount(
        Some(target.as_str()),
        target.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind {} onto itself", path.display()), e))?;
    let again = super::fast::resolve_nofollow(root, path)
        .map_err(|e| Error::Other(format!("resolve {}: {e}", path.display())))?;
    remount_bind(&fd_path(&again), MsFlags::MS_RDONLY)
        .map_err(|e| Error::sys(format!("remount {} read-only", path.display()), e))
}

/// root.readonly: remount "/" read-only.
pub fn remount_readonly(path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    remount_bind(&p, MsFlags::MS_RDONLY)
        .map_err(|e| Error::sys(format!("remount {p} read-only"), e))
}

/// The container's /dev/null if it is the real device (char 1:3, not a
/// symlink or a planted file), opened without following links.
pub fn container_devnull(root: &Root) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let handle = super::fast::resolve_nofollow(root, "/dev/null").ok()?;
    let meta = std::fs::metadata(fd_path(&handle)).ok()?;
    let real = meta.file_type().is_char_device() && meta.rdev() == nix::sys::stat::makedev(1, 3);
    real.then(|| handle.into())
}
