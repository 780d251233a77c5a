//! Placement books on disk, and their recovery from running containers' cgroups.
//!
//! The file is JSON, replaced atomically (temp file in the same directory, fsync, rename,
//! fsync of the directory) so a crash leaves the old or the new books, never half of one.
//! Writers serialise on an flock of a sibling lock file, so two `rpaas-run numa place` at once
//! cannot both take the last cpus.
use std::path::{Path, PathBuf};

use rpaas_fsutil::FileLock;
use serde::{Deserialize, Serialize};

use crate::apply::read_set;
use crate::cpulist::IdSet;
use crate::error::{Error, Result};
use crate::layout::CgroupRoots;
use crate::place::{Placement, Placer};
use crate::topology::Topology;

const VERSION: u32 = 1;
const FILE: &str = "placements.json";

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    placements: Vec<Placement>,
}

/// `<dir>/placements.json` (the CLI uses `<root>/numa`).
#[derive(Debug, Clone)]
pub struct StateFile {
    dir: PathBuf,
}

/// Held while reading-deciding-writing; dropping it unlocks.
pub struct StateLock {
    _lock: FileLock,
}

impl StateFile {
    pub fn new(dir: &Path) -> StateFile {
        StateFile {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Takes the writers' lock (creating the directory if needed).
    pub fn lock(&self) -> Result<StateLock> {
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Write {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join("placements.lock");
        let lock = FileLock::lock(&path).map_err(|source| Error::Write { path, source })?;
        Ok(StateLock { _lock: lock })
    }

    /// The saved placements; none when the file does not exist yet.
    pub fn load(&self) -> Result<Vec<Placement>> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            what: e.to_string(),
        })?;
        if disk.version != VERSION {
            return Err(Error::State {
                path,
                what: format!("version {} (this build reads {VERSION})", disk.version),
            });
        }
        Ok(disk.placements)
    }

    /// Replaces the file atomically with `placements`.
    pub fn save<'a>(&self, placements: impl IntoIterator<Item = &'a Placement>) -> Result<()> {
        let disk = OnDisk {
            version: VERSION,
            placements: placements.into_iter().cloned().collect(),
        };
        let body = serde_json::to_vec_pretty(&disk).map_err(|e| Error::State {
            path: self.path(),
            what: e.to_string(),
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Write {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path();
        rpaas_fsutil::write_atomic(&path, &body, true)
            .map_err(|source| Error::Write { path, source })
    }

    /// Loads the books into a placer for `topo`.
    pub fn placer(&self, topo: Topology) -> Result<Placer> {
        Placer::with_placements(topo, self.load()?).map_err(|e| Error::State {
            path: self.path(),
            what: format!("does not fit this host's topology: {e}"),
        })
    }
}

/// What a running container's cgroup says about its placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub cpus: IdSet,
    pub mems: IdSet,
    /// From the cpu quota (v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, v2 `cpu.max`).
    pub millicores: Option<u64>,
    /// From the memory limit (v1 `memory.limit_in_bytes`, v2 `memory.max`).
    pub memory: Option<u64>,
}

/// Reads a container's cpuset, cpu quota and memory limit.
pub fn observe(roots: &CgroupRoots, id: &str, cgroup: &Path) -> Result<Observed> {
    crate::layout::check_cgroup_path(cgroup)?;
    let cpuset = roots.cpuset_dir(cgroup);
    let mut cpus = read_set(&cpuset.join("cpuset.cpus"))?;
    let mut mems = read_set(&cpuset.join("cpuset.mems"))?;
    if roots.is_v2() {
        // v2: an empty request means "inherit"; what applies is the effective set.
        if cpus.is_empty() {
            cpus = read_set(&cpuset.join("cpuset.cpus.effective"))?;
        }
        if mems.is_empty() {
            mems = read_set(&cpuset.join("cpuset.mems.effective"))?;
        }
    }
    let millicores = match roots.cpu_dir(cgroup) {
        Some(dir) if roots.is_v2() => read_opt(&dir.join("cpu.max"))?.and_then(|t| {
            let mut it = t.split_whitespace();
            let quota = it.next()?.parse::<u64>().ok()?;
            let period = it.next()?.parse::<u64>().ok()?;
            (period > 0).then(|| quota * 1000 / period)
        }),
        Some(dir) => {
            let quota = read_opt(&dir.join("cpu.cfs_quota_us"))?
                .and_then(|t| t.trim().parse::<i64>().ok())
                .filter(|q| *q > 0);
            let period = read_opt(&dir.join("cpu.cfs_period_us"))?
                .and_then(|t| t.trim().parse::<u64>().ok())
                .filter(|p| *p > 0);
            quota.zip(period).map(|(q, p)| q as u64 * 1000 / p)
        }
        None => None,
    };
    let mem_file = if roots.is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    // v1 spells "unlimited" as a page-rounded i64::MAX; anything past 2^60 is that.
    let memory = read_opt(&roots.memory_dir(cgroup).join(mem_file))?
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|m| *m < 1 << 60);
    Ok(Observed {
        id: id.to_string(),
        cpus,
        mems,
        millicores,
        memory,
    })
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Rebuilds the books from what running containers' cgroups say.
///
/// A container is on node N when its mems are {N} and its cpus lie in N. It is exclusive when
/// its cpus are a strict part of the node, shared with no other container there, and its cpu
/// quota is exactly that many cpus (or unknown). Without a quota a shared container counts 0
/// millicores and without a memory limit 0 bytes (logged): the facade sets both from the
/// request so a rebuild finds the same books.
pub fn rebuild(topo: Topology, observed: Vec<Observed>) -> Result<Placer> {
    let mut placements = Vec::with_capacity(observed.len());
    for o in &observed {
        let node = match o.mems.first() {
            Some(n) if o.mems.len() == 1 => topo
                .node(n)
                .filter(|node| o.cpus.is_subset(&node.cpus))
                .map(|node| node.id),
            _ => None,
        };
        let exclusive = node.is_some_and(|n| {
            let node_cpus = topo.node(n).map(|x| x.cpus.clone()).unwrap_or_default();
            let alone = observed
                .iter()
                .filter(|other| other.id != o.id)
                .all(|other| other.cpus.is_disjoint(&o.cpus));
            let whole = o.millicores.is_none_or(|m| m == o.cpus.len() as u64 * 1000);
            alone && whole && o.cpus != node_cpus
        });
        let millicores = match o.millicores {
            Some(m) => m,
            None if exclusive => o.cpus.len() as u64 * 1000,
            None => {
                tracing::warn!(id = o.id, "no cpu quota in its cgroup: counted as 0 cpus");
                0
            }
        };
        if o.memory.is_none() {
            tracing::warn!(
                id = o.id,
                "no memory limit in its cgroup: counted as 0 bytes"
            );
        }
        placements.push(Placement {
            id: o.id.clone(),
            node,
            cpus: o.cpus.clone(),
            mems: o.mems.clone(),
            exclusive,
            millicores,
            memory: o.memory.unwrap_or(0),
        });
    }
    Placer::with_placements(topo, placements)
}
