//! Writable-layer usage. Overlay: the layer's upper directory, walked like
//! `du` (allocated blocks, inodes) with a bound on the entries visited and
//! the result cached per layer, so a sweep every few seconds does not walk
//! every layer every time. dm-thin: the thin device's mapped blocks from its
//! status line (the snapshotter's `usage`), no walk.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rpaas_images::ImageStore;
use serde::Serialize;

use crate::error::{Error, Result};

/// How long a walked overlay layer's usage is reused.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10);
/// A walk stops after this many entries (the usage is then a lower bound,
/// `complete: false`): one huge layer must not stall a whole sweep.
pub const MAX_WALK_ENTRIES: u64 = 1_000_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsMetrics {
    /// The snapshotter: "overlay" or "devmapper".
    pub driver: String,
    /// "major:minor" of the filesystem holding the layer (overlay), or of
    /// the thin device (devmapper) when known.
    pub device: String,
    /// Bytes the layer takes (allocated blocks; mapped blocks on dm-thin).
    pub usage_bytes: u64,
    /// Inodes the layer takes (overlay; 0 on dm-thin, where only blocks are known).
    pub inodes_used: u64,
    /// Size and inodes of the filesystem holding the layer (statvfs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// False when the walk hit [`MAX_WALK_ENTRIES`].
    pub complete: bool,
    /// Seconds since this was measured (0 when measured by this call).
    pub age_seconds: f64,
}

struct Cached {
    at: Instant,
    m: FsMetrics,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Cached>> {
    static C: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The usage of snapshot `key`; None if the snapshot is gone.
pub fn read(images: &ImageStore, key: &str, max_age: Duration) -> Result<Option<FsMetrics>> {
    let snap = &images.snapshotter;
    if snap.stat(key)?.is_none() {
        return Ok(None);
    }
    if snap.name() != "overlay" {
        let u = snap.usage(key)?;
        return Ok(Some(FsMetrics {
            driver: snap.name().to_string(),
            device: String::new(),
            usage_bytes: u.bytes,
            inodes_used: u.inodes,
            complete: true,
            ..FsMetrics::default()
        }));
    }
    let upper = snap
        .mounts(key)?
        .iter()
        .flat_map(|m| m.options.iter())
        .find_map(|o| o.strip_prefix("upperdir=").map(PathBuf::from))
        .ok_or_else(|| Error::NotFound {
            what: format!("upper directory of snapshot {key}"),
        })?;
    Ok(Some(overlay_usage(&upper, max_age)?))
}

/// The (possibly cached) usage of one overlay upper dir.
pub fn overlay_usage(upper: &Path, max_age: Duration) -> Result<FsMetrics> {
    let now = Instant::now();
    if let Ok(c) = cache().lock() {
        if let Some(hit) = c.get(upper) {
            let age = now.duration_since(hit.at);
            if age < max_age {
                let mut m = hit.m.clone();
                m.age_seconds = age.as_secs_f64();
                return Ok(m);
            }
        }
    }
    let md = std::fs::symlink_metadata(upper).map_err(|e| Error::io("stat", upper, e))?;
    let mut m = FsMetrics {
        driver: "overlay".into(),
        device: format!(
            "{}:{}",
            nix::sys::stat::major(md.dev()),
            nix::sys::stat::minor(md.dev())
        ),
        complete: true,
        ..FsMetrics::default()
    };
    let mut left = MAX_WALK_ENTRIES;
    walk(upper, &mut m, &mut left)?;
    m.complete = left > 0;
    if let Ok(vfs) = nix::sys::statvfs::statvfs(upper) {
        // fsblkcnt_t and friends are u64 on Linux: no casts.
        m.capacity_bytes = Some(vfs.blocks().saturating_mul(vfs.fragment_size()));
        m.inodes_total = Some(vfs.files());
        m.inodes_free = Some(vfs.files_free());
    }
    if let Ok(mut c) = cache().lock() {
        // Layers removed since are dropped once they are well past their age.
        c.retain(|_, v| now.duration_since(v.at) < max_age.max(DEFAULT_MAX_AGE) * 6);
        c.insert(
            upper.to_path_buf(),
            Cached {
                at: now,
                m: m.clone(),
            },
        );
    }
    Ok(m)
}

/// `du`-like: allocated blocks and inodes below `dir` (not `dir` itself),
/// symlinks not followed, at most `left` entries. Entries that vanish while
/// the container writes are skipped.
fn walk(dir: &Path, m: &mut FsMetrics, left: &mut u64) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for ent in rd {
        if *left == 0 {
            return Ok(());
        }
        let Ok(ent) = ent else { continue };
        let Ok(md) = ent.metadata() else { continue };
        *left -= 1;
        m.inodes_used += 1;
        m.usage_bytes += md.blocks() * 512;
        if md.is_dir() {
            walk(&ent.path(), m, left)?;
        }
    }
    Ok(())
}
