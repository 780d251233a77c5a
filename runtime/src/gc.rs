//! `gc`: undo whatever killed creates, crashed runtimes and reboots left.
//!
//! Removed: states of creates that died halfway (phase "creating", lock free),
//! states from an earlier boot, states whose init is gone with no exit record
//! (and, with `all`, every stopped container), state dirs without a state
//! file, and default-named cgroups (`/rpaas-<id>`, or `/rpaas/<id>` of earlier
//! builds) that no state names (orphans).

use std::path::Path;

use serde::Serialize;

use crate::cgroups::{self, Cgroup};
use crate::container::{Container, Status};
use crate::state::{Dir, Lock, Phase};
use crate::{Error, Result};

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub removed_containers: Vec<String>,
    pub removed_cgroups: Vec<String>,
    pub errors: Vec<String>,
}

pub fn gc(root: &Path, all_stopped: bool) -> Result<Report> {
    let mut report = Report::default();
    let mut known = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e.flatten().collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read state root", root, e)),
    };
    for entry in entries {
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        let dir = Dir::new(root, &id);
        let container = match Container::load(root, &id) {
            Ok(c) => c,
            Err(_) => {
                // No readable state: a create killed before its first write,
                // unless someone is creating it right now (lock held).
                if let Ok(Some(_lock)) = Lock::try_take(&dir.lock_file()) {
                    remove_dir(&dir, &id, &mut report);
                } else if !dir.lock_file().exists() {
                    remove_dir(&dir, &id, &mut report);
                }
                continue;
            }
        };
        if let Some(p) = &container.state.cgroup_path {
            known.push(p.clone());
        }
        let status = container.status();
        let collect = status == Status::Stopped
            && (container.state.phase == Phase::Creating
                || container.is_stale()
                || all_stopped
                || container.exit_record().ok().flatten().is_none());
        if collect {
            match container.delete(true) {
                Ok(()) => report.removed_containers.push(id),
                Err(e) => report.errors.push(format!("container {id}: {}", e.chain())),
            }
        }
    }
    for (id, path) in cgroups::list_default().unwrap_or_default() {
        if known.iter().any(|k| k == &path) || root.join(&id).exists() {
            continue;
        }
        // Live processes in a cgroup this root does not know are most likely
        // a container of another state root (another --root, podman's, a
        // test's): never kill them; only dead leftovers are collected.
        if has_live_pids(&id, &path) {
            continue;
        }
        // An empty one may be another root's create in progress (mkdir done,
        // init not yet added): removing it would fail that create. Leftovers
        // of a crash are older than this.
        if is_recent(&id, &path) {
            continue;
        }
        match remove_cgroup(&id, &path) {
            Ok(()) => report.removed_cgroups.push(path),
            Err(e) => report.errors.push(format!("cgroup {path}: {}", e.chain())),
        }
    }
    cgroups::remove_if_empty(cgroups::LEGACY_PARENT);
    Ok(report)
}

fn remove_dir(dir: &Dir, id: &str, report: &mut Report) {
    match std::fs::remove_dir_all(&dir.path) {
        Ok(()) => report.removed_containers.push(id.to_string()),
        Err(e) => report.errors.push(format!("{}: {e}", dir.path.display())),
    }
}

fn has_live_pids(id: &str, path: &str) -> bool {
    Cgroup::new(id, Some(path))
        .ok()
        .and_then(|cg| cg.pids().ok())
        .is_some_and(|pids| !pids.is_empty())
}

/// Made less than [`ORPHAN_GRACE`] ago in some hierarchy (cgroupfs keeps a
/// directory's mtime at its mkdir time).
fn is_recent(id: &str, path: &str) -> bool {
    let Ok(cg) = Cgroup::new(id, Some(path)) else {
        return false;
    };
    cg.dirs().iter().any(|d| {
        std::fs::metadata(d)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < ORPHAN_GRACE)
    })
}

/// How long an empty cgroup no state names is left alone by `gc`.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn remove_cgroup(id: &str, path: &str) -> Result<()> {
    let cg = Cgroup::new(id, Some(path))?;
    let _ = cg.thaw();
    for pid in cg.pids().unwrap_or_default() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for _ in 0..200 {
        if cg.pids().map(|p| p.is_empty()).unwrap_or(true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cg.destroy()
}
