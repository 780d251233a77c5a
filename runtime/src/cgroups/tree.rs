//! Directory-level operations shared by v1 and v2: mkdir, recursive rmdir with EBUSY retry,
//! recursive `cgroup.procs` collection, listing children.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files;
use crate::{Error, Result};

/// `mkdir -p`. Returns the directories this call created, top-down, so callers can initialise
/// only the new ones (cpuset on v1, subtree_control on v2). The common case (parent exists) is a
/// single mkdir syscall.
pub(crate) fn mkdir_p(dir: &Path) -> Result<Vec<PathBuf>> {
    // 8 was once not enough against a remover that rmdirs the parent in a
    // tight loop; a real delete removes a parent once.
    mkdir_p_retry(dir, 64)
}

/// `retries`: whoever owns a shared parent (a nested cgroupsPath's, or the "/rpaas" parent of
/// earlier builds' containers, which their last delete removes) may rmdir it as soon as it is
/// empty, which may fall between our mkdir of the parent and of the child; the child's mkdir
/// then fails with ENOENT and the parent is simply made again.
fn mkdir_p_retry(dir: &Path, retries: u32) -> Result<Vec<PathBuf>> {
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(vec![dir.to_path_buf()]),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(Vec::new()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(mkdir_err(dir, e)),
    }
    let parent = dir
        .parent()
        .ok_or_else(|| mkdir_err(dir, std::io::Error::new(ErrorKind::NotFound, "no parent")))?;
    let mut created = mkdir_p(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => created.push(dir.to_path_buf()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == ErrorKind::NotFound && retries > 0 => {
            std::thread::yield_now();
            created.extend(mkdir_p_retry(dir, retries - 1)?);
        }
        Err(e) => return Err(mkdir_err(dir, e)),
    }
    Ok(created)
}

fn mkdir_err(dir: &Path, source: std::io::Error) -> Error {
    Error::CgroupFile {
        field: "cgroup create".to_string(),
        op: "mkdir".to_string(),
        file: dir.to_path_buf(),
        source,
    }
}

/// Subdirectories of a cgroup directory (its child cgroups). Missing dir → empty.
pub(crate) fn children(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        // cgroupfs fills d_type, so this costs no extra stat.
        let is_dir = ent
            .file_type()
            .map_err(|e| Error::io("stat", ent.path(), e))?
            .is_dir();
        if is_dir {
            out.push(ent.path());
        }
    }
    Ok(out)
}

/// Removes `dir` and every child cgroup below it, children first. A missing directory is
/// success (idempotent delete). EBUSY (tasks still exiting, or the kernel not done with a
/// just-emptied cgroup) is retried with a short, bounded back-off.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    let mut listed = false;
    loop {
        // rmdir first: the usual cgroup has no children, and listing it costs 3 syscalls per
        // hierarchy on the delete path. The kernel answers EBUSY for child cgroups and for
        // live tasks alike; list children once to tell them apart.
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !listed => {
                listed = true;
                for child in children(dir)? {
                    remove(&child)?;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(2) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(Error::CgroupFile {
                    field: "cgroup destroy".to_string(),
                    op: "rmdir".to_string(),
                    file: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Every pid in `cgroup.procs` of `dir` and of all its descendants.
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let text = match files::read_opt(dir, "cgroup.procs", "cgroup pids")? {
        Some(t) => t,
        // Removed between listing and reading: it has no processes.
        None => return Ok(()),
    };
    for line in text.lines() {
        let pid = line.trim().parse::<i32>().map_err(|e| {
            files::invalid(&dir.join("cgroup.procs"), "cgroup pids", &e.to_string())
        })?;
        out.push(pid);
    }
    for child in children(dir)? {
        procs_recursive(&child, out)?;
    }
    Ok(())
}
