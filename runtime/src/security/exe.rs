//! CVE-2019-5736: a container must not be able to overwrite the runtime
//! binary through /proc/<pid>/exe of a runtime process that entered it
//! (create's init, `exec`), e.g. by making its entrypoint `#!/proc/self/exe`.
//!
//! Defence chosen: run the runtime from a sealed memfd copy of itself.
//! `ensure_sealed_exe` (called first thing by create/run/exec) checks with one
//! open + F_GET_SEALS whether /proc/self/exe already is such a memfd; if not it
//! copies the binary into a memfd with sendfile (in-kernel, no user-space
//! buffer), adds F_SEAL_SEAL|SHRINK|GROW|WRITE and re-executes through it.
//! Every process that later enters a container is a clone of that process,
//! so its /proc/<pid>/exe is the sealed memfd: writes and truncation fail with
//! EPERM forever, and the host's file is never reachable from inside.
//!
//! Why not the alternatives: PR_SET_MM_EXE_FILE needs CAP_SYS_RESOURCE, which
//! this host's bounding set lacks; a read-only bind mount of the binary needs
//! a private mount namespace plus the same re-exec, and an overlayfs trick
//! (runc 1.2) needs mounts per start. A caller that starts the runtime often
//! (the `Host` library) can avoid the copy entirely by keeping one
//! `sealed_copy_of_self()`-style fd of the rpaas-run binary and exec'ing that:
//! `ensure_sealed_exe` then costs one open and one fcntl.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::{Error, Result};

/// Environment marker set across the re-exec, so that a failure to detect
/// the seals after it becomes an error instead of an exec loop.
pub const SEALED_ENV: &str = "_RPAAS_SEALED_EXE";

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// MFD_EXEC (Linux 6.3): ask for an executable memfd even where the
/// vm.memfd_noexec sysctl would otherwise make it non-executable.
const MFD_EXEC: libc::c_uint = 0x0010;

/// True when /proc/self/exe is a memfd carrying all four seals.
pub fn is_sealed_exe() -> Result<bool> {
    let exe = open_self_exe()?;
    Ok(seals_of(&exe)? & SEALS == SEALS)
}

/// Make sure the running binary is a sealed memfd; re-exec through one if
/// not (this call then does not return). Call it at the very start of
/// `create`, `run` and `exec`, before any thread is spawned: it edits the
/// environment and replaces the process image.
pub fn ensure_sealed_exe() -> Result<()> {
    if is_sealed_exe()? {
        if std::env::var_os(SEALED_ENV).is_some() {
            // Single-threaded at this point (see above), so this is sound.
            std::env::remove_var(SEALED_ENV);
        }
        return Ok(());
    }
    if std::env::var_os(SEALED_ENV).is_some() {
        return Err(Error::security(
            "/proc/self/exe",
            "still not a sealed memfd after re-executing through one",
        ));
    }
    let memfd = sealed_copy_of_self()?;
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
    let e =
        match nix::unistd::execveat(&memfd, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
            Err(e) => e,
            Ok(never) => match never {},
        };
    Err(Error::sys("execveat(sealed memfd of /proc/self/exe)", e))
}

/// A sealed, close-on-exec memfd holding a copy of the running binary.
pub fn sealed_copy_of_self() -> Result<OwnedFd> {
    let exe = open_self_exe()?;
    let size = nix::sys::stat::fstat(&exe)
        .map_err(|e| Error::sys("fstat /proc/self/exe", e))?
        .st_size;
    let memfd = memfd_exec("rpaas-run")?;
    copy_all(&exe, &memfd, size)?;
    // SAFETY: plain fcntl on an fd we own.
    let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
    nix::errno::Errno::result(r)
        .map_err(|e| Error::sys("fcntl(F_ADD_SEALS) on the runtime's memfd copy", e))?;
    Ok(memfd)
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
    fn a_plain_test_binary_is_not_sealed() {
        // cargo runs test binaries from target/: a regular file, no seals.
        assert!(!is_sealed_exe().unwrap());
    }
}
