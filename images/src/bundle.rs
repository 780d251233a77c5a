//! Image → runnable OCI bundle: `DIR/rootfs` mounted from a new active snapshot on
//! the image's top chain, volumes and injected files in its writable layer, and
//! `DIR/config.json` from the image config.

use std::path::{Path, PathBuf};

use crate::fsroot::Root;
use crate::image::ImageStore;
use crate::inject::{inject_at, FileSpec};
use crate::{Error, Result};

/// The active snapshot key of the bundle at `dir` (derived from its absolute path,
/// so `remove` finds it without any other record).
pub fn bundle_key(dir: &Path) -> Result<String> {
    let abs =
        std::fs::canonicalize(dir).map_err(|e| Error::io("resolve bundle directory", dir, e))?;
    let d = crate::store::sha256_digest(abs.as_os_str().as_encoded_bytes());
    Ok(format!("bundle-{}", &d["sha256:".len()..][..32]))
}

impl ImageStore {
    /// Prepare `dir` as a bundle of image `name`. Undone completely on error.
    pub fn create_bundle(&self, name: &str, dir: &Path, files: &[FileSpec]) -> Result<PathBuf> {
        let top = self.unpack(name)?;
        let config = self.config(name)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create bundle directory", dir, e))?;
        let key = bundle_key(dir)?;
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| Error::io("create directory", &rootfs, e))?;
        let mounts = self.snapshotter.prepare(&key, Some(&top))?;
        if let Err(e) = crate::mount::mount_all(&mounts, &rootfs) {
            let _ = self.snapshotter.remove(&key);
            return Err(e);
        }
        match self.fill_bundle(name, &config, dir, &rootfs, files) {
            Ok(p) => Ok(p),
            Err(e) => {
                let _ = crate::mount::unmount_all(&rootfs);
                let _ = self.snapshotter.remove(&key);
                let _ = std::fs::remove_dir(&rootfs);
                let _ = std::fs::remove_file(dir.join("config.json"));
                Err(e)
            }
        }
    }

    fn fill_bundle(
        &self,
        name: &str,
        config: &crate::convert::ImageConfigFile,
        dir: &Path,
        rootfs: &Path,
        files: &[FileSpec],
    ) -> Result<PathBuf> {
        let root = Root::open(rootfs)?;
        for v in crate::convert::volumes(config, name)? {
            root.mkdir_all(Some(&v))?;
        }
        for f in files {
            inject_at(&root, f)?;
        }
        let hostname = dir
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(63).collect::<String>())
            .unwrap_or_else(|| "rpaas".into());
        let spec = crate::convert::runtime_spec(config, rootfs, name, &hostname)?;
        let path = dir.join("config.json");
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::Other(format!("encode config.json: {e}")))?;
        // No fsync: after a crash the rootfs mount is gone too, so the bundle has to be
        // prepared again anyway; readers still never see a half-written file.
        crate::store::write_replace(&path, &bytes, false)?;
        Ok(path)
    }

    /// Undo [`create_bundle`](Self::create_bundle): unmount, drop the snapshot, remove
    /// `rootfs` and `config.json` (the directory itself stays).
    pub fn remove_bundle(&self, dir: &Path) -> Result<()> {
        let key = bundle_key(dir)?;
        let rootfs = dir.join("rootfs");
        crate::mount::unmount_all(&rootfs)?;
        self.snapshotter.remove(&key)?;
        match std::fs::remove_dir(&rootfs) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &rootfs, e)),
        }
        match std::fs::remove_file(dir.join("config.json")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", dir.join("config.json"), e)),
        }
    }
}
