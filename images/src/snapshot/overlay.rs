//! The overlay snapshotter: each snapshot is a directory `snapshots/<id>/fs` holding
//! only its own changes; a snapshot's view is its `fs` stacked on its parents' as
//! overlayfs lowerdirs. Metadata (key → id, parent, kind) lives in one JSON file,
//! rewritten atomically under a flock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rpaas_fsutil::FileLock;

use super::{Info, Kind, Mount, Snapshotter, Usage};
use crate::store::write_atomic;
use crate::{Error, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    id: u64,
    parent: Option<String>,
    kind: Kind,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Db {
    next_id: u64,
    snapshots: BTreeMap<String, Meta>,
}

pub struct Overlay {
    root: PathBuf,
}

fn serr(key: &str, reason: impl Into<String>) -> Error {
    Error::Snapshot {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Overlay {
    /// Open (creating) the overlay snapshotter rooted at `root`
    /// (conventionally `<image_root>/snapshots/overlay`).
    pub fn open(root: &Path) -> Result<Overlay> {
        let snaps = root.join("snapshots");
        std::fs::create_dir_all(&snaps).map_err(|e| Error::io("create directory", &snaps, e))?;
        Ok(Overlay {
            root: root.to_path_buf(),
        })
    }

    fn lock(&self) -> Result<FileLock> {
        crate::store::lock(&self.root.join("metadata.lock"))
    }

    fn load(&self) -> Result<Db> {
        let p = self.root.join("metadata.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Other(format!("{}: corrupt metadata: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn save(&self, db: &Db) -> Result<()> {
        let bytes = serde_json::to_vec(db)
            .map_err(|e| Error::Other(format!("encode snapshot metadata: {e}")))?;
        write_atomic(&self.root.join("metadata.json"), &bytes)
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// The `fs` directory of a snapshot (its own layer): where an applier writes.
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        let _l = self.lock()?;
        let db = self.load()?;
        let m = db
            .snapshots
            .get(key)
            .ok_or_else(|| serr(key, "no such snapshot"))?;
        Ok(self.dir(m.id).join("fs"))
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let _l = self.lock()?;
        let mut db = self.load()?;
        if db.snapshots.contains_key(key) {
            return Err(serr(key, "already exists"));
        }
        if let Some(p) = parent {
            match db.snapshots.get(p) {
                Some(m) if m.kind == Kind::Committed => {}
                Some(_) => return Err(serr(key, format!("parent {p} is not committed"))),
                None => return Err(serr(key, format!("parent {p} does not exist"))),
            }
        }
        db.next_id += 1;
        let id = db.next_id;
        let dir = self.dir(id);
        for sub in ["fs", "work"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| Error::io("create directory", &p, e))?;
        }
        db.snapshots.insert(
            key.to_string(),
            Meta {
                id,
                parent: parent.map(str::to_string),
                kind,
            },
        );
        if let Err(e) = self.save(&db) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.mounts_of(&db, key)
    }

    /// Parents' fs dirs, nearest first (overlayfs's lowerdir order).
    fn lowers(&self, db: &Db, mut parent: Option<String>) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        while let Some(p) = parent {
            let m = db
                .snapshots
                .get(&p)
                .ok_or_else(|| serr(&p, "missing parent"))?;
            out.push(self.dir(m.id).join("fs"));
            parent = m.parent.clone();
        }
        Ok(out)
    }

    fn mounts_of(&self, db: &Db, key: &str) -> Result<Vec<Mount>> {
        let m = db
            .snapshots
            .get(key)
            .ok_or_else(|| serr(key, "no such snapshot"))?;
        let dir = self.dir(m.id);
        let lowers = self.lowers(db, m.parent.clone())?;
        let join = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        };
        Ok(match m.kind {
            Kind::Committed => {
                return Err(serr(
                    key,
                    "committed snapshots cannot be mounted; view them",
                ))
            }
            Kind::Active if lowers.is_empty() => vec![Mount {
                kind: "bind".into(),
                source: dir.join("fs"),
                options: vec!["rbind".into(), "rw".into()],
            }],
            Kind::Active => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("workdir={}", dir.join("work").display()),
                    format!("upperdir={}", dir.join("fs").display()),
                    format!("lowerdir={}", join(&lowers)),
                ],
            }],
            Kind::View if lowers.len() <= 1 => vec![Mount {
                kind: "bind".into(),
                source: lowers.first().cloned().unwrap_or_else(|| dir.join("fs")),
                options: vec!["rbind".into(), "ro".into()],
            }],
            Kind::View => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", join(&lowers))],
            }],
        })
    }

    /// Remove snapshot directories that no metadata entry names (a crash between
    /// the metadata update and the directory removal leaves them).
    pub fn remove_orphans(&self) -> Result<Vec<PathBuf>> {
        let _l = self.lock()?;
        let db = self.load()?;
        let ids: std::collections::HashSet<u64> = db.snapshots.values().map(|m| m.id).collect();
        let snaps = self.root.join("snapshots");
        let mut removed = Vec::new();
        for ent in std::fs::read_dir(&snaps)
            .map_err(|e| Error::io("read directory", &snaps, e))?
            .flatten()
        {
            let keep = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| ids.contains(&id));
            if !keep {
                std::fs::remove_dir_all(ent.path())
                    .map_err(|e| Error::io("remove", ent.path(), e))?;
                removed.push(ent.path());
            }
        }
        Ok(removed)
    }
}

impl Snapshotter for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let _l = self.lock()?;
        let db = self.load()?;
        self.mounts_of(&db, key)
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let _l = self.lock()?;
        let mut db = self.load()?;
        if db.snapshots.contains_key(name) {
            return Err(serr(name, "already exists"));
        }
        let mut m = db
            .snapshots
            .remove(key)
            .ok_or_else(|| serr(key, "no such snapshot"))?;
        if m.kind != Kind::Active {
            return Err(serr(key, "only active snapshots can be committed"));
        }
        m.kind = Kind::Committed;
        // The work dir is only for a mounted upper; a committed layer never is one.
        let work = self.dir(m.id).join("work");
        db.snapshots.insert(name.to_string(), m);
        self.save(&db)?;
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        let _l = self.lock()?;
        let mut db = self.load()?;
        let Some(m) = db.snapshots.get(key).cloned() else {
            return Ok(());
        };
        if let Some((child, _)) = db
            .snapshots
            .iter()
            .find(|(_, c)| c.parent.as_deref() == Some(key))
        {
            return Err(serr(key, format!("has child snapshot {child}")));
        }
        db.snapshots.remove(key);
        self.save(&db)?;
        let dir = self.dir(m.id);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove snapshot directory", &dir, e))
    }

    fn stat(&self, key: &str) -> Result<Option<Info>> {
        let _l = self.lock()?;
        let db = self.load()?;
        Ok(db.snapshots.get(key).map(|m| Info {
            key: key.to_string(),
            parent: m.parent.clone(),
            kind: m.kind,
        }))
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let fs = self.upper_dir(key)?;
        let mut u = Usage::default();
        du(&fs, &mut u)?;
        Ok(u)
    }

    fn cleanup(&self) -> Result<Vec<String>> {
        Ok(self
            .remove_orphans()?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect())
    }

    fn walk(&self) -> Result<Vec<Info>> {
        let _l = self.lock()?;
        let db = self.load()?;
        Ok(db
            .snapshots
            .iter()
            .map(|(k, m)| Info {
                key: k.clone(),
                parent: m.parent.clone(),
                kind: m.kind,
            })
            .collect())
    }
}

/// Disk usage like `du`: allocated blocks and inodes, symlinks not followed.
fn du(dir: &Path, u: &mut Usage) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for ent in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let md = ent
            .metadata()
            .map_err(|e| Error::io("stat", ent.path(), e))?;
        u.inodes += 1;
        u.bytes += md.blocks() * 512;
        if md.is_dir() {
            du(&ent.path(), u)?;
        }
    }
    Ok(())
}
