//! Exclusive `flock(2)` locks on lock files.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An exclusive flock on a file, released when dropped (or when every copy
/// of its fd is closed, e.g. in a child that inherited it).
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Wait until the lock on `path` is ours, creating the file (mode 0600)
    /// if it is missing.
    pub fn lock(path: &Path) -> std::io::Result<FileLock> {
        let file = open(path, true)?;
        loop {
            match flock(&file, libc::LOCK_EX) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.map(|()| FileLock { file }),
            }
        }
    }

    /// Take the lock on `path` only if nobody holds it: `Ok(None)` when it is
    /// held. With `create` false a missing file is an error (`NotFound`), so
    /// that a caller cannot add a file to a directory someone is removing.
    pub fn try_lock(path: &Path, create: bool) -> std::io::Result<Option<FileLock>> {
        let file = open(path, create)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The locked file's descriptor (to pass the lock on to a child).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for FileLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn open(path: &Path, create: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).custom_flags(libc::O_CLOEXEC);
    if create {
        o.create(true).truncate(false).mode(0o600);
    }
    o.open(path)
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on an fd we own for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = FileLock::lock(&p).unwrap();
        // flock locks belong to the open file description: a second open
        // in the same process conflicts like another process would.
        assert!(FileLock::try_lock(&p, false).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_lock(&p, false).unwrap().is_some());
    }

    #[test]
    fn try_lock_without_create_never_makes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let e = FileLock::try_lock(&p, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(!p.exists());
        assert!(FileLock::try_lock(&p, true).unwrap().is_some());
        assert!(p.exists());
    }
}
