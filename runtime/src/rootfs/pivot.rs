//! Switching the root: pivot_root, or MS_MOVE + chroot for `--no-pivot`
//! (needed when the rootfs is on a ramfs, where pivot_root is refused).

use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, pivot_root as sys_pivot_root};

use crate::{Error, Result};

/// pivot_root(".", ".") stacks the old root under the new one at "/"; we then
/// detach it, so no directory for the old root is needed inside the rootfs.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    // After pivot_root(".", ".") our cwd is still the new root, under the old
    // root stacked on it: step onto the old root through an fd, or the
    // rslave below would hit the container's own mounts and undo their
    // "shared" propagation options.
    let old_root = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open the old root /", e))?;
    chdir(rootfs).map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
    sys_pivot_root(".", ".")
        .map_err(|e| Error::sys(format!("pivot_root {}", rootfs.display()), e))?;
    nix::unistd::fchdir(&old_root).map_err(|e| Error::sys("fchdir to the old root", e))?;
    drop(old_root);
    // The old root must not propagate the unmount back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach old root", e))?;
    chdir("/").map_err(|e| Error::sys("chdir /", e))
}

pub fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("move {} to /", rootfs.display()), e))?;
    chroot(".").map_err(|e| Error::sys("chroot", e))?;
    chdir("/").map_err(|e| Error::sys("chdir /", e))
}
