//! Performing the mounts a snapshotter returns (the snapshotters themselves only
//! describe them, as containerd's do, so a runtime may mount them in its own namespace).

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::snapshot::Mount;
use crate::{Error, Result};

/// Mount `mounts` (in order) on `target`.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        mount_one(m, target)?;
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let what = |e| {
        Error::sys(
            format!(
                "mount {} {} on {}",
                m.kind,
                m.source.display(),
                target.display()
            ),
            e,
        )
    };
    if m.kind == "bind" {
        let rec = if m.options.iter().any(|o| o == "rbind") {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        mount(
            Some(&m.source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | rec,
            None::<&str>,
        )
        .map_err(what)?;
        if m.options.iter().any(|o| o == "ro") {
            // A bind mount ignores MS_RDONLY on creation; it takes a remount.
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
                let _ = umount2(target, MntFlags::MNT_DETACH);
                return Err(what(e));
            }
        }
        return Ok(());
    }
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nodev" => flags |= MsFlags::MS_NODEV,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let data = data.join(",");
    mount(
        Some(&m.source),
        target,
        Some(m.kind.as_str()),
        flags,
        Some(data.as_str()),
    )
    .map_err(what)
}

/// Unmount whatever is mounted on `target` (all stacked mounts). Not mounted is Ok.
pub fn unmount_all(target: &Path) -> Result<()> {
    loop {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                // Busy (a process inside): detach so it goes away once released.
                umount2(target, MntFlags::MNT_DETACH)
                    .map_err(|e| Error::sys(format!("unmount {}", target.display()), e))?;
            }
            Err(e) => return Err(Error::sys(format!("unmount {}", target.display()), e)),
        }
    }
}
