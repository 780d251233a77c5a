//! Root-fd file-system helpers: every path is resolved *inside* a root directory
//! with `openat2(RESOLVE_IN_ROOT)`, so no symlink or `..` left by an earlier layer
//! (or by a container) can make us touch anything outside of it.
//!
//! The pattern is always: resolve the *parent* directory inside the root, then act
//! on the final component with an `*at` call that does not follow symlinks.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::{Error, Result};

/// An open root directory; all operations stay beneath it.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A path made safe to resolve inside a root: relative, no `..`, no `.`, not empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CleanPath(PathBuf);

impl CleanPath {
    /// Clean `raw`: leading `/` and `./` are dropped; `..` is refused (rather than
    /// clamped) so hostile archives get a clear error instead of a silent rewrite.
    /// Returns Ok(None) for the root itself (".", "/", "").
    pub fn new(raw: &Path) -> std::result::Result<Option<CleanPath>, String> {
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => out.push(n),
                Component::ParentDir => return Err("path contains '..'".into()),
                Component::Prefix(_) => return Err("path has a prefix".into()),
            }
        }
        if out.as_os_str().is_empty() {
            return Ok(None);
        }
        Ok(Some(CleanPath(out)))
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
    /// The parent (None when it is the root) and the final component.
    pub fn split(&self) -> (Option<CleanPath>, &OsStr) {
        let name = self.0.file_name().unwrap_or_default();
        let parent = self
            .0
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| CleanPath(p.to_path_buf()));
        (parent, name)
    }
    pub fn join(&self, name: &OsStr) -> CleanPath {
        CleanPath(self.0.join(name))
    }
    pub fn from_name(name: &OsStr) -> CleanPath {
        CleanPath(PathBuf::from(name))
    }
}

/// `rel` opened with `flags` inside the root fd `root`
/// ([`rpaas_fsutil::open_in_root`]), its error as an errno.
fn open_in_root(
    root: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlag,
) -> std::result::Result<OwnedFd, Errno> {
    rpaas_fsutil::open_in_root(root, rel, flags.bits())
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

impl Root {
    /// Open `path` (a host path the caller trusts) as the root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open root {}", path.display()), e))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open `rel` (None: the root) as a directory, resolved inside the root.
    pub fn open_dir(&self, rel: Option<&CleanPath>) -> Result<OwnedFd> {
        let p: &Path = rel.map(|r| r.as_path()).unwrap_or(Path::new("."));
        open_in_root(self.fd.as_fd(), p, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
            .map_err(|e| self.err("open directory", p, e))
    }

    /// Open an existing file for reading, resolved inside the root.
    pub fn open_file(&self, rel: &CleanPath) -> Result<std::fs::File> {
        let fd = open_in_root(self.fd.as_fd(), rel.as_path(), OFlag::O_RDONLY)
            .map_err(|e| self.err("open", rel.as_path(), e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Make `rel` and its missing ancestors directories (mode 0755), resolving every
    /// existing component inside the root; returns the directory's fd.
    pub fn mkdir_all(&self, rel: Option<&CleanPath>) -> Result<OwnedFd> {
        let Some(rel) = rel else {
            return self.open_dir(None);
        };
        match open_in_root(
            self.fd.as_fd(),
            rel.as_path(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) => {
                let (parent, name) = rel.split();
                let pfd = self.mkdir_all(parent.as_ref())?;
                match mkdirat(pfd.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.err("mkdir", rel.as_path(), e)),
                }
                openat2(
                    pfd.as_fd(),
                    name,
                    OpenHow::new()
                        .flags(
                            OFlag::O_DIRECTORY
                                | OFlag::O_RDONLY
                                | OFlag::O_CLOEXEC
                                | OFlag::O_NOFOLLOW,
                        )
                        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS),
                )
                .map_err(|e| self.err("open directory", rel.as_path(), e))
            }
            Err(e) => Err(self.err("open directory", rel.as_path(), e)),
        }
    }

    pub(crate) fn err(&self, op: &str, rel: &Path, e: Errno) -> Error {
        Error::sys(
            format!("{op} {} (inside {})", rel.display(), self.path.display()),
            e,
        )
    }
}

/// The type of what `name` in `dir` is (not following symlinks), None when absent.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<Option<SFlag>, Errno> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove `name` in `dir` whatever it is; directories are removed recursively, each
/// level through its own fd (never by path), so symlinks inside are removed, not followed.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<(), Errno> {
    match lstat_at(dir, name)? {
        None => Ok(()),
        Some(SFlag::S_IFDIR) => {
            let sub = openat2(
                dir,
                name,
                OpenHow::new()
                    .flags(
                        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                    )
                    .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS),
            )?;
            clear_dir(sub.as_fd(), &|_| false)?;
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)
        }
        Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
    }
}

/// Remove every entry of the directory `dir` except those `keep` says to keep.
pub fn clear_dir(
    dir: BorrowedFd<'_>,
    keep: &dyn Fn(&OsStr) -> bool,
) -> std::result::Result<(), Errno> {
    for name in list_dir(dir)? {
        if !keep(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

/// The names in a directory (without "." and "..").
pub fn list_dir(dir: BorrowedFd<'_>) -> std::result::Result<Vec<std::ffi::OsString>, Errno> {
    // Dir::openat on "." gives an independent fd so the caller's offset is untouched.
    let mut d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(n).to_os_string());
    }
    Ok(names)
}

/// Set an extended attribute on `name` in `dir` without following a final symlink:
/// `/proc/self/fd/<dir>` names exactly the directory we resolved, and `lsetxattr`
/// does not follow the last component.
pub fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    key: &[u8],
    value: &[u8],
) -> std::result::Result<(), Errno> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    let path = CString::new(p).map_err(|_| Errno::EINVAL)?;
    let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid NUL-terminated strings and a buffer with its length.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Set atime and mtime of `name` in `dir` (not following symlinks).
pub fn set_times_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mtime: i64,
) -> std::result::Result<(), Errno> {
    let c = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid fd, NUL-terminated name, two timespecs.
    let r = unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    Errno::result(r).map(drop)
}
