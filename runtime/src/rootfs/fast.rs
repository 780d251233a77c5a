//! One-syscall resolution inside the rootfs: openat2(2) with RESOLVE_IN_ROOT
//! (symlinks, absolute or `..`, cannot leave the root) and
//! RESOLVE_NO_MAGICLINKS (no /proc/self/fd tricks).
//!
//! pathrs gives the same guarantee but re-verifies /proc on every call (about
//! ten syscalls each); init resolves a few dozen paths on the container start
//! path, so existing paths are opened here and pathrs is kept for what it
//! does best: creating missing directories and files safely (`mkdir_all`).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use pathrs::{Handle, Root};

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn open_in_root(root: &Root, path: &Path, extra: libc::c_int) -> std::io::Result<Handle> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | extra) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_fd().as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that we now own.
    Ok(Handle::from_fd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
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
