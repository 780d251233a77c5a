//! One-syscall resolution inside the rootfs: openat2(2) with RESOLVE_IN_ROOT
//! ([`rpaas_fsutil::open_in_root`])
//! (symlinks, absolute or `..`, cannot leave the root) and
//! RESOLVE_NO_MAGICLINKS (no /proc/self/fd tricks).
//!
//! pathrs gives the same guarantee but re-verifies /proc on every call (about
//! ten syscalls each, and a private procfs mount for its first use); init
//! resolves a few dozen paths and creates a dozen directories on the
//! container start path, so both are done here:
//! - an existing path: one openat2;
//! - a missing directory: openat2 of the longest existing prefix, then for
//!   each missing component mkdirat + openat(O_NOFOLLOW) relative to the
//!   directory just made, so a symlink raced into place is refused, never
//!   followed. Paths with `..` go to pathrs (its walk handles them).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use pathrs::{Handle, Root};

fn open_in_root(root: &Root, path: &Path, extra: libc::c_int) -> std::io::Result<Handle> {
    rpaas_fsutil::open_in_root(root.as_fd(), path, libc::O_PATH | extra).map(Handle::from_fd)
}

/// `path` inside the root, following symlinks within it.
pub fn resolve(root: &Root, path: impl AsRef<Path>) -> std::io::Result<Handle> {
    open_in_root(root, path.as_ref(), 0)
}

/// `path` inside the root; a final symlink is not followed.
pub fn resolve_nofollow(root: &Root, path: impl AsRef<Path>) -> std::io::Result<Handle> {
    open_in_root(root, path.as_ref(), libc::O_NOFOLLOW)
}

/// An existing directory `path` inside the root.
pub fn resolve_dir(root: &Root, path: impl AsRef<Path>) -> std::io::Result<Handle> {
    open_in_root(root, path.as_ref(), libc::O_DIRECTORY)
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// The normal components of `path`, or None when it has a `..` (or a
/// prefix): those are left to pathrs.
fn plain_components(path: &Path) -> Option<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// O_PATH directory `name` in `dir`, never following a symlink.
fn open_child_dir(dir: &impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<OwnedFd> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: openat with a valid dirfd and a NUL-terminated single-component name.
    let fd = unsafe {
        libc::openat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `path` inside the root, created with `mode` (and its
/// missing parents) if absent. None: the path has `..`, ask pathrs.
pub fn mkdir_all(root: &Root, path: &Path, mode: u32) -> Option<std::io::Result<Handle>> {
    let comps = plain_components(path)?;
    Some(mkdir_all_plain(root, &comps, mode))
}

fn mkdir_all_plain(root: &Root, comps: &[&std::ffi::OsStr], mode: u32) -> std::io::Result<Handle> {
    // The longest existing prefix, resolved inside the root.
    let mut existing = comps.len();
    let mut dir = loop {
        let prefix: std::path::PathBuf = comps[..existing].iter().collect();
        match resolve_dir(root, &prefix) {
            Ok(h) => break OwnedFd::from(h),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && existing > 0 => existing -= 1,
            Err(e) => return Err(e),
        }
    };
    for name in &comps[existing..] {
        let c = cstring(name.as_bytes())?;
        // SAFETY: mkdirat with a valid dirfd and a NUL-terminated single-component name.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            // Made by someone else meanwhile: fine if it is a directory,
            // which open_child_dir checks without following a symlink.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        dir = open_child_dir(&dir, name)?;
    }
    Ok(Handle::from_fd(dir))
}

/// Create the empty file `path` inside the root (mode 0644, parents 0755)
/// unless something is there; never follows a final symlink. None: the
/// path has `..`, ask pathrs.
pub fn create_file(root: &Root, path: &Path) -> Option<std::io::Result<()>> {
    let comps = plain_components(path)?;
    let (name, parents) = comps.split_last()?;
    Some((|| {
        let dir = mkdir_all_plain(root, parents, 0o755)?;
        let c = cstring(name.as_bytes())?;
        // SAFETY: openat with a valid dirfd and a NUL-terminated single-component name.
        let fd = unsafe {
            libc::openat(
                dir.as_fd().as_raw_fd(),
                c.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openat returned a new fd that we own; closing it is all we do.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_of(dir: &Path) -> Root {
        Root::open(dir).expect("open root")
    }

    #[test]
    fn mkdir_all_makes_missing_parents_inside_the_root() {
        let rootfs = tempfile::tempdir().unwrap();
        let root = root_of(rootfs.path());
        mkdir_all(&root, Path::new("/a/b/c"), 0o755)
            .expect("plain path")
            .expect("mkdir");
        assert!(rootfs.path().join("a/b/c").is_dir());
        // Existing: resolved, nothing else made.
        mkdir_all(&root, Path::new("a/b"), 0o755).unwrap().unwrap();
    }

    #[test]
    fn symlinks_resolve_inside_the_root_never_on_the_host() {
        let host = tempfile::tempdir().unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let root = root_of(rootfs.path());
        // An absolute link to the host dir's path, which the image also has.
        std::fs::create_dir_all(rootfs.path().join(host.path().strip_prefix("/").unwrap()))
            .unwrap();
        symlink(host.path(), rootfs.path().join("abs")).unwrap();
        symlink("../../../..", rootfs.path().join("up")).unwrap();
        mkdir_all(&root, Path::new("abs/made"), 0o755)
            .unwrap()
            .unwrap();
        mkdir_all(&root, Path::new("up/top"), 0o755)
            .unwrap()
            .unwrap();
        create_file(&root, Path::new("abs/file")).unwrap().unwrap();
        let inside = rootfs.path().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("made").is_dir() && inside.join("file").is_file());
        assert!(rootfs.path().join("top").is_dir(), "`..` stops at the root");
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_dangling_link_is_refused_not_followed_out() {
        let host = tempfile::tempdir().unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let root = root_of(rootfs.path());
        symlink(host.path().join("gone"), rootfs.path().join("dangling")).unwrap();
        assert!(mkdir_all(&root, Path::new("dangling/sub"), 0o755)
            .unwrap()
            .is_err());
        assert!(create_file(&root, Path::new("dangling")).unwrap().is_err());
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    }

    #[test]
    fn dot_dot_paths_are_left_to_pathrs() {
        let rootfs = tempfile::tempdir().unwrap();
        let root = root_of(rootfs.path());
        assert!(mkdir_all(&root, Path::new("a/../b"), 0o755).is_none());
        assert!(create_file(&root, Path::new("../x")).is_none());
    }
}
