//! Snapshotters with containerd's semantics.
//!
//! A snapshot is identified by a `key`. `prepare(key, parent)` makes an *active*
//! (writable) snapshot on top of a committed parent; `commit(name, key)` turns an
//! active snapshot into a committed, read-only one called `name`; `view` makes a
//! read-only active snapshot. One committed snapshot exists per layer chain (its
//! name is the chain id) and is shared by all containers of an image; a container
//! is an active snapshot on top of it.

pub mod devmapper;
pub mod overlay;

use std::path::PathBuf;

use crate::Result;

/// Whether a snapshot can still be written (active) or is frozen (committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Active,
    View,
    Committed,
}

/// What `stat`/`walk` report about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
}

/// Disk usage of one snapshot (its own layer only, not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// One mount to perform, as in containerd's `mount.Mount`: `mount -t kind -o options source target`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub kind: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}

pub trait Snapshotter: Send + Sync {
    /// Name of the backend ("overlay", "devmapper").
    fn name(&self) -> &'static str;

    /// A writable snapshot `key` on top of the committed `parent` (None: empty).
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// A read-only snapshot `key` on top of the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;

    /// The mounts of an existing active or view snapshot.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Freeze the active snapshot `key` as the committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<()>;

    /// Remove a snapshot; refused while it has children. Removing a missing key is Ok.
    fn remove(&self, key: &str) -> Result<()>;

    /// Information about one snapshot, None when absent.
    fn stat(&self, key: &str) -> Result<Option<Info>>;

    /// Disk usage of one snapshot.
    fn usage(&self, key: &str) -> Result<Usage>;

    /// All snapshots.
    fn walk(&self) -> Result<Vec<Info>>;

    /// Remove what a process killed in the middle of `prepare` or `remove`
    /// left without a metadata entry; returns what was removed. Backends that
    /// roll their own journal forward or back when opened have nothing to do.
    fn cleanup(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
