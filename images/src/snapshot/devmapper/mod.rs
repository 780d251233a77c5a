//! The devmapper thin snapshotter: every layer chain is one thin device,
//! every container a thin snapshot (`create_snap`) of it.
//!
//! Rules this backend keeps, and why:
//! - **No discard ever reaches the pool.** Discards through dm-thin crashed
//!   production hosts (the fix then was `dm.mountopt=nodiscard` and
//!   `dm.blkdiscard=false`). So the pool is created with `ignore_discard`,
//!   file systems are made with `mkfs.ext4 -E nodiscard` (xfs: `-K`), mounted
//!   `nodiscard`, and devices are removed without BLKDISCARD.
//! - **Block zeroing stays on.** With `skip_block_zeroing`, a block freed by a
//!   deleted container and handed to a new one keeps its old bytes wherever the
//!   new owner has not written yet: a partial write into it lets the new
//!   container read the previous tenant's data. Zeroing costs one extra write
//!   per newly provisioned block, which is cheap next to that leak
//!   (`Config::zeroing` exists only to prove the point in tests).
//! - **Journal first.** Every pool change is recorded in `journal` before it
//!   is made; each operation starts by repairing what a crashed one left
//!   (`Creating` is rolled back, `Deleting` is rolled forward).
//! - **Refuse before full.** Below `min_free_percent` of data or metadata, new
//!   snapshots are refused with a clear error, instead of letting the pool run
//!   out of space and go read-only under running containers.
//! - **No udev needed.** Devices are used as `/dev/dm-N`.

mod journal;
mod loopback;
mod mkfs;
mod pool;
mod status;

use std::path::{Path, PathBuf};

pub use journal::{Device as DeviceRecord, Journal, State as DeviceState};
pub use loopback::metadata_size;
pub use pool::{Pool, Removal};
pub use status::{parse_pool_status, PoolStatus};

use journal::{Device, State, Store};

use super::{Info, Kind, Mount, Snapshotter, Usage};
use crate::{Error, Result};

/// Where the pool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSource {
    /// An existing, active thin pool made for rpaas (e.g. with dmsetup on a
    /// real block device). It must show `ignore_discard`, and it must be
    /// dedicated to this snapshotter: we own its thin ids and bump its
    /// transaction id on every change, so an LVM-managed pool (whose
    /// transaction ids LVM owns) would be confused by it.
    Existing(String),
    /// A pool on sparse `data` + `metadata` files in `dir`, `size` bytes of
    /// data: created on first use, re-attached after a reboot.
    Loopback { dir: PathBuf, size: u64 },
}

/// File system made on base devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the journal and its lock.
    pub root: PathBuf,
    /// dm name of the pool (created under this name for `Loopback`).
    pub pool_name: String,
    pub source: PoolSource,
    /// Virtual size of each base (layer chain) device, bytes.
    pub base_size: u64,
    /// Pool data block size in bytes (new loopback pools only); 64 KiB.
    pub block_size: u64,
    pub fs: FsType,
    /// Keep dm-thin block zeroing on (see the module docs). Default true.
    pub zeroing: bool,
    /// Refuse new snapshots when less than this percent of the pool's data or
    /// metadata space is free.
    pub min_free_percent: u64,
}

impl Config {
    /// A pool on loop files in `dir` with `size` bytes of data space.
    pub fn loopback(
        root: impl Into<PathBuf>,
        pool_name: &str,
        dir: impl Into<PathBuf>,
        size: u64,
    ) -> Self {
        Config {
            root: root.into(),
            pool_name: pool_name.to_string(),
            source: PoolSource::Loopback {
                dir: dir.into(),
                size,
            },
            base_size: 10 << 30,
            block_size: 64 << 10,
            fs: FsType::Ext4,
            zeroing: true,
            min_free_percent: 10,
        }
    }

    /// An existing thin pool called `pool_name`.
    pub fn existing(root: impl Into<PathBuf>, pool_name: &str) -> Self {
        Config {
            source: PoolSource::Existing(pool_name.to_string()),
            ..Config::loopback(root, pool_name, PathBuf::new(), 0)
        }
    }
}

pub struct DevmapperSnapshotter {
    cfg: Config,
    pool: Pool,
    store: Store,
}

fn dm_error(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Devmapper {
        what: what.into(),
        reason: reason.into(),
    }
}

fn snap_error(key: &str, reason: impl Into<String>) -> Error {
    Error::Snapshot {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl DevmapperSnapshotter {
    /// Open (or, for a loopback source, create) the pool and repair whatever
    /// an interrupted operation left behind.
    pub fn new(cfg: Config) -> Result<Self> {
        validate(&cfg)?;
        std::fs::create_dir_all(&cfg.root).map_err(|e| Error::io("create dir", &cfg.root, e))?;
        let store = Store::new(&cfg.root);
        let lock = store.lock()?;
        let pool = match &cfg.source {
            PoolSource::Existing(name) => Pool::open(name)?,
            PoolSource::Loopback { dir, size } => open_loopback(&cfg, dir, *size)?,
        };
        let st = pool.status()?;
        if !st.ignore_discard {
            return Err(dm_error(
                format!("pool {}", cfg.pool_name),
                "does not ignore discards: recreate it with the ignore_discard feature \
                 (LVM: lvchange --discards ignore)",
            ));
        }
        let this = DevmapperSnapshotter { cfg, pool, store };
        let mut j = this.load()?;
        this.recover(&mut j)?;
        this.store.save(&j)?;
        drop(lock);
        Ok(this)
    }

    /// The pool, for status and diagnostics.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The journal as it is on disk now.
    pub fn journal(&self) -> Result<Journal> {
        let _l = self.store.lock()?;
        self.load()
    }

    pub fn journal_path(&self) -> &Path {
        self.store.path()
    }

    /// dm name of thin device `id` (`<pool>-snap-<id>`).
    pub fn dm_name(&self, id: u32) -> String {
        format!("{}-snap-{id}", self.cfg.pool_name)
    }

    /// `/dev/dm-N` of an active snapshot, None when it is not active.
    pub fn device_path(&self, key: &str) -> Result<Option<PathBuf>> {
        let j = self.journal()?;
        match j.devices.get(key) {
            Some(d) => self.pool.dev_path(&self.dm_name(d.id)),
            None => Ok(None),
        }
    }

    /// Deactivate every thin device of this snapshotter and then the pool
    /// (loop devices of a loopback pool detach by themselves). The journal
    /// stays: `new` brings everything back.
    pub fn shutdown(&self) -> Result<()> {
        let _l = self.store.lock()?;
        let prefix = format!("{}-snap-", self.cfg.pool_name);
        for name in self.pool.list_with_prefix(&prefix)? {
            if self.pool.deactivate(&name, false)? == Removal::Deferred {
                return Err(dm_error(format!("device {name}"), "still in use"));
            }
        }
        self.pool.deactivate_pool()?;
        Ok(())
    }

    fn load(&self) -> Result<Journal> {
        match self.store.load()? {
            None => Ok(Journal::new(&self.cfg.pool_name)),
            Some(j) if j.pool != self.cfg.pool_name => Err(dm_error(
                format!("journal {}", self.store.path().display()),
                format!("belongs to pool {}, not {}", j.pool, self.cfg.pool_name),
            )),
            Some(j) => Ok(j),
        }
    }

    /// Lock, load and repair: how every operation starts. A record still in
    /// `Creating`/`Deleting` while we hold the lock belongs to a process that
    /// died mid-operation (the lock is held for a whole operation).
    fn begin(&self) -> Result<(journal::Locked, Journal)> {
        let lock = self.store.lock()?;
        let mut j = self.load()?;
        if self.recover(&mut j)? {
            self.store.save(&j)?;
        }
        Ok((lock, j))
    }

    /// Repair interrupted operations; true when the journal changed.
    fn recover(&self, j: &mut Journal) -> Result<bool> {
        let pending: Vec<(String, Device)> = j
            .devices
            .iter()
            .filter(|(_, d)| d.state != State::Ready)
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        let mut changed = false;
        for (key, dev) in pending {
            match dev.state {
                State::Ready => {}
                State::Creating { txn } => {
                    tracing::info!(
                        key,
                        id = dev.id,
                        "rolling back an interrupted snapshot creation"
                    );
                    self.undo_create(&dev, txn)?;
                    j.devices.remove(&key);
                    changed = true;
                }
                State::Deleting { txn, deferred } => {
                    tracing::info!(
                        key,
                        id = dev.id,
                        "finishing an interrupted snapshot removal"
                    );
                    if self.finish_delete(j, &key, &dev, txn, deferred)? {
                        j.devices.remove(&key);
                    }
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// Roll back a creation that started at pool transaction `txn`. If the
    /// pool's transaction id moved past `txn` the thin device surely exists and
    /// its delete must succeed; otherwise the crash may have come before the
    /// create message, so a failing delete is expected.
    fn undo_create(&self, dev: &Device, txn: u64) -> Result<()> {
        let name = self.dm_name(dev.id);
        if self.pool.deactivate(&name, false)? == Removal::Deferred {
            return Err(dm_error(format!("device {name}"), "busy during rollback"));
        }
        let st = self.pool.status()?;
        match self.pool.message_errno(&format!("delete {}", dev.id)) {
            Ok(()) => {}
            Err((e, _)) if st.transaction_id > txn => return Err(e),
            Err((_, errno)) => {
                tracing::debug!(id = dev.id, ?errno, "thin device was never created")
            }
        }
        self.pool.bump_txn(st.transaction_id)
    }

    /// Roll a removal forward. Returns false when the dm device is still busy
    /// (removal deferred again; the record stays).
    fn finish_delete(
        &self,
        j: &mut Journal,
        key: &str,
        dev: &Device,
        txn: u64,
        deferred: bool,
    ) -> Result<bool> {
        let name = self.dm_name(dev.id);
        if self.pool.dev_path(&name)?.is_some()
            && self.pool.deactivate(&name, true)? == Removal::Deferred
        {
            return self.keep_deferred(j, key, txn);
        }
        let st = self.pool.status()?;
        if deferred {
            // a deferred record's txn is stale (later operations moved the
            // pool on): record the current one before sending `delete`
            if let Some(d) = j.devices.get_mut(key) {
                d.state = State::Deleting {
                    txn: st.transaction_id,
                    deferred: false,
                };
            }
            self.store.save(j)?;
        } else if st.transaction_id > txn {
            return Ok(true); // the delete went through before the crash
        }
        if !self.delete_thin(dev.id)? {
            return self.keep_deferred(j, key, st.transaction_id);
        }
        self.pool.bump_txn(st.transaction_id)?;
        Ok(true)
    }

    /// Leave a removal for a later operation. Marked `deferred` because its
    /// txn goes stale as soon as another operation changes the pool.
    fn keep_deferred(&self, j: &mut Journal, key: &str, txn: u64) -> Result<bool> {
        if let Some(d) = j.devices.get_mut(key) {
            d.state = State::Deleting {
                txn,
                deferred: true,
            };
        }
        self.store.save(j)?;
        Ok(false)
    }

    /// Send `delete ID`. True when the thin device is gone (also when it was
    /// already gone: ENODATA after a crash right behind the delete). False
    /// while the pool still sees it open (EBUSY): a deferred dm removal
    /// unhashes the name before the kernel has closed the thin device, so
    /// this window is short; retried briefly, then left for later.
    fn delete_thin(&self, id: u32) -> Result<bool> {
        let msg = format!("delete {id}");
        for _ in 0..20 {
            match self.pool.message_errno(&msg) {
                Ok(()) | Err((_, Some(libc::ENODATA))) => return Ok(true),
                Err((_, Some(libc::EBUSY))) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err((e, _)) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Refuse new snapshots when the pool is low on space or unhealthy.
    fn check_space(&self, key: &str, st: &PoolStatus) -> Result<()> {
        let what = format!("pool {} (new snapshot {key})", self.cfg.pool_name);
        if st.mode != "rw" || st.needs_check {
            return Err(dm_error(
                what,
                format!("pool is {} (needs_check: {})", st.mode, st.needs_check),
            ));
        }
        let min = self.cfg.min_free_percent;
        for (space, free) in [
            ("data", st.data_free_percent()),
            ("metadata", st.meta_free_percent()),
        ] {
            if free < min {
                return Err(dm_error(
                    what,
                    format!("only {free}% of {space} space free, below the {min}% threshold: refusing new snapshots"),
                ));
            }
        }
        Ok(())
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let (_lock, mut j) = self.begin()?;
        if j.devices.contains_key(key) {
            return Err(snap_error(key, "already exists"));
        }
        let origin = match parent {
            Some(p) => match j.devices.get(p) {
                Some(d) if d.kind == Kind::Committed && d.state == State::Ready => Some(d.clone()),
                Some(_) => {
                    return Err(snap_error(
                        key,
                        format!("parent {p} is not a committed snapshot"),
                    ))
                }
                None => return Err(snap_error(key, format!("parent {p} does not exist"))),
            },
            None => None,
        };
        let st = self.pool.status()?;
        self.check_space(key, &st)?;
        let id = j.allocate_id()?;
        let sectors = origin
            .as_ref()
            .map_or(self.cfg.base_size / 512, |o| o.sectors);
        let dev = Device {
            id,
            parent: parent.map(str::to_string),
            kind,
            sectors,
            state: State::Creating {
                txn: st.transaction_id,
            },
        };
        j.devices.insert(key.to_string(), dev.clone());
        self.store.save(&j)?;
        fail::fail_point!("devmapper::create::journaled");

        match self.create_device(&dev, origin.as_ref(), st.transaction_id) {
            Ok(path) => {
                if let Some(d) = j.devices.get_mut(key) {
                    d.state = State::Ready;
                }
                self.store.save(&j)?;
                Ok(self.mounts_for(kind, path))
            }
            Err(e) => {
                if let Err(undo) = self.undo_create(&dev, st.transaction_id) {
                    tracing::error!(key, error = %undo, "rollback failed; the next operation retries it");
                    return Err(e);
                }
                j.devices.remove(key);
                self.store.save(&j)?;
                Err(e)
            }
        }
    }

    /// The pool side of `create`: message, transaction bump, activation, mkfs.
    fn create_device(&self, dev: &Device, origin: Option<&Device>, txn: u64) -> Result<PathBuf> {
        match origin {
            Some(o) => self.snapshot_of(dev.id, o)?,
            None => self.pool.message(&format!("create_thin {}", dev.id))?,
        }
        fail::fail_point!("devmapper::create::messaged", |_| Err(dm_error(
            format!("thin {}", dev.id),
            "fail point devmapper::create::messaged"
        )));
        self.pool.bump_txn(txn)?;
        let path = self
            .pool
            .activate(&self.dm_name(dev.id), dev.id, dev.sectors)?;
        if origin.is_none() {
            mkfs::make(self.cfg.fs, &path)?;
        }
        Ok(path)
    }

    /// `create_snap`, with the origin suspended around it when it is active
    /// (a snapshot of a device with I/O in flight would be torn).
    fn snapshot_of(&self, id: u32, origin: &Device) -> Result<()> {
        let oname = self.dm_name(origin.id);
        let active = self.pool.dev_path(&oname)?.is_some();
        if active {
            self.pool.suspend(&oname, true)?;
        }
        let res = self
            .pool
            .message(&format!("create_snap {id} {}", origin.id));
        if active {
            self.pool.suspend(&oname, false)?;
        }
        res
    }

    fn mounts_for(&self, kind: Kind, path: PathBuf) -> Vec<Mount> {
        let mut options = Vec::new();
        if kind == Kind::View {
            options.push("ro".to_string());
        }
        // never let the file system send discards (see the module docs)
        options.push("nodiscard".to_string());
        vec![Mount {
            kind: self.cfg.fs.name().to_string(),
            source: path,
            options,
        }]
    }
}

/// `u64::is_multiple_of` is too new for the workspace's minimum Rust.
fn multiple(n: u64, of: u64) -> bool {
    n.checked_rem(of) == Some(0)
}

fn validate(cfg: &Config) -> Result<()> {
    let bad = |field: &str, why: String| Err(dm_error(format!("config {field}"), why));
    if cfg.pool_name.is_empty() || cfg.pool_name.len() > 100 || cfg.pool_name.contains('/') {
        return bad(
            "pool_name",
            format!("{:?} must be 1..=100 bytes without '/'", cfg.pool_name),
        );
    }
    if cfg.base_size < (16 << 20) || !multiple(cfg.base_size, 512) {
        return bad(
            "base_size",
            format!("{} must be >= 16 MiB and a multiple of 512", cfg.base_size),
        );
    }
    // dm-thin: 64 KiB .. 1 GiB, a multiple of 64 KiB
    if !(64 << 10..=1 << 30).contains(&cfg.block_size) || !multiple(cfg.block_size, 64 << 10) {
        return bad(
            "block_size",
            format!(
                "{} must be a multiple of 64 KiB in 64 KiB..1 GiB",
                cfg.block_size
            ),
        );
    }
    if cfg.min_free_percent > 99 {
        return bad(
            "min_free_percent",
            format!("{} must be < 100", cfg.min_free_percent),
        );
    }
    if let PoolSource::Loopback { size, .. } = &cfg.source {
        if *size < (64 << 20) || !multiple(*size, cfg.block_size) {
            return bad(
                "loopback size",
                format!("{size} must be >= 64 MiB and a multiple of block_size"),
            );
        }
    }
    Ok(())
}

/// The pool of a loopback source: already active (another process, or before
/// a restart of ours), or made now from the files in `dir`.
fn open_loopback(cfg: &Config, dir: &Path, size: u64) -> Result<Pool> {
    if let Ok(p) = Pool::open(&cfg.pool_name) {
        return Ok(p);
    }
    let backing = loopback::attach(dir, size)?;
    let data_bytes = loopback::block_size_bytes(&backing.data)?;
    let block_sectors = cfg.block_size / 512;
    let data_sectors = data_bytes / 512 / block_sectors * block_sectors;
    if backing.fresh {
        tracing::info!(pool = cfg.pool_name, dir = %dir.display(), "formatting a new loopback thin pool");
    }
    let pool = Pool::create(
        &cfg.pool_name,
        &backing.meta.to_string_lossy(),
        &backing.data.to_string_lossy(),
        data_sectors,
        block_sectors,
        cfg.zeroing,
    )?;
    // the pool holds the loop devices now; our handles may close
    drop(backing);
    Ok(pool)
}

impl Snapshotter for DevmapperSnapshotter {
    fn name(&self) -> &'static str {
        "devmapper"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (_l, j) = self.begin()?;
        let d = j
            .devices
            .get(key)
            .ok_or_else(|| snap_error(key, "does not exist"))?;
        if d.kind == Kind::Committed || d.state != State::Ready {
            return Err(snap_error(key, "is not an active or view snapshot"));
        }
        // after a reboot nothing is active: activate on demand
        let path = self.pool.activate(&self.dm_name(d.id), d.id, d.sectors)?;
        Ok(self.mounts_for(d.kind, path))
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let (_l, mut j) = self.begin()?;
        if j.devices.contains_key(name) {
            return Err(snap_error(name, "already exists"));
        }
        let mut d = match j.devices.get(key) {
            Some(d) if d.kind == Kind::Active && d.state == State::Ready => d.clone(),
            Some(_) => return Err(snap_error(key, "is not an active snapshot")),
            None => return Err(snap_error(key, "does not exist")),
        };
        // a committed device is never written again: deactivate it, which
        // also proves nobody has it mounted any more
        let dname = self.dm_name(d.id);
        if self
            .pool
            .deactivate(&dname, false)
            .map_err(|e| snap_error(key, format!("still in use? {e}")))?
            == Removal::Deferred
        {
            return Err(snap_error(key, "still in use"));
        }
        d.kind = Kind::Committed;
        j.devices.remove(key);
        j.devices.insert(name.to_string(), d);
        self.store.save(&j)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let (_l, mut j) = self.begin()?;
        let Some(dev) = j.devices.get(key).cloned() else {
            return Ok(());
        };
        let children = j.children(key);
        if !children.is_empty() {
            return Err(snap_error(
                key,
                format!("has children: {}", children.join(", ")),
            ));
        }
        let st = self.pool.status()?;
        let txn = st.transaction_id;
        if let Some(d) = j.devices.get_mut(key) {
            d.state = State::Deleting {
                txn,
                deferred: false,
            };
        }
        self.store.save(&j)?;
        fail::fail_point!("devmapper::delete::journaled");
        let name = self.dm_name(dev.id);
        if self.pool.deactivate(&name, true)? == Removal::Deferred {
            return self.keep_deferred(&mut j, key, txn).map(drop);
        }
        fail::fail_point!("devmapper::delete::deactivated");
        // no BLKDISCARD before this: the pool frees the blocks in its metadata
        if !self.delete_thin(dev.id)? {
            return self.keep_deferred(&mut j, key, txn).map(drop);
        }
        self.pool.bump_txn(txn)?;
        j.devices.remove(key);
        self.store.save(&j)
    }

    fn stat(&self, key: &str) -> Result<Option<Info>> {
        let (_l, j) = self.begin()?;
        Ok(j.devices
            .get(key)
            .filter(|d| d.state == State::Ready)
            .map(|d| info(key, d)))
    }

    /// Bytes the device has mapped in the pool (shared blocks with its parent
    /// included: dm-thin does not report exclusive usage without thin_ls).
    fn usage(&self, key: &str) -> Result<Usage> {
        let (_l, j) = self.begin()?;
        let d = j
            .devices
            .get(key)
            .ok_or_else(|| snap_error(key, "does not exist"))?;
        let name = self.dm_name(d.id);
        let was_active = self.pool.dev_path(&name)?.is_some();
        if !was_active {
            self.pool.activate(&name, d.id, d.sectors)?;
        }
        let mapped = self.pool.thin_mapped_sectors(&name);
        if !was_active {
            self.pool.deactivate(&name, false)?;
        }
        Ok(Usage {
            bytes: mapped? * 512,
            inodes: 0,
        })
    }

    fn walk(&self) -> Result<Vec<Info>> {
        let (_l, j) = self.begin()?;
        Ok(j.devices
            .iter()
            .filter(|(_, d)| d.state == State::Ready)
            .map(|(k, d)| info(k, d))
            .collect())
    }
}

fn info(key: &str, d: &Device) -> Info {
    Info {
        key: key.to_string(),
        parent: d.parent.clone(),
        kind: d.kind,
    }
}
