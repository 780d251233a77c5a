//! Container cgroups on cgroup v1 (including the hybrid layout) and v2.
//!
//! [`Cgroup`] is a cheap handle (an id and a path); every method does the minimum of file
//! operations, because create/apply run on the container-start hot path that we benchmark
//! against crun. The layout is detected once per process ([`layout`]).
//!
//! Why files are written directly rather than through cgroups-rs 0.5.1 (the crate is kept for
//! its v1/v2 vocabulary, but its fs API is avoided on these paths):
//! - `cgroups_rs::fs::Cgroup::new/load` re-parses /proc/self/mountinfo and statfs()es
//!   /sys/fs/cgroup on every call (`hierarchies::auto()`), which is pure overhead per container;
//! - `MemController::set_swappiness` writes the swappiness into `memory.swap.max` on v2 (a swap
//!   limit of e.g. 60 bytes), so it must never be called there;
//! - its stat readers swallow every error with `unwrap_or(0)`, so a missing controller and a
//!   zero counter look the same, and read many files we do not report;
//! - its errors do not carry the OCI field, which our users need.
//!
//! Each direct write is one open+write of one interface file, as the kernel documents them
//! (Documentation/admin-guide/cgroup-v1/*.rst and cgroup-v2.rst).

mod devices;
mod files;
mod layout;
mod stats;
mod tree;
mod v1;
mod v2;

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

pub use devices::default_device_rules;
pub use layout::{layout, Hierarchy, Layout};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Psi, PsiData, PsiStats, Stats, Throttling,
};
pub use v2::{blkio_to_io_weight, shares_to_weight};

use crate::{Error, Result};

/// Name prefix of a container's cgroup when the spec gives no `linux.cgroupsPath`: it is
/// "/rpaas-<id>" at the root of every hierarchy (runc's default is "/<id>"). Flat on purpose: a
/// shared parent cost a mkdir and an rmdir per hierarchy per container (11 of each on this
/// host's v1 layout, and the parent mkdir follows a failed child mkdir), and made concurrent
/// creates and deletes race over the parent.
pub const DEFAULT_PREFIX: &str = "rpaas-";
/// The shared parent of earlier builds ("/rpaas/<id>"): their containers keep their recorded
/// paths, and `gc` and `delete` still clean up there.
pub const LEGACY_PARENT: &str = "rpaas";

/// The default cgroup path of container `id`: "/rpaas-<id>".
pub fn default_path(id: &str) -> String {
    format!("/{DEFAULT_PREFIX}{id}")
}

/// A container's cgroup: the same relative path in every hierarchy of the host's layout.
#[derive(Debug, Clone)]
pub struct Cgroup {
    id: String,
    /// Normalised, absolute inside the hierarchy: "/rpaas-web-1".
    path: String,
    layout: &'static Layout,
}

impl Cgroup {
    /// `cgroups_path` is the spec's `linux.cgroupsPath`. Absolute ("/a/b") and relative ("a/b")
    /// paths are both taken under each hierarchy root (the brief's reading of runc; the
    /// runtime-spec leaves relative paths to the runtime). `None` gives [`default_path`].
    pub fn new(id: &str, cgroups_path: Option<&str>) -> Result<Cgroup> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::spec("id", format!("{id:?} cannot name a cgroup")));
        }
        let path = match cgroups_path {
            Some(p) => normalize(p)?,
            None => default_path(id),
        };
        Ok(Cgroup {
            id: id.to_string(),
            path,
            layout: layout()?,
        })
    }

    /// The container id this handle was made for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cgroup path inside the hierarchy ("/rpaas-web-1").
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host layout this handle works on.
    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    fn rel(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    /// Every directory the cgroup has (or will have) on the host, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.layout
            .roots()
            .into_iter()
            .map(|r| r.join(self.rel()))
            .collect()
    }

    /// The cgroup's directory on the cgroup2 tree, if the host has one: the only dir on v2, the
    /// unified one on hybrid. On v2 a directory fd of it can be given to clone3's
    /// CLONE_INTO_CGROUP, which then replaces [`Cgroup::add_pid`]; on hybrid it only places the
    /// child in the cgroup2 tree, the v1 hierarchies still need `add_pid`.
    pub fn cgroup2_dir(&self) -> Option<PathBuf> {
        match self.layout {
            Layout::V2 { root, .. } => Some(root.join(self.rel())),
            Layout::V1 { unified, .. } => unified.as_ref().map(|u| u.join(self.rel())),
        }
    }

    /// Makes the directory in every hierarchy (v1: every mounted one including name=systemd,
    /// plus the unified dir on hybrid). On v1 the new cpuset dirs get cpus/mems from their
    /// parent; on v2 the ancestors get the controllers enabled in `cgroup.subtree_control`.
    pub fn create(&self) -> Result<()> {
        match self.layout {
            Layout::V1 { .. } => v1::create(self.layout, self.rel()),
            Layout::V2 { root, controllers } => v2::create(root, controllers, self.rel()),
        }
    }

    /// Applies `linux.resources` (create) or a subset of them (`update`): only fields present
    /// in `res` are written.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        validate(res, "linux.resources")?;
        match self.layout {
            Layout::V1 { .. } => v1::apply(self.layout, self.rel(), res),
            Layout::V2 { root, controllers } => v2::apply(&root.join(self.rel()), controllers, res),
        }
    }

    /// Moves `pid` (a whole process) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        for dir in self.dirs() {
            files::write(&dir, "cgroup.procs", &value, "cgroup add pid")?;
        }
        Ok(())
    }

    /// The directory process lists, freezing and stats are read from: v1's freezer hierarchy
    /// (what pause acts on), else the first controller hierarchy; the v2 dir.
    fn main_dir(&self) -> Result<PathBuf> {
        let root = match self.layout {
            Layout::V1 { hierarchies, .. } => self
                .layout
                .v1_mount("freezer")
                .or_else(|| self.layout.v1_mount("pids"))
                .or_else(|| hierarchies.first().map(|h| h.mount.as_path())),
            Layout::V2 { root, .. } => Some(root.as_path()),
        };
        root.map(|r| r.join(self.rel()))
            .ok_or_else(|| Error::cgroup(&self.path, "no cgroup hierarchy"))
    }

    /// All processes in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        tree::procs_recursive(&self.main_dir()?, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Freezes every process (v1 freezer / v2 cgroup.freeze) and returns once the kernel
    /// reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        match self.layout {
            Layout::V1 { .. } => v1::set_frozen(&self.freezer_dir()?, true),
            Layout::V2 { .. } => v2::set_frozen(&self.main_dir()?, true),
        }
    }

    /// Thaws the cgroup and returns once it is no longer frozen.
    pub fn thaw(&self) -> Result<()> {
        match self.layout {
            Layout::V1 { .. } => v1::set_frozen(&self.freezer_dir()?, false),
            Layout::V2 { .. } => v2::set_frozen(&self.main_dir()?, false),
        }
    }

    /// Whether the cgroup is (completely) frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match self.layout {
            Layout::V1 { .. } => v1::is_frozen(&self.freezer_dir()?),
            Layout::V2 { .. } => v2::is_frozen(&self.main_dir()?),
        }
    }

    fn freezer_dir(&self) -> Result<PathBuf> {
        self.layout
            .v1_mount("freezer")
            .map(|m| m.join(self.rel()))
            .ok_or_else(|| Error::cgroup(&self.path, "the v1 freezer controller is not mounted"))
    }

    /// Resource usage, shaped like the "data" of runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats> {
        stats::collect(self.layout, self.rel())
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64> {
        stats::oom_kill_count(self.layout, self.rel())
    }

    /// Why a process of this cgroup died before it could report, when the cgroup knows:
    /// the kernel's OOM killer, because `linux.resources.memory.limit` (applied before init
    /// joins, so the kernel accepted it against an empty cgroup) leaves init too little.
    /// "init exited during setup" alone left the user guessing.
    pub fn setup_death_reason(&self, res: Option<&LinuxResources>) -> Option<String> {
        if self.oom_kill_count().ok()? == 0 {
            return None;
        }
        let limit = res
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        Some(format!(
            "linux.resources.memory.limit{limit}: init was killed by the kernel's OOM killer during setup (the limit is below what it needs)"
        ))
    }

    /// Removes the cgroup (and any child cgroups) from every hierarchy. Idempotent: Ok when it
    /// is already gone. Processes must be gone first (EBUSY is retried briefly, then reported).
    /// Parents (of a nested cgroupsPath) are left in place.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        // Try every hierarchy even if one fails, so a retry has less left to do.
        for dir in self.dirs() {
            if let Err(e) = tree::remove(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Whether a directory of this cgroup exists in any hierarchy (leftovers count).
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }
}

/// Refuses values the kernel would take with another meaning instead of an error, so that a
/// limit is never dropped silently; `prefix` is the JSON path of the resources
/// ("linux.resources" in config.json, "resources" for `update`). A v1 `cpu.cfs_quota_us` of
/// any negative number means "no limit", so a quota of -5 turned into no limit at all.
pub fn validate(res: &LinuxResources, prefix: &str) -> Result<()> {
    // -1 means unlimited, 0 unset; anything below -1 is no value.
    let not_below_minus_one = |v: Option<i64>, field: &str| match v {
        Some(n) if n < -1 => Err(Error::spec(
            format!("{prefix}.{field}"),
            format!("{n} is neither -1 (unlimited) nor a positive value"),
        )),
        _ => Ok(()),
    };
    if let Some(c) = res.cpu() {
        not_below_minus_one(c.quota(), "cpu.quota")?;
        not_below_minus_one(c.realtime_runtime(), "cpu.realtimeRuntime")?;
    }
    if let Some(m) = res.memory() {
        not_below_minus_one(m.limit(), "memory.limit")?;
        not_below_minus_one(m.swap(), "memory.swap")?;
        not_below_minus_one(m.reservation(), "memory.reservation")?;
        not_below_minus_one(m.kernel_tcp(), "memory.kernelTCP")?;
    }
    Ok(())
}

/// Every cgroup directly under `prefix` ("/rpaas" or "rpaas") in any hierarchy, as cgroup paths
/// ("/rpaas/web-1") that can be given back to [`Cgroup::new`] as `cgroups_path`.
pub fn list_children(prefix: &str) -> Result<Vec<String>> {
    let prefix = normalize(prefix)?;
    let rel = prefix.trim_start_matches('/');
    let mut out = Vec::new();
    for root in layout()?.roots() {
        for child in tree::children(&root.join(rel))? {
            if let Some(name) = child.file_name().and_then(|n| n.to_str()) {
                out.push(format!("{prefix}/{name}"));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every cgroup that rpaas's default naming made, in any hierarchy, as (container id, cgroup
/// path): "/rpaas-<id>" at the roots and, from earlier builds, "/rpaas/<id>". For `gc`.
pub fn list_default() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for root in layout()?.roots() {
        for child in tree::children(root)? {
            let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(id) = name
                .strip_prefix(DEFAULT_PREFIX)
                .filter(|id| !id.is_empty())
            {
                out.push((id.to_string(), format!("/{name}")));
            }
        }
    }
    for path in list_children(LEGACY_PARENT)? {
        let id = path.rsplit('/').next().unwrap_or_default().to_string();
        out.push((id, path));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Remove the directory `prefix` ("/rpaas") from every hierarchy where it is
/// empty, so that deleting the last container leaves no trace. Busy or
/// non-empty directories are left alone (another container lives there).
pub fn remove_if_empty(prefix: &str) {
    let Ok(prefix) = normalize(prefix) else {
        return;
    };
    let rel = prefix.trim_start_matches('/');
    if let Ok(layout) = layout() {
        for root in layout.roots() {
            let _ = std::fs::remove_dir(root.join(rel));
        }
    }
}

/// Normalises a cgroupsPath to "/a/b": no empty, "." or ".." components (a ".." would escape
/// the hierarchy root), not the root itself.
fn normalize(p: &str) -> Result<String> {
    const FIELD: &str = "linux.cgroupsPath";
    if p.contains(':') && !p.contains('/') {
        return Err(Error::spec(
            FIELD,
            format!("{p:?} looks like a systemd path (slice:prefix:name); rpaas manages cgroupfs paths only"),
        ));
    }
    let mut out = String::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::spec(FIELD, format!("{p:?} must not contain \"..\"")));
            }
            _ => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::spec(
            FIELD,
            format!("{p:?} names the root cgroup; a container needs its own"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("/a/b").unwrap(), "/a/b");
        assert_eq!(normalize("a//b/./").unwrap(), "/a/b");
        let e = normalize("/a/../b").unwrap_err();
        assert!(e.to_string().contains("linux.cgroupsPath"), "{e}");
        assert!(normalize("/").is_err());
        assert!(normalize("system.slice:rpaas:x").is_err());
    }
}
