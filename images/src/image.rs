//! The image store as a whole: refs + blobs + a snapshotter. Registers images whose
//! blobs are in the store, unpacks them into committed snapshots (one per layer
//! chain), prepares bundles, and collects garbage.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::apply::{apply_layer, Limits, WhiteoutMode};
use crate::convert::ImageConfigFile;
use crate::manifest::{self, Parsed};
use crate::snapshot::{Kind, Mount, Snapshotter};
use crate::store::{RefEntry, Store};
use crate::{Error, Result};

pub struct ImageStore {
    pub store: Store,
    pub snapshotter: Box<dyn Snapshotter>,
    pub limits: Limits,
    root: PathBuf,
}

/// What `gc` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub blobs: Vec<String>,
    pub snapshots: Vec<String>,
}

impl ImageStore {
    /// The store at `root` with the overlay snapshotter (`<root>/snapshots/overlay`).
    pub fn open_overlay(root: &Path) -> Result<ImageStore> {
        let snap = crate::snapshot::overlay::Overlay::open(&root.join("snapshots/overlay"))?;
        Self::open(root, Box::new(snap))
    }

    pub fn open(root: &Path, snapshotter: Box<dyn Snapshotter>) -> Result<ImageStore> {
        Ok(ImageStore {
            store: Store::open(root)?,
            snapshotter,
            limits: Limits::default(),
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Record `name` → the image whose manifest `manifest_digest` (and its config) is
    /// already in the store. Layers need not be present yet.
    pub fn register(&self, name: &str, manifest_digest: &str, source: &str) -> Result<RefEntry> {
        let bytes = self.store.read(manifest_digest)?;
        let m = match manifest::parse(&bytes, None, manifest_digest)? {
            Parsed::Manifest(m) => m,
            Parsed::Index(_) => {
                return Err(Error::Content {
                    digest: manifest_digest.to_string(),
                    reason: "is an index; register the platform manifest".into(),
                })
            }
        };
        let config = self.config_of(&m.config.digest, name)?;
        let diff_ids = config
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        if diff_ids.len() != m.layers.len() {
            return Err(Error::Config {
                reference: name.to_string(),
                field: "rootfs.diff_ids".into(),
                reason: format!("{} diff ids for {} layers", diff_ids.len(), m.layers.len()),
            });
        }
        let entry = RefEntry {
            manifest: manifest_digest.to_string(),
            config: m.config.digest.clone(),
            layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
            chain_ids: manifest::chain_ids(&diff_ids),
            source: source.to_string(),
        };
        self.store.set_ref(name, entry.clone())?;
        Ok(entry)
    }

    fn config_of(&self, digest: &str, name: &str) -> Result<ImageConfigFile> {
        ImageConfigFile::parse(&self.store.read(digest)?, name)
    }

    /// The image config of `name`.
    pub fn config(&self, name: &str) -> Result<ImageConfigFile> {
        let r = self.store.get_ref(name)?;
        self.config_of(&r.config, name)
    }

    /// Unpack every layer of `name` not yet unpacked; returns the top chain id
    /// (the committed snapshot containers are prepared on).
    pub fn unpack(&self, name: &str) -> Result<String> {
        let r = self.store.get_ref(name)?;
        // Fast path (every create of a prefetched image): a committed top chain
        // implies all below it, since only committed snapshots can be parents.
        if let Some(top) = r.chain_ids.last() {
            if matches!(self.snapshotter.stat(top)?, Some(i) if i.kind == Kind::Committed) {
                return Ok(top.clone());
            }
        }
        let config = self.config_of(&r.config, name)?;
        let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut parent: Option<String> = None;
        for (i, chain) in r.chain_ids.iter().enumerate() {
            if self.snapshotter.stat(chain)?.is_none() {
                self.unpack_layer(&r.layers[i], &diff_ids[i], chain, parent.as_deref())?;
            }
            parent = Some(chain.clone());
        }
        parent.ok_or_else(|| Error::Config {
            reference: name.to_string(),
            field: "layers".into(),
            reason: "image has no layers".into(),
        })
    }

    pub(crate) fn unpack_layer(
        &self,
        blob: &str,
        diff_id: &str,
        chain: &str,
        parent: Option<&str>,
    ) -> Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = format!("extract-{}-{nanos}-{chain}", std::process::id());
        let mounts = self.snapshotter.prepare(&key, parent)?;
        let res = self.apply_into(&mounts, blob, diff_id);
        let res = res.and_then(|_| self.snapshotter.commit(chain, &key));
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.snapshotter.remove(&key);
                // Another process committed the same chain meanwhile: that is success.
                if matches!(self.snapshotter.stat(chain), Ok(Some(i)) if i.kind == Kind::Committed)
                {
                    return Ok(());
                }
                Err(e)
            }
        }
    }

    fn apply_into(&self, mounts: &[Mount], blob: &str, diff_id: &str) -> Result<()> {
        let file = self.store.open_blob(blob)?;
        let stats = match direct_dir(mounts) {
            // overlay: write the layer straight into its own upper dir, no mount needed.
            Some(dir) => apply_layer(&dir, file, WhiteoutMode::Overlay, self.limits, blob)?,
            None => {
                let tmp = self.root.join("tmpmounts").join(blob.replace(':', "-"));
                std::fs::create_dir_all(&tmp)
                    .map_err(|e| Error::io("create directory", &tmp, e))?;
                crate::mount::mount_all(mounts, &tmp)?;
                let r = apply_layer(&tmp, file, WhiteoutMode::Direct, self.limits, blob);
                let u = crate::mount::unmount_all(&tmp);
                let _ = std::fs::remove_dir(&tmp);
                u?;
                r?
            }
        };
        if stats.diff_id != diff_id {
            return Err(Error::Content {
                digest: blob.to_string(),
                reason: format!(
                    "uncompressed content hashes to {}, the config's diff id is {diff_id}",
                    stats.diff_id
                ),
            });
        }
        Ok(())
    }

    /// Remove the ref `name` (content stays until `gc`).
    pub fn remove(&self, name: &str) -> Result<()> {
        if !self.store.remove_ref(name)? {
            return Err(Error::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// Remove blobs no ref uses, and committed snapshots no ref and no other snapshot
    /// (a container's active one) needs.
    pub fn gc(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let keep: HashSet<String> = self
            .store
            .refs()?
            .values()
            .flat_map(|r| r.chain_ids.clone())
            .collect();
        // Extraction snapshots of unpacks that were killed (their process is gone).
        for i in self.snapshotter.walk()? {
            if i.kind == Kind::Active && extractor_is_dead(&i.key) {
                self.snapshotter.remove(&i.key)?;
                report.snapshots.push(i.key);
            }
        }
        loop {
            let all = self.snapshotter.walk()?;
            let parents: HashSet<&str> = all.iter().filter_map(|i| i.parent.as_deref()).collect();
            let victims: Vec<String> = all
                .iter()
                .filter(|i| {
                    i.kind == Kind::Committed
                        && !keep.contains(&i.key)
                        && !parents.contains(i.key.as_str())
                })
                .map(|i| i.key.clone())
                .collect();
            if victims.is_empty() {
                break;
            }
            for v in victims {
                self.snapshotter.remove(&v)?;
                report.snapshots.push(v);
            }
        }
        report.blobs = self.store.gc()?;
        Ok(report)
    }
}

/// `extract-<pid>-…` keys name the unpacking process; true when it no longer runs.
fn extractor_is_dead(key: &str) -> bool {
    key.strip_prefix("extract-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// The directory an applier can write into without mounting: an overlay's upperdir,
/// or a writable bind mount's source (a snapshot with no parent).
fn direct_dir(mounts: &[Mount]) -> Option<PathBuf> {
    let [m] = mounts else { return None };
    match m.kind.as_str() {
        "overlay" => m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from),
        "bind" if !m.options.iter().any(|o| o == "ro") => Some(m.source.clone()),
        _ => None,
    }
}
