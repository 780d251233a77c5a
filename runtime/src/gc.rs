//! `gc`: undo whatever killed creates, crashed runtimes and reboots left.
//!
//! Removed: states of creates that died halfway (phase "creating", lock free),
//! states from an earlier boot, states whose init is gone with no exit record
//! (and, with `all`, every stopped container), state dirs a create killed
//! before its first state write left (lock free, no state.json), and the
//! cgroups this root made whose state is gone (orphans).
//!
//! Never touched: a container whose lock someone holds (a create, however
//! young, a start, a delete); a state that cannot be read (its init and
//! cgroup may be alive: reported instead); a cgroup this root cannot prove it
//! made (`<root>/#cgroup.<id>` names it, see [`crate::state::CGROUP_MARKER_PREFIX`]):
//! a `/rpaas-<id>` cgroup may as well be another state root's stopped container.

use std::path::Path;

use serde::Serialize;

use crate::cgroups::{self, Cgroup};
use crate::container::{Container, Status};
use crate::state::{self, Dir, Lock, Phase};
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
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e.flatten().collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read state root", root, e)),
    };
    for entry in &entries {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if name.starts_with(state::TMP_PREFIX) {
            collect_unclaimed(&entry.path(), &mut report);
        } else if state::validate_id(&name).is_ok() {
            collect_container(root, &name, all_stopped, &mut report);
        }
    }
    collect_orphan_cgroups(root, &mut report);
    cgroups::remove_if_empty(cgroups::LEGACY_PARENT);
    Ok(report)
}

fn collect_container(root: &Path, id: &str, all_stopped: bool, report: &mut Report) {
    let dir = Dir::new(root, id);
    // Held from here to the removal: nobody can start, exec, delete or be
    // creating it meanwhile.
    let lock = match Lock::try_take(&dir.lock_file()) {
        Ok(Some(lock)) => lock,
        // Held: a create (however young), start, exec or delete is at work.
        Ok(None) if dir.lock_file().exists() || !dir.path.exists() => return,
        // No lock file: made by an earlier build, whose create took its lock
        // only after the mkdir. Leave a young one alone.
        Ok(None) if is_recent_path(&dir.path) => return,
        Ok(None) => match Lock::try_take_creating(&dir.lock_file()) {
            Ok(Some(lock)) => lock,
            _ => return,
        },
        Err(e) => {
            report.errors.push(format!("container {id}: {}", e.chain()));
            return;
        }
    };
    let container = match Container::load(root, id) {
        Ok(c) => c,
        Err(Error::NotFound { .. }) => {
            // No state.json and the lock free: a create killed before its
            // first state write, which had made nothing else yet.
            match state::remove_state_dir(&dir.path) {
                Ok(()) => report.removed_containers.push(id.to_string()),
                Err(e) => report.errors.push(format!("container {id}: {}", e.chain())),
            }
            return;
        }
        Err(e) => {
            // Its init, keeper and cgroups may be alive: dropping the record
            // would leave them running untracked.
            report.errors.push(format!(
                "container {id}: state unreadable, kept (its processes and cgroup may be alive; \
                 repair or remove {} by hand): {}",
                dir.path.display(),
                e.chain()
            ));
            return;
        }
    };
    let status = container.status_locked();
    let collect = status == Status::Stopped
        && (container.state.phase == Phase::Creating
            || container.is_stale()
            || all_stopped
            || container.exit_record().ok().flatten().is_none());
    if collect {
        match container.delete_locked(lock, true) {
            Ok(()) => report.removed_containers.push(id.to_string()),
            Err(e) => report.errors.push(format!("container {id}: {}", e.chain())),
        }
    }
}

/// A `#new-…` dir of [`Dir::claim`] whose create died before the rename.
fn collect_unclaimed(path: &Path, report: &mut Report) {
    if is_recent_path(path) {
        return;
    }
    let lock = match Lock::try_take(&path.join("lock")) {
        Ok(Some(l)) => Some(l),
        Ok(None) if path.join("lock").exists() => return,
        _ => None,
    };
    if let Err(e) = state::remove_state_dir(path) {
        report.errors.push(e.chain());
    }
    drop(lock);
}

/// The cgroups this root's markers name whose container state is gone.
fn collect_orphan_cgroups(root: &Path, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(state::MARKER_TMP_PREFIX) {
            // A marker write killed before its rename.
            if !is_recent_path(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        let Some(id) = name.strip_prefix(state::CGROUP_MARKER_PREFIX) else {
            continue;
        };
        if state::validate_id(id).is_err() || root.join(id).exists() {
            // A state names it: the container's delete undoes it.
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(cg) = Cgroup::new(id, Some(text.trim())) else {
            continue;
        };
        if !cg.exists() {
            forget_marker(root, id, report);
            continue;
        }
        // Processes in it: its state was removed under a live container.
        // Never killed here (they are not known to be dead leftovers).
        if has_live_pids(&cg) {
            continue;
        }
        // An empty young one may be a create of this id starting again.
        if is_recent(&cg) {
            continue;
        }
        match remove_cgroup(&cg) {
            Ok(()) => {
                report.removed_cgroups.push(cg.path().to_string());
                forget_marker(root, id, report);
            }
            Err(e) => report
                .errors
                .push(format!("cgroup {}: {}", cg.path(), e.chain())),
        }
    }
}

fn forget_marker(root: &Path, id: &str, report: &mut Report) {
    // A create of the same id may have begun meanwhile: its marker stays.
    if root.join(id).exists() {
        return;
    }
    if let Err(e) = state::remove_cgroup_marker(root, id) {
        report.errors.push(e.chain());
    }
}

fn has_live_pids(cg: &Cgroup) -> bool {
    cg.pids().is_ok_and(|pids| !pids.is_empty())
}

/// Made less than [`ORPHAN_GRACE`] ago in some hierarchy (cgroupfs keeps a
/// directory's mtime at its mkdir time).
fn is_recent(cg: &Cgroup) -> bool {
    cg.dirs().iter().any(|d| is_recent_path(d))
}

fn is_recent_path(p: &Path) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < ORPHAN_GRACE)
}

/// How long an empty cgroup no state names, or a state dir without a lock
/// file, is left alone by `gc`.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn remove_cgroup(cg: &Cgroup) -> Result<()> {
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
