//! The devmapper snapshotter's journal: which thin device id belongs to which
//! snapshot key, and what state each device is in.
//!
//! Why a journal: the pool's metadata only knows numeric thin ids. A crash
//! between "ask the pool" and "remember the answer" would leak a device (or
//! reuse an id). So every change is written here first (temp file, fsync,
//! rename, fsync of the directory) with the pool transaction id it started
//! from, and only then is the pool changed; start-up repairs any device left
//! in `Creating` or `Deleting` (see `recover` in the parent module).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rpaas_fsutil::FileLock;

use crate::snapshot::Kind;
use crate::{Error, Result};

/// Bumped when the file format changes incompatibly.
pub const VERSION: u32 = 1;

/// The life of one thin device, as recorded before the pool is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// `create_thin`/`create_snap` is about to be sent; `txn` is the pool's
    /// transaction id before it. Repaired by rolling back.
    Creating { txn: u64 },
    /// In the pool and usable.
    Ready,
    /// Being removed; `txn` is the pool's transaction id before `delete`.
    /// `deferred`: the dm device was busy and is removed by the kernel on last
    /// close; the pool `delete` is retried later. Repaired by rolling forward.
    Deleting { txn: u64, deferred: bool },
}

/// One snapshot's thin device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// The pool's 24-bit thin device id.
    pub id: u32,
    pub parent: Option<String>,
    pub kind: Kind,
    /// Virtual size in 512-byte sectors.
    pub sectors: u64,
    #[serde(flatten)]
    pub state: State,
}

/// The whole journal file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub version: u32,
    /// Name of the pool these ids live in; a journal is never used with another pool.
    pub pool: String,
    /// Next thin id to hand out; ids are never reused while the journal lives.
    pub next_id: u32,
    pub devices: BTreeMap<String, Device>,
}

/// The largest thin device id dm-thin accepts (24 bits).
pub const MAX_THIN_ID: u32 = (1 << 24) - 1;

impl Journal {
    pub fn new(pool: &str) -> Self {
        Journal {
            version: VERSION,
            pool: pool.to_string(),
            next_id: 1,
            devices: BTreeMap::new(),
        }
    }

    /// Take the next free thin id.
    pub fn allocate_id(&mut self) -> Result<u32> {
        let id = self.next_id;
        if id > MAX_THIN_ID {
            return Err(Error::Devmapper {
                what: format!("pool {}", self.pool),
                reason: format!("thin device ids exhausted (max {MAX_THIN_ID})"),
            });
        }
        self.next_id = id + 1;
        Ok(id)
    }

    /// Keys of devices whose parent is `key`.
    pub fn children(&self, key: &str) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|(_, d)| d.parent.as_deref() == Some(key))
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Where the journal lives, plus the lock that serialises every operation on
/// it across threads *and* processes (several `rpaas-run` may share a pool).
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    lock_path: PathBuf,
}

/// Held while an operation runs; dropping it releases the flock.
pub struct Locked(#[allow(dead_code)] FileLock);

impl Store {
    pub fn new(dir: &Path) -> Self {
        Store {
            path: dir.join("devmapper.json"),
            lock_path: dir.join("devmapper.lock"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block until this process holds the journal's exclusive lock.
    pub fn lock(&self) -> Result<Locked> {
        crate::store::lock(&self.lock_path).map(Locked)
    }

    /// Read the journal; `None` when it was never written.
    pub fn load(&self) -> Result<Option<Journal>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read journal", &self.path, e)),
        };
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::Devmapper {
            what: format!("journal {}", self.path.display()),
            reason: format!("corrupt: {e}"),
        })?;
        if j.version != VERSION {
            return Err(Error::Devmapper {
                what: format!("journal {}", self.path.display()),
                reason: format!("version {} (this build reads {VERSION})", j.version),
            });
        }
        Ok(Some(j))
    }

    /// Durably replace the journal: temp file, fsync, rename, fsync the dir,
    /// so a crash leaves either the old or the new journal, never a torn one.
    pub fn save(&self, j: &Journal) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(j).map_err(|e| Error::Devmapper {
            what: format!("journal {}", self.path.display()),
            reason: format!("serialize: {e}"),
        })?;
        crate::store::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load().unwrap().is_none());
        let mut j = Journal::new("rpaas-pool");
        let id = j.allocate_id().unwrap();
        j.devices.insert(
            "layer".into(),
            Device {
                id,
                parent: None,
                kind: Kind::Committed,
                sectors: 2048,
                state: State::Ready,
            },
        );
        let id2 = j.allocate_id().unwrap();
        assert_ne!(id, id2);
        j.devices.insert(
            "c1".into(),
            Device {
                id: id2,
                parent: Some("layer".into()),
                kind: Kind::Active,
                sectors: 2048,
                state: State::Deleting {
                    txn: 4,
                    deferred: true,
                },
            },
        );
        {
            let _l = store.lock().unwrap();
            store.save(&j).unwrap();
        }
        assert_eq!(store.load().unwrap().unwrap(), j);
        assert_eq!(j.children("layer"), vec!["c1"]);
        // No temp file is left behind: only the journal and its lock.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["devmapper.json", "devmapper.lock"]);
    }

    #[test]
    fn corrupt_journal_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        fs::write(store.path(), b"{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("devmapper.json"), "{e}");
    }

    #[test]
    fn ids_run_out_cleanly() {
        let mut j = Journal::new("p");
        j.next_id = MAX_THIN_ID;
        assert!(j.allocate_id().is_ok());
        assert!(j.allocate_id().is_err());
    }
}
