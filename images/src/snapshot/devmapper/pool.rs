//! One dm-thin pool, driven through the device-mapper ioctls (`devicemapper`
//! crate; no dmsetup, no libdevmapper, no udev needed).
//!
//! Devices are addressed by `/dev/dm-N`, derived from the dev_t the kernel
//! returns: devtmpfs always creates that node, while `/dev/mapper/NAME` needs
//! udev (absent in minimal hosts and in the test guest).

use std::path::PathBuf;

use devicemapper::{errors, DevId, DmError, DmFlags, DmName, DmOptions, DM};

use super::status::{parse_pool_status, parse_thin_mapped, PoolStatus};
use crate::{Error, Result};

/// The outcome of removing a dm device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The device was still open after the retries; the kernel removes it on
    /// last close (DM_DEFERRED_REMOVE).
    Deferred,
    Absent,
}

pub struct Pool {
    dm: DM,
    name: String,
}

/// Turn a devicemapper error into ours, naming what was being done.
pub fn dm_err(what: impl Into<String>, e: DmError) -> Error {
    Error::Devmapper {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// The errno of a failed ioctl, if that is what failed.
/// (devicemapper links its own nix version, so compare raw numbers.)
fn errno_of(e: &DmError) -> Option<i32> {
    match e {
        DmError::Core(errors::Error::Ioctl(_, _, _, errno)) => Some(**errno as i32),
        _ => None,
    }
}

fn dm_name(name: &str) -> Result<&DmName> {
    DmName::new(name).map_err(|e| dm_err(format!("device name {name:?}"), e))
}

pub fn open_dm() -> Result<DM> {
    DM::new().map_err(|e| dm_err("/dev/mapper/control", e))
}

impl Pool {
    /// Attach to an existing, active thin pool device named `name`.
    pub fn open(name: &str) -> Result<Pool> {
        let dm = open_dm()?;
        let pool = Pool {
            dm,
            name: name.to_string(),
        };
        if pool.dev_path(name)?.is_none() {
            return Err(Error::Devmapper {
                what: format!("pool {name}"),
                reason: "no such device-mapper device".into(),
            });
        }
        Ok(pool)
    }

    /// Create and activate the pool device over the given metadata and data
    /// block devices ("MAJOR:MINOR" or paths). `zeroing`: see the module docs
    /// of `devmapper` for why it stays on.
    pub fn create(
        name: &str,
        meta: &str,
        data: &str,
        data_sectors: u64,
        block_sectors: u64,
        zeroing: bool,
    ) -> Result<Pool> {
        let dm = open_dm()?;
        // ignore_discard: the pool neither processes nor passes down discards,
        // so nothing a container does (fstrim, blkdiscard, -o discard) reaches
        // the data device: discards through dm-thin crashed hosts in production.
        let mut features = vec!["ignore_discard"];
        if !zeroing {
            features.push("skip_block_zeroing");
        }
        // low water mark 0: we refuse new snapshots ourselves below a threshold
        let params = format!(
            "{meta} {data} {block_sectors} 0 {} {}",
            features.len(),
            features.join(" ")
        );
        let table = [(0, data_sectors, "thin-pool".to_string(), params)];
        create_device(&dm, name, &table).map_err(|e| Error::Devmapper {
            what: format!("create pool {name} (thin-pool {meta} {data})"),
            reason: e.to_string(),
        })?;
        Ok(Pool {
            dm,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/dev/dm-N` of a dm device, None when it does not exist.
    pub fn dev_path(&self, name: &str) -> Result<Option<PathBuf>> {
        match self.dm.device_info(&DevId::Name(dm_name(name)?)) {
            Ok(info) => Ok(Some(PathBuf::from(format!(
                "/dev/dm-{}",
                info.device().minor
            )))),
            Err(e) if errno_of(&e) == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(dm_err(format!("device {name} info"), e)),
        }
    }

    /// "MAJOR:MINOR" of the pool device, as thin tables reference it.
    fn pool_devno(&self) -> Result<String> {
        let info = self
            .dm
            .device_info(&DevId::Name(dm_name(&self.name)?))
            .map_err(|e| dm_err(format!("pool {} info", self.name), e))?;
        let d = info.device();
        Ok(format!("{}:{}", d.major, d.minor))
    }

    fn status_params(&self, name: &str) -> Result<String> {
        let (_, targets) = self
            .dm
            .table_status(&DevId::Name(dm_name(name)?), DmOptions::default())
            .map_err(|e| dm_err(format!("device {name} status"), e))?;
        targets
            .into_iter()
            .next()
            .map(|t| t.3)
            .ok_or_else(|| Error::Devmapper {
                what: format!("device {name} status"),
                reason: "no target in table".into(),
            })
    }

    pub fn status(&self) -> Result<PoolStatus> {
        let line = self.status_params(&self.name)?;
        parse_pool_status(&self.name, &line)
    }

    /// Sectors a thin device has mapped in the pool.
    pub fn thin_mapped_sectors(&self, dev: &str) -> Result<u64> {
        let line = self.status_params(dev)?;
        parse_thin_mapped(dev, &line)
    }

    /// The raw `thin-pool` table line (for diagnostics and tests).
    pub fn table(&self) -> Result<String> {
        let (_, t) = self
            .dm
            .table_status(
                &DevId::Name(dm_name(&self.name)?),
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .map_err(|e| dm_err(format!("pool {} table", self.name), e))?;
        Ok(t.into_iter()
            .map(|(s, l, ty, p)| format!("{s} {l} {ty} {p}"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Send a pool message (`create_thin N`, `create_snap N O`, `delete N`,
    /// `set_transaction_id A B`).
    pub fn message(&self, msg: &str) -> Result<()> {
        self.dm
            .target_msg(&DevId::Name(dm_name(&self.name)?), None, msg)
            .map(|_| ())
            .map_err(|e| dm_err(format!("pool {} message {msg:?}", self.name), e))
    }

    /// Like `message`, and also reports the errno for callers that tolerate one.
    pub fn message_errno(&self, msg: &str) -> std::result::Result<(), (Error, Option<i32>)> {
        let id = DevId::Name(dm_name(&self.name).map_err(|e| (e, None))?);
        self.dm.target_msg(&id, None, msg).map(|_| ()).map_err(|e| {
            let errno = errno_of(&e);
            (
                dm_err(format!("pool {} message {msg:?}", self.name), e),
                errno,
            )
        })
    }

    /// Bump the pool's transaction id from `from` to `from + 1`.
    pub fn bump_txn(&self, from: u64) -> Result<()> {
        self.message(&format!("set_transaction_id {from} {}", from + 1))
    }

    /// Activate thin device `id` as dm device `name`; returns `/dev/dm-N`.
    pub fn activate(&self, name: &str, id: u32, sectors: u64) -> Result<PathBuf> {
        if let Some(p) = self.dev_path(name)? {
            return Ok(p);
        }
        let table = [(
            0,
            sectors,
            "thin".to_string(),
            format!("{} {id}", self.pool_devno()?),
        )];
        create_device(&self.dm, name, &table).map_err(|e| Error::Devmapper {
            what: format!("activate thin {id} as {name}"),
            reason: e.to_string(),
        })?;
        self.dev_path(name)?.ok_or_else(|| Error::Devmapper {
            what: format!("activate thin {id} as {name}"),
            reason: "device vanished right after creation".into(),
        })
    }

    /// Suspend (flushing I/O) or resume a dm device.
    pub fn suspend(&self, name: &str, suspend: bool) -> Result<()> {
        let flags = if suspend {
            DmFlags::DM_SUSPEND
        } else {
            DmFlags::empty()
        };
        self.dm
            .device_suspend(
                &DevId::Name(dm_name(name)?),
                DmOptions::default().set_flags(flags),
            )
            .map(|_| ())
            .map_err(|e| {
                dm_err(
                    format!("{} {name}", if suspend { "suspend" } else { "resume" }),
                    e,
                )
            })
    }

    /// Remove a dm device: the crate already retries EBUSY a few times; after
    /// that, if `defer`, the removal is left to the device's last close.
    pub fn deactivate(&self, name: &str, defer: bool) -> Result<Removal> {
        let id = DevId::Name(dm_name(name)?);
        match self.dm.device_remove(&id, DmOptions::default()) {
            Ok(_) => Ok(Removal::Removed),
            Err(e) if errno_of(&e) == Some(libc::ENXIO) => Ok(Removal::Absent),
            Err(e) if defer && errno_of(&e) == Some(libc::EBUSY) => {
                tracing::warn!(device = name, "busy after retries; deferring its removal");
                self.dm
                    .device_remove(
                        &id,
                        DmOptions::default().set_flags(DmFlags::DM_DEFERRED_REMOVE),
                    )
                    .map_err(|e| dm_err(format!("deferred remove {name}"), e))?;
                Ok(Removal::Deferred)
            }
            Err(e) => Err(dm_err(format!("remove {name}"), e)),
        }
    }

    /// Remove the pool device itself (its thin devices must be gone).
    pub fn deactivate_pool(&self) -> Result<Removal> {
        self.deactivate(&self.name, false)
    }

    /// Names of all dm devices whose name starts with `prefix`.
    pub fn list_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let list = self
            .dm
            .list_devices()
            .map_err(|e| dm_err("list dm devices", e))?;
        Ok(list
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .filter(|n| n.starts_with(prefix))
            .collect())
    }
}

/// DEV_CREATE + TABLE_LOAD + RESUME; a failure after the create removes the
/// half-made device so nothing is left behind.
fn create_device(dm: &DM, name: &str, table: &[(u64, u64, String, String)]) -> Result<()> {
    let dmn = dm_name(name)?;
    dm.device_create(dmn, None, DmOptions::default())
        .map_err(|e| dm_err(format!("create {name}"), e))?;
    let id = DevId::Name(dmn);
    let loaded = dm
        .table_load(&id, table, DmOptions::default())
        .map_err(|e| dm_err(format!("load table of {name}"), e))
        .and_then(|_| {
            dm.device_suspend(&id, DmOptions::default())
                .map_err(|e| dm_err(format!("resume {name}"), e))
        });
    if let Err(e) = loaded {
        let _ = dm.device_remove(&id, DmOptions::default());
        return Err(e);
    }
    Ok(())
}
