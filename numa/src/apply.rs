//! Writing a placement into a container's cgroup: `cpuset.cpus` + `cpuset.mems` (v1 and v2),
//! v1's `memory.swappiness`, v2's `memory.swap.max`, and page migration when a running
//! container moves to another node.
//!
//! v1's rules shape the order of writes: a cpuset's cpus/mems must lie within its parent's,
//! a parent cannot shrink below a child's, and a new cpuset starts empty (unless
//! `cgroup.clone_children`), so no task can join it before both are filled. Moving therefore
//! goes: widen top-down (ancestors, the container, its sub-cgroups get old ∪ new), then narrow
//! bottom-up to the new sets. `cpuset.memory_migrate=1` is set before `cpuset.mems` changes,
//! because the kernel migrates pages only on a mems change that happens after it is on.
//! v2 has no such rules for children (effective = requested ∩ parent) and always migrates.
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cpulist::IdSet;
use crate::error::{Error, Result};
use crate::layout::{check_cgroup_path, join_cgroup, CgroupRoots};

/// v2's `memory.swap.max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapMax {
    Bytes(u64),
    Max,
}

/// What to write besides the cpuset.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// v1 `memory.swappiness` (0..=100). v2 has no such knob: it is skipped with a note.
    pub swappiness: Option<u8>,
    /// v2 `memory.swap.max`. v1 has no plain swap limit (memsw counts memory+swap): skipped
    /// with a note.
    pub swap_max: Option<SwapMax>,
    /// The container runs: move its memory to the new nodes (v1: `cpuset.memory_migrate=1`
    /// before the mems change; v2 migrates on every mems change).
    pub migrate: bool,
    /// Create the cgroup (and missing parents) when absent. The runtime normally creates it;
    /// tests and `numa` debug verbs use this.
    pub create: bool,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub value: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub writes: Vec<Written>,
    /// Options that do not exist on this cgroup version, and why they were skipped.
    pub notes: Vec<String>,
}

/// Writes `cpus`/`mems` (and the options) into the cgroup `cgroup` ("/rpaas/web-1").
pub fn apply(
    roots: &CgroupRoots,
    cgroup: &Path,
    cpus: &IdSet,
    mems: &IdSet,
    opts: &ApplyOptions,
) -> Result<Applied> {
    check_cgroup_path(cgroup)?;
    if cpus.is_empty() || mems.is_empty() {
        return Err(Error::BadRequest {
            field: if cpus.is_empty() { "cpus" } else { "mems" },
            what: format!("empty cpuset for cgroup {}", cgroup.display()),
        });
    }
    let mut done = Applied::default();
    match roots {
        CgroupRoots::V1 { cpuset, memory, .. } => {
            apply_v1_cpuset(cpuset, cgroup, cpus, mems, opts, &mut done)?;
            if let Some(swappiness) = opts.swappiness {
                if swappiness > 100 {
                    return Err(Error::BadRequest {
                        field: "swappiness",
                        what: format!("{swappiness} is above 100"),
                    });
                }
                let dir = join_cgroup(memory, cgroup);
                ensure_dirs(memory, cgroup, opts.create)?;
                write(
                    &dir.join("memory.swappiness"),
                    &swappiness.to_string(),
                    &mut done,
                )?;
            }
            if opts.swap_max.is_some() {
                done.notes.push(
                    "memory.swap.max is cgroup v2 only; v1's memsw limit counts memory+swap, not set"
                        .into(),
                );
            }
        }
        CgroupRoots::V2 { root } => {
            apply_v2(root, cgroup, cpus, mems, opts, &mut done)?;
            if opts.swappiness.is_some() {
                done.notes.push(
                    "memory.swappiness does not exist on cgroup v2; use memory.swap.max".into(),
                );
            }
        }
    }
    Ok(done)
}

fn apply_v1_cpuset(
    root: &Path,
    cgroup: &Path,
    cpus: &IdSet,
    mems: &IdSet,
    opts: &ApplyOptions,
    done: &mut Applied,
) -> Result<()> {
    // Walk down to the container, making missing levels; remember each ancestor with its
    // parent so empty ones can be filled from above.
    let mut parent = root.to_path_buf();
    let mut ancestors = Vec::new();
    let mut created = false;
    let parts: Vec<_> = cgroup
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let dir = parent.join(part);
        created = false;
        if !dir.is_dir() {
            if !opts.create {
                return Err(Error::Layout {
                    path: dir,
                    what: "cgroup does not exist".into(),
                });
            }
            mkdir(&dir)?;
            created = true;
        }
        if i + 1 < parts.len() {
            ancestors.push((parent.clone(), dir.clone()));
        }
        parent = dir;
    }
    let leaf = parent;
    // A cgroup we just made has no sub-cgroups and empty sets: skip reading them.
    let subtree = if created {
        Vec::new()
    } else {
        descendants(&leaf)?
    };
    for (file, want) in [("cpuset.cpus", cpus), ("cpuset.mems", mems)] {
        // Phase 1, top-down: every ancestor gets at least `want` (an empty one: its parent's).
        for (up, dir) in &ancestors {
            let current = read_set(&dir.join(file))?;
            if current.is_empty() {
                let from_parent = read_set(&up.join(file))?.union(want);
                write(&dir.join(file), &from_parent.to_string(), done)?;
            } else if !want.is_subset(&current) {
                write(&dir.join(file), &current.union(want).to_string(), done)?;
            }
        }
        let mut current = if created {
            IdSet::new()
        } else {
            read_set(&leaf.join(file))?
        };
        if file == "cpuset.mems" && opts.migrate {
            for dir in std::iter::once(&leaf).chain(subtree.iter()) {
                write(&dir.join("cpuset.memory_migrate"), "1", done)?;
            }
        }
        // Sub-cgroups pin the container's old sets until they move too: widen the container
        // and them top-down, then narrow them bottom-up before the container.
        if !subtree.is_empty() {
            if !current.is_empty() && !want.is_subset(&current) {
                current = current.union(want);
                write(&leaf.join(file), &current.to_string(), done)?;
            }
            for dir in &subtree {
                let sub = read_set(&dir.join(file))?;
                if !sub.is_empty() && !want.is_subset(&sub) {
                    write(&dir.join(file), &sub.union(want).to_string(), done)?;
                }
            }
            for dir in subtree.iter().rev() {
                let sub = read_set(&dir.join(file))?;
                if !sub.is_empty() && sub != *want {
                    write(&dir.join(file), &want.to_string(), done)?;
                }
            }
        }
        if current != *want {
            write(&leaf.join(file), &want.to_string(), done)?;
        }
    }
    Ok(())
}

fn apply_v2(
    root: &Path,
    cgroup: &Path,
    cpus: &IdSet,
    mems: &IdSet,
    opts: &ApplyOptions,
    done: &mut Applied,
) -> Result<()> {
    // The controllers must be enabled in every ancestor's subtree_control, from the root down.
    let mut dir = root.to_path_buf();
    for part in cgroup
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
    {
        enable_controllers(&dir, done)?;
        dir = dir.join(part);
        if !dir.is_dir() {
            if !opts.create {
                return Err(Error::Layout {
                    path: dir,
                    what: "cgroup does not exist".into(),
                });
            }
            mkdir(&dir)?;
        }
        // An ancestor with its own narrower cpuset would leave the container with an empty
        // effective set (the kernel then silently falls back to the parent's): widen it.
        if dir != join_cgroup(root, cgroup) {
            for (file, want) in [("cpuset.cpus", cpus), ("cpuset.mems", mems)] {
                let current = read_set(&dir.join(file))?;
                if !current.is_empty() && !want.is_subset(&current) {
                    write(&dir.join(file), &current.union(want).to_string(), done)?;
                }
            }
        }
    }
    write_if_changed(&dir.join("cpuset.cpus"), cpus, done)?;
    write_if_changed(&dir.join("cpuset.mems"), mems, done)?;
    if let Some(swap) = opts.swap_max {
        let value = match swap {
            SwapMax::Bytes(b) => b.to_string(),
            SwapMax::Max => "max".into(),
        };
        write(&dir.join("memory.swap.max"), &value, done)?;
    }
    Ok(())
}

/// Adds `+cpuset +memory` to `dir`'s subtree_control unless already there.
fn enable_controllers(dir: &Path, done: &mut Applied) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let text = read_to_string(&path)?;
    let on: Vec<&str> = text.split_whitespace().collect();
    let missing: Vec<String> = ["cpuset", "memory"]
        .iter()
        .filter(|c| !on.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if !missing.is_empty() {
        write(&path, &missing.join(" "), done)?;
    }
    Ok(())
}

/// Sub-cgroups of `dir`, parents before children.
fn descendants(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(d) = queue.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Read {
            path: d.clone(),
            source,
        })?;
        let mut children = Vec::new();
        for e in entries {
            let e = e.map_err(|source| Error::Read {
                path: d.clone(),
                source,
            })?;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                children.push(e.path());
            }
        }
        children.sort();
        out.extend(children.iter().cloned());
        queue.extend(children);
    }
    // The walk appends a level's children before descending, so each dir comes after its
    // parent; that is all phase 1 and (reversed) phase 2 need.
    Ok(out)
}

fn mkdir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Write {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn ensure_dirs(root: &Path, cgroup: &Path, create: bool) -> Result<()> {
    let mut dir = root.to_path_buf();
    for part in cgroup
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
    {
        dir = dir.join(part);
        if !dir.is_dir() {
            if !create {
                return Err(Error::Layout {
                    path: dir,
                    what: "cgroup does not exist".into(),
                });
            }
            mkdir(&dir)?;
        }
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a cpus/mems file.
pub fn read_set(path: &Path) -> Result<IdSet> {
    IdSet::parse(&read_to_string(path)?).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

fn write_if_changed(path: &Path, want: &IdSet, done: &mut Applied) -> Result<()> {
    if read_set(path)? != *want {
        write(path, &want.to_string(), done)?;
    }
    Ok(())
}

/// One write(2) of the whole value to an existing file, as cgroupfs expects (no O_CREAT:
/// a missing knob must fail, not become a regular file).
fn write(path: &Path, value: &str, done: &mut Applied) -> Result<()> {
    let err = |source| Error::CgroupWrite {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)?;
    tracing::debug!(path = %path.display(), value, "cgroup write");
    done.writes.push(Written {
        path: path.to_path_buf(),
        value: value.to_string(),
    });
    Ok(())
}
