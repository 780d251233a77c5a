//! CVE-2019-5736: a container must not be able to overwrite the runtime
//! binary through /proc/<pid>/exe of a runtime process that entered it
//! (create's init, `exec`), e.g. by making its entrypoint `#!/proc/self/exe`.
//!
//! Defence: before anything enters a container, the runtime re-executes
//! itself from a file nobody can write, so that every clone it makes later
//! (init, exec) has that file as /proc/<pid>/exe. Two ways, cheapest first:
//!
//! 1. A **read-only detached bind mount** of the binary: open_tree(2)
//!    OPEN_TREE_CLONE of /proc/self/exe, mount_setattr(2) MOUNT_ATTR_RDONLY,
//!    execveat through that fd. No copy and no mount in any namespace (it is
//!    not in mountinfo, nothing to clean up, it dies with the last user). A
//!    write through /proc/<pid>/exe then fails with ETXTBSY while we run and
//!    EROFS after; the container cannot make it writable: remount,
//!    mount_setattr and bind/clone all refuse a mount outside the caller's
//!    namespace. Needs root (CAP_SYS_ADMIN) and Linux 5.12.
//! 2. Otherwise a **sealed memfd copy** (sendfile, then F_SEAL_SEAL|SHRINK|
//!    GROW|WRITE): writes and truncation fail with EPERM. It costs a copy of
//!    the whole binary (measured ~1.5 ms per MB here), so it is the fallback.
//!
//! A binary that already runs from a sealed memfd or from any read-only
//! mount (e.g. installed on a read-only /usr) is left alone: one open plus
//! one fcntl/fstatvfs. PR_SET_MM_EXE_FILE is not an option: it needs
//! CAP_SYS_RESOURCE, which this host's bounding set lacks.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::{Error, Result};

/// Environment marker set across the re-exec, so that a failure to detect
/// the protection after it becomes an error instead of an exec loop.
pub const SEALED_ENV: &str = "_RPAAS_SEALED_EXE";

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// MFD_EXEC (Linux 6.3): ask for an executable memfd even where the
/// vm.memfd_noexec sysctl would otherwise make it non-executable.
const MFD_EXEC: libc::c_uint = 0x0010;

/// From linux/mount.h (not in every libc release).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// How the running binary is protected against writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeProtection {
    /// A memfd with all four write seals.
    SealedMemfd,
    /// A file on a read-only mount (our detached clone, or a read-only fs).
    ReadOnlyMount,
}

/// How /proc/self/exe is protected, if at all.
pub fn exe_protection() -> Result<Option<ExeProtection>> {
    let exe = open_self_exe()?;
    if seals_of(&exe)? & SEALS == SEALS {
        return Ok(Some(ExeProtection::SealedMemfd));
    }
    let vfs =
        nix::sys::statvfs::fstatvfs(&exe).map_err(|e| Error::sys("fstatvfs /proc/self/exe", e))?;
    if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Ok(Some(ExeProtection::ReadOnlyMount));
    }
    Ok(None)
}

/// True when /proc/self/exe cannot be written (sealed memfd or read-only mount).
pub fn is_sealed_exe() -> Result<bool> {
    Ok(exe_protection()?.is_some())
}

/// Make sure the running binary cannot be written; re-exec through a
/// read-only detached mount of it, or else a sealed memfd copy (this call
/// then does not return). Call it at the very start of `create`, `run` and
/// `exec`, before any thread is spawned: it edits the environment and
/// replaces the process image.
pub fn ensure_sealed_exe() -> Result<()> {
    ensure_protected_exe(&[ExeProtection::ReadOnlyMount, ExeProtection::SealedMemfd])
}

/// `ensure_sealed_exe` with the ways to try, in order (tests use it to
/// exercise each way; callers want `ensure_sealed_exe`).
pub fn ensure_protected_exe(ways: &[ExeProtection]) -> Result<()> {
    if exe_protection()?.is_some() {
        if std::env::var_os(SEALED_ENV).is_some() {
            // Single-threaded at this point (see above), so this is sound.
            std::env::remove_var(SEALED_ENV);
        }
        return Ok(());
    }
    if std::env::var_os(SEALED_ENV).is_some() {
        return Err(Error::security(
            "/proc/self/exe",
            "still writable after re-executing through a protected copy",
        ));
    }
    let mut last = None;
    for way in ways {
        let fd = match way {
            ExeProtection::ReadOnlyMount => readonly_mount_of_self(),
            ExeProtection::SealedMemfd => sealed_copy_of_self(),
        };
        match fd {
            Ok(fd) => return reexec(&fd),
            Err(e) => {
                tracing::debug!("protecting /proc/self/exe as {way:?} failed: {}", e.chain());
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::security("/proc/self/exe", "no protection to try")))
}

/// execveat the binary behind `fd` with our argv and env plus the marker.
fn reexec(fd: &OwnedFd) -> Result<()> {
    let args = cstrings(std::env::args_os())?;
    let mut env: Vec<OsString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    env.push(OsString::from(format!("{SEALED_ENV}=1")));
    let env = cstrings(env)?;
    let e = match nix::unistd::execveat(fd, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(Error::sys("execveat(protected copy of /proc/self/exe)", e))
}

/// An O_PATH fd of the running binary on a read-only, detached clone of its
/// mount (see the module comment).
pub fn readonly_mount_of_self() -> Result<OwnedFd> {
    readonly_clone_of(c"/proc/self/exe")
}

/// open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_RDONLY) of `path`.
fn readonly_clone_of(path: &std::ffi::CStr) -> Result<OwnedFd> {
    let name = path.to_string_lossy();
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = nix::errno::Errno::result(fd)
        .map_err(|e| Error::sys(format!("open_tree({name}, OPEN_TREE_CLONE)"), e))?;
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // struct mount_attr from linux/mount.h.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(r).map_err(|e| {
        Error::sys(
            format!("mount_setattr(clone of {name}, MOUNT_ATTR_RDONLY)"),
            e,
        )
    })?;
    Ok(fd)
}

/// A sealed, close-on-exec memfd holding a copy of the running binary.
pub fn sealed_copy_of_self() -> Result<OwnedFd> {
    let exe = open_self_exe()?;
    let size = nix::sys::stat::fstat(&exe)
        .map_err(|e| Error::sys("fstat /proc/self/exe", e))?
        .st_size;
    // F_SEAL_WRITE fails with EBUSY while the kernel still sees extra
    // references on the copy's pages after its own wait (~150 ms); seen once
    // in a loaded CI-like run. A fresh copy is the retry.
    let mut attempts = 3;
    loop {
        let memfd = memfd_exec("rpaas-run")?;
        copy_all(&exe, &memfd, size)?;
        // SAFETY: plain fcntl on an fd we own.
        let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
        match nix::errno::Errno::result(r) {
            Ok(_) => return Ok(memfd),
            Err(nix::Error::EBUSY) if attempts > 1 => attempts -= 1,
            Err(e) => {
                return Err(Error::sys(
                    "fcntl(F_ADD_SEALS) on the runtime's memfd copy",
                    e,
                ))
            }
        }
    }
}

fn open_self_exe() -> Result<OwnedFd> {
    let path = "/proc/self/exe";
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {path}"), e))
}

/// F_GET_SEALS; 0 for files that cannot carry seals (EINVAL).
fn seals_of(fd: &OwnedFd) -> Result<libc::c_int> {
    // SAFETY: plain fcntl on an fd we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    match nix::errno::Errno::result(r) {
        Ok(s) => Ok(s),
        Err(nix::Error::EINVAL) => Ok(0),
        Err(e) => Err(Error::sys("fcntl(F_GET_SEALS) on /proc/self/exe", e)),
    }
}

fn memfd_exec(name: &str) -> Result<OwnedFd> {
    let cname = CString::new(name).map_err(|e| Error::security("memfd name", e))?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    for flags in [base | MFD_EXEC, base] {
        // SAFETY: valid C string; returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        match nix::errno::Errno::result(fd) {
            // SAFETY: fresh fd owned by nobody else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            // Kernels before 6.3 reject MFD_EXEC: retry without it.
            Err(nix::Error::EINVAL) if flags & MFD_EXEC != 0 => continue,
            Err(e) => return Err(Error::sys(format!("memfd_create({name})"), e)),
        }
    }
    Err(Error::security(
        format!("memfd_create({name})"),
        "no flags accepted",
    ))
}

/// sendfile the whole of `src` (from offset 0) into `dst`.
fn copy_all(src: &OwnedFd, dst: &OwnedFd, size: i64) -> Result<()> {
    let mut off: libc::off_t = 0;
    while off < size {
        let chunk = (size - off).min(1 << 30) as usize;
        // SAFETY: both fds are open; `off` is a valid pointer for the call.
        let n = unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), &mut off, chunk) };
        match nix::errno::Errno::result(n) {
            Ok(0) => {
                return Err(Error::security(
                    "copy /proc/self/exe to memfd",
                    format!("short copy: {off} of {size} bytes"),
                ))
            }
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::sys("sendfile /proc/self/exe to memfd", e)),
        }
    }
    Ok(())
}

fn cstrings(items: impl IntoIterator<Item = OsString>) -> Result<Vec<CString>> {
    items
        .into_iter()
        .map(|s| {
            CString::new(s.into_vec())
                .map_err(|e| Error::security("re-exec through the sealed memfd", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_is_sealed_and_complete() {
        let fd = sealed_copy_of_self().unwrap();
        let seals = seals_of(&fd).unwrap();
        assert_eq!(seals & SEALS, SEALS);
        let copy = nix::sys::stat::fstat(&fd).unwrap().st_size;
        let orig = std::fs::metadata("/proc/self/exe").unwrap().len() as i64;
        assert_eq!(copy, orig);
    }

    #[test]
    fn readonly_clone_is_read_only_and_the_same_file() {
        let fd = readonly_mount_of_self().unwrap();
        let vfs = nix::sys::statvfs::fstatvfs(&fd).unwrap();
        assert!(vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        let a = nix::sys::stat::fstat(&fd).unwrap();
        let b = nix::sys::stat::stat("/proc/self/exe").unwrap();
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }

    #[test]
    fn readonly_clone_refuses_writes_that_the_original_allows() {
        // A file nobody executes, so EROFS is not masked by ETXTBSY.
        let dir = tempfile::Builder::new()
            .prefix("rpaas-exe")
            .tempdir()
            .unwrap();
        let path = dir.path().join("rpaas-bin");
        std::fs::write(&path, b"#!/bin/true\n").unwrap();
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let fd = readonly_clone_of(&c).unwrap();
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        assert_eq!(w.unwrap_err().raw_os_error(), Some(libc::EROFS));
        std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    }

    #[test]
    fn a_plain_test_binary_is_not_sealed() {
        // cargo runs test binaries from target/: a regular file, no seals.
        assert!(!is_sealed_exe().unwrap());
    }
}
