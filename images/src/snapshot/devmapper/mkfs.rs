//! Making the file system of a base (layer chain) device.

use std::path::Path;
use std::process::Command;

use super::FsType;
use crate::{Error, Result};

/// mkfs without discards: by default mke2fs/mkfs.xfs discard the whole device
/// first, which is exactly the dm-thin discard we never want. The ext4 lazy
/// init is off so that no background ext4lazyinit thread writes (and
/// provisions) blocks later, under a running container.
pub fn make(fs: FsType, dev: &Path) -> Result<()> {
    let mut cmd = match fs {
        FsType::Ext4 => {
            let mut c = Command::new("mkfs.ext4");
            c.args([
                "-q",
                "-F",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            ]);
            c
        }
        FsType::Xfs => {
            let mut c = Command::new("mkfs.xfs");
            c.args(["-q", "-f", "-K"]);
            c
        }
    };
    let out = cmd
        .arg(dev)
        .output()
        .map_err(|e| Error::io("run mkfs on", dev, e))?;
    if !out.status.success() {
        return Err(Error::Devmapper {
            what: format!("mkfs {}", dev.display()),
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}
