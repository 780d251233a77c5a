//! The content store: `<root>/blobs/sha256/<hex>`, plus the refs index.
//!
//! A blob is written to `<root>/ingest/<hex>.partial`, its size and sha256 checked,
//! fsynced, then renamed into `blobs/` — so anything under `blobs/` is complete and
//! verified, and a killed pull leaves only a `.partial`. One `flock` per digest makes
//! two concurrent pulls of the same blob wait for each other instead of racing.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rpaas_fsutil::FileLock;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a ref (an image name) points at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefEntry {
    /// Digest of the image manifest.
    pub manifest: String,
    /// Digest of the image config.
    pub config: String,
    /// Layer blobs, bottom first.
    pub layers: Vec<String>,
    /// Chain ids (the committed snapshot names), bottom first.
    pub chain_ids: Vec<String>,
    /// Where it came from (registry reference or import path), for `ls`.
    #[serde(default)]
    pub source: String,
}

pub struct Store {
    root: PathBuf,
}

/// Check a digest is `sha256:<64 lowercase hex>` and return the hex part.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let bad = |why: &str| Error::Content {
        digest: digest.to_string(),
        reason: why.to_string(),
    };
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| bad("only sha256 digests are supported"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("malformed sha256 digest"));
    }
    Ok(hex)
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["blobs/sha256", "ingest"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Content {
                digest: digest.to_string(),
                reason: "not in the content store".into(),
            },
            _ => Error::io("read blob", &p, e),
        })
    }

    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let p = self.blob_path(digest)?;
        File::open(&p).map_err(|e| Error::io("open blob", &p, e))
    }

    /// Start writing `digest`. None when the blob is already present (possibly
    /// because a concurrent writer finished it while we waited for the lock).
    pub fn writer(&self, digest: &str, size: Option<u64>) -> Result<Option<BlobWriter>> {
        let hex = digest_hex(digest)?.to_string();
        if self.has(digest) {
            return Ok(None);
        }
        let lock_path = self.root.join("ingest").join(format!("{hex}.lock"));
        let lock = lock(&lock_path)?;
        if self.has(digest) {
            return Ok(None);
        }
        let tmp = self.root.join("ingest").join(format!("{hex}.partial"));
        let file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        Ok(Some(BlobWriter {
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            digest: digest.to_string(),
            size,
            tmp,
            dest: self.blob_path(digest)?,
            _lock: lock,
        }))
    }

    /// Store `bytes` as `digest` (verified).
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if let Some(mut w) = self.writer(digest, Some(bytes.len() as u64))? {
            w.write_all(bytes)
                .map_err(|e| Error::io("write blob", &w.tmp, e))?;
            w.commit()?;
        }
        Ok(())
    }

    /// Store `bytes` under their own digest and return it.
    pub fn put_auto(&self, bytes: &[u8]) -> Result<String> {
        let d = sha256_digest(bytes);
        self.put(&d, bytes)?;
        Ok(d)
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    /// Hold the refs lock for a read-modify-write of the index.
    fn lock_refs(&self) -> Result<FileLock> {
        lock(&self.root.join("refs.lock"))
    }

    pub fn refs(&self) -> Result<BTreeMap<String, RefEntry>> {
        let p = self.refs_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Other(format!("{}: corrupt refs index: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    pub fn get_ref(&self, name: &str) -> Result<RefEntry> {
        self.refs()?
            .remove(name)
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    pub fn set_ref(&self, name: &str, entry: RefEntry) -> Result<()> {
        let _l = self.lock_refs()?;
        let mut refs = self.refs()?;
        refs.insert(name.to_string(), entry);
        self.write_refs(&refs)
    }

    /// Remove a ref; Ok(false) when it did not exist.
    pub fn remove_ref(&self, name: &str) -> Result<bool> {
        let _l = self.lock_refs()?;
        let mut refs = self.refs()?;
        let had = refs.remove(name).is_some();
        self.write_refs(&refs)?;
        Ok(had)
    }

    fn write_refs(&self, refs: &BTreeMap<String, RefEntry>) -> Result<()> {
        let p = self.refs_path();
        let bytes = serde_json::to_vec_pretty(refs)
            .map_err(|e| Error::Other(format!("encode refs: {e}")))?;
        write_atomic(&p, &bytes)
    }

    /// Remove every blob no ref uses (manifests, configs, layers) and stale ingest files.
    /// Returns the digests removed.
    pub fn gc(&self) -> Result<Vec<String>> {
        let _l = self.lock_refs()?;
        let mut keep: HashSet<String> = HashSet::new();
        for r in self.refs()?.values() {
            keep.insert(r.manifest.clone());
            keep.insert(r.config.clone());
            keep.extend(r.layers.iter().cloned());
        }
        let dir = self.root.join("blobs/sha256");
        let mut removed = Vec::new();
        for ent in std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let ent = ent.map_err(|e| Error::io("read directory", &dir, e))?;
            let d = format!("sha256:{}", ent.file_name().to_string_lossy());
            if !keep.contains(&d) {
                std::fs::remove_file(ent.path()).map_err(|e| Error::io("remove", ent.path(), e))?;
                removed.push(d);
            }
        }
        // Partial downloads nobody holds a lock on are leftovers of killed pulls.
        let ingest = self.root.join("ingest");
        for ent in std::fs::read_dir(&ingest)
            .map_err(|e| Error::io("read directory", &ingest, e))?
            .flatten()
        {
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".partial") {
                let lock = ingest.join(format!("{hex}.lock"));
                match FileLock::try_lock(&lock, false) {
                    Ok(Some(held)) => {
                        let _ = std::fs::remove_file(ent.path());
                        drop(held);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        let _ = std::fs::remove_file(ent.path());
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Write `bytes` to `path` atomically: temp file in the same dir, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replace(path, bytes, true)
}

/// Replace `path` atomically for readers; fsync only when it must survive a crash.
pub fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    rpaas_fsutil::write_atomic(path, bytes, durable).map_err(|e| Error::io("replace", path, e))
}

/// Wait for the exclusive lock on `path` (created if missing).
pub(crate) fn lock(path: &Path) -> Result<FileLock> {
    FileLock::lock(path).map_err(|e| Error::io("lock", path, e))
}

/// A blob being written; dropped without `commit` it leaves nothing in `blobs/`.
pub struct BlobWriter {
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    tmp: PathBuf,
    dest: PathBuf,
    _lock: FileLock,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Start over (a retried download that cannot resume).
    pub fn reset(&mut self) -> Result<()> {
        let f = File::create(&self.tmp).map_err(|e| Error::io("truncate", &self.tmp, e))?;
        self.file = Some(f);
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Verify size and digest, then make the blob visible.
    pub fn commit(mut self) -> Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Other("blob writer already closed".into()))?;
        if let Some(size) = self.size {
            if size != self.written {
                return Err(Error::Content {
                    digest: self.digest.clone(),
                    reason: format!(
                        "size mismatch: descriptor says {size} bytes, got {}",
                        self.written
                    ),
                });
            }
        }
        let actual = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        );
        if actual != self.digest {
            return Err(Error::Content {
                digest: self.digest.clone(),
                reason: format!("digest mismatch: content hashes to {actual}"),
            });
        }
        file.sync_all()
            .map_err(|e| Error::io("fsync", &self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io("rename into place", &self.dest, e))?;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer closed"))?;
        // Refuse early when more arrives than the descriptor promised (a lying manifest).
        if let Some(size) = self.size {
            if self.written + buf.len() as u64 > size {
                return Err(std::io::Error::other(format!(
                    "blob {} is larger than the {size} bytes its descriptor says",
                    self.digest
                )));
            }
        }
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not committed (or failed verification): the partial file must not linger.
        if self.file.is_some() || !self.dest.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl AsFd for BlobWriter {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.file {
            Some(f) => f.as_fd(),
            None => self._lock.as_fd(),
        }
    }
}
