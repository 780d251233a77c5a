//! Where the cpuset / memory / cpu controllers live: cgroup v2 (one unified tree) or v1 (one
//! mount per controller, as on this project's hosts: hybrid with v1 controllers).
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The cgroup mounts the crate writes to and reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRoots {
    /// A cgroup2 mount holding the cpuset and memory controllers.
    V2 { root: PathBuf },
    /// Separate v1 hierarchies. `cpu` is only read (for the quota, at rebuild).
    V1 {
        cpuset: PathBuf,
        memory: PathBuf,
        cpu: Option<PathBuf>,
    },
}

impl CgroupRoots {
    /// Recognises the layout under `base` (normally `/sys/fs/cgroup`): a cgroup2 root has
    /// `cgroup.controllers`; a v1/hybrid layout has `cpuset/` and `memory/` mounts. Hybrid
    /// hosts count as v1 because the controllers we need are bound there.
    pub fn detect(base: &Path) -> Result<CgroupRoots> {
        if base.join("cgroup.controllers").exists() {
            return Ok(CgroupRoots::V2 {
                root: base.to_path_buf(),
            });
        }
        let cpuset = base.join("cpuset");
        let memory = base.join("memory");
        if !cpuset.join("cpuset.cpus").exists() {
            return Err(Error::Layout {
                path: base.to_path_buf(),
                what: "neither cgroup.controllers (v2) nor cpuset/cpuset.cpus (v1)".into(),
            });
        }
        if !memory.join("memory.limit_in_bytes").exists() {
            return Err(Error::Layout {
                path: base.to_path_buf(),
                what: "v1 cpuset found but no memory/memory.limit_in_bytes".into(),
            });
        }
        // Debian mounts cpu and cpuacct separately; others co-mount them as "cpu,cpuacct".
        let cpu = ["cpu", "cpu,cpuacct"]
            .iter()
            .map(|d| base.join(d))
            .find(|d| d.join("cpu.cfs_quota_us").exists());
        Ok(CgroupRoots::V1 {
            cpuset,
            memory,
            cpu,
        })
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupRoots::V2 { .. })
    }

    /// The directory holding `cpuset.*` for a cgroup path like `/rpaas/web-1`.
    pub fn cpuset_dir(&self, cgroup: &Path) -> PathBuf {
        match self {
            CgroupRoots::V2 { root } => join_cgroup(root, cgroup),
            CgroupRoots::V1 { cpuset, .. } => join_cgroup(cpuset, cgroup),
        }
    }

    /// The directory holding `memory.*`.
    pub fn memory_dir(&self, cgroup: &Path) -> PathBuf {
        match self {
            CgroupRoots::V2 { root } => join_cgroup(root, cgroup),
            CgroupRoots::V1 { memory, .. } => join_cgroup(memory, cgroup),
        }
    }

    /// The directory holding the cpu quota files, if the controller is there.
    pub fn cpu_dir(&self, cgroup: &Path) -> Option<PathBuf> {
        match self {
            CgroupRoots::V2 { root } => Some(join_cgroup(root, cgroup)),
            CgroupRoots::V1 { cpu, .. } => cpu.as_ref().map(|c| join_cgroup(c, cgroup)),
        }
    }
}

/// Cgroup paths are absolute within their hierarchy ("/rpaas/x"); `Path::join` would replace
/// the root with them, so strip the leading slash. `..` components are refused by the callers
/// that take user input (see `check_cgroup_path`).
pub fn join_cgroup(root: &Path, cgroup: &Path) -> PathBuf {
    root.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

/// Refuses cgroup paths that would leave the hierarchy or name its root.
pub fn check_cgroup_path(cgroup: &Path) -> Result<()> {
    use std::path::Component;
    let ok = cgroup
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let has_name = cgroup
        .components()
        .any(|c| matches!(c, Component::Normal(_)));
    if ok && has_name {
        Ok(())
    } else {
        Err(Error::Layout {
            path: cgroup.to_path_buf(),
            what: "cgroup path must be a plain path below the root (no '..', not the root)".into(),
        })
    }
}
