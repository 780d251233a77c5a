//! Opening a path inside a root directory.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Open `path` inside the directory `root` with openat2(2) and
/// `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: absolute symlinks and `..`
/// resolve as if `root` were `/`, and /proc magic links are refused.
/// A leading `/` is dropped; an empty path opens `root` itself. `flags` are
/// open(2) flags (`O_CLOEXEC` is always added); nothing is created.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
) -> std::io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an
    // open_how we own, all outliving the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_and_dot_dot_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), b"host").unwrap();
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("secret"), b"root").unwrap();
        symlink(host.path().join("secret"), root.path().join("abs")).unwrap();
        symlink("../../../../secret", root.path().join("up")).unwrap();
        std::fs::write(root.path().join("secret"), b"top").unwrap();
        let dir = std::fs::File::open(root.path()).unwrap();
        let read = |p: &str| {
            let fd = open_in_root(dir.as_fd(), Path::new(p), libc::O_RDONLY).unwrap();
            std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
        };
        assert_eq!(read("/abs"), "root");
        assert_eq!(read("up"), "top");
        let d = open_in_root(dir.as_fd(), Path::new(""), libc::O_DIRECTORY).unwrap();
        assert!(d.as_raw_fd() >= 0);
    }

    #[test]
    fn a_missing_path_is_enoent_and_nothing_is_made() {
        let root = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(root.path()).unwrap();
        let e = open_in_root(dir.as_fd(), Path::new("/no/such"), libc::O_RDONLY).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
