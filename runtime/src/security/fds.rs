//! Process attributes set with one syscall each: which fds survive execve,
//! no_new_privs, dumpable, oom_score_adj.

use std::io::Write;
use std::os::fd::RawFd;

use crate::{Error, Result};

/// CLOSE_RANGE_CLOEXEC from linux/close_range.h (not in every libc release).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Close every fd >= `first` except those in `keep`: with close_range(2) (one
/// syscall per gap), or by walking /proc/self/fd on kernels before 5.9 or
/// where a seccomp filter denies close_range.
///
/// Use it where nothing else of the runtime needs its fds any more; in the
/// init, whose sync fd must live until execve, prefer `cloexec_fds_from`.
pub fn close_fds_from(first: i32, keep: &[i32]) -> Result<()> {
    apply(first, keep, 0)
}

/// Mark every fd >= `first` except `keep` close-on-exec, so that none of the
/// runtime's fds leaks into the container while the ones the init still uses
/// (its sync fd, the exec fifo) keep working until execve. `keep` fds are
/// left exactly as they are: a sync fd opened with O_CLOEXEC still closes at
/// execve, while fds the caller passed to preserve (below `first`, or in
/// `keep` without FD_CLOEXEC) are inherited.
/// CLOSE_RANGE_CLOEXEC needs Linux 5.11; older kernels, and a filter that
/// denies close_range, get the /proc/self/fd walk.
pub fn cloexec_fds_from(first: i32, keep: &[i32]) -> Result<()> {
    apply(first, keep, CLOSE_RANGE_CLOEXEC)
}

fn apply(first: i32, keep: &[i32], flags: libc::c_uint) -> Result<()> {
    if first < 0 {
        return Err(Error::security(
            "close fds",
            format!("first fd {first} is negative"),
        ));
    }
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&k| k >= first)
        .map(|&k| k as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    match for_each_gap(first as u32, &keep, |lo, hi| close_range(lo, hi, flags)) {
        Ok(()) => Ok(()),
        // ENOSYS: no close_range (< 5.9); EINVAL: no CLOSE_RANGE_CLOEXEC
        // (< 5.11); EPERM (or any errno a profile chose): a seccomp filter of
        // ours (`exec` loads it before this) or of our caller denies it. The
        // /proc/self/fd walk does the same work with getdents and fcntl/close.
        Err(range_err) => walk_proc_fds(first, &keep, flags).map_err(|walk_err| {
            Error::security(
                format!("close fds from {first} keeping {keep:?}"),
                format!("close_range: {range_err}; walking /proc/self/fd: {walk_err}"),
            )
        }),
    }
}

/// Call `f(lo, hi)` for each inclusive fd range from `first` up that holds
/// none of the sorted `keep` fds.
fn for_each_gap(
    first: u32,
    keep: &[u32],
    mut f: impl FnMut(u32, u32) -> nix::Result<()>,
) -> nix::Result<()> {
    let mut lo = first;
    for &k in keep {
        if k > lo {
            f(lo, k - 1)?;
        }
        lo = k.saturating_add(1);
    }
    f(lo, u32::MAX)
}

fn close_range(lo: u32, hi: u32, flags: libc::c_uint) -> nix::Result<()> {
    // SAFETY: close_range only acts on this process's fd table.
    let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, flags) };
    nix::errno::Errno::result(r).map(drop)
}

/// Fallback: list /proc/self/fd first (the listing's own fd is closed by
/// then), then close or mark each listed fd. Every fd that stays open
/// without close-on-exec is an error: none may leak into the container.
fn walk_proc_fds(first: i32, keep: &[u32], flags: libc::c_uint) -> Result<()> {
    let dir = "/proc/self/fd";
    let fds: Vec<RawFd> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd < first || keep.contains(&(fd as u32)) {
            continue;
        }
        let cloexec = flags & CLOSE_RANGE_CLOEXEC != 0;
        // SAFETY: fd numbers from our own fd table, none of them owned by
        // Rust code that will use it again (the caller keeps those in `keep`).
        let rc = unsafe {
            if cloexec {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)
            } else {
                libc::close(fd)
            }
        };
        match nix::errno::Errno::result(rc) {
            // The listing's own fd, closed by now.
            Ok(_) | Err(nix::errno::Errno::EBADF) => {}
            // close(2) releases the fd even when it reports EINTR.
            Err(nix::errno::Errno::EINTR) if !cloexec => {}
            Err(e) => {
                let op = if cloexec {
                    "fcntl(F_SETFD, FD_CLOEXEC)"
                } else {
                    "close"
                };
                return Err(Error::sys(format!("{op} fd {fd}"), e));
            }
        }
    }
    Ok(())
}

/// PR_SET_NO_NEW_PRIVS (process.noNewPrivileges): execve can no longer grant
/// privileges (setuid bits, file capabilities).
pub fn set_no_new_privileges() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| Error::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))
}

/// PR_SET_DUMPABLE. Non-dumpable while joining the container's namespaces so
/// that a process already in them cannot ptrace us or open our
/// /proc/<pid>/{fd,exe,mem}; execve makes the process dumpable again.
pub fn set_dumpable(on: bool) -> Result<()> {
    nix::sys::prctl::set_dumpable(on)
        .map_err(|e| Error::sys(format!("prctl(PR_SET_DUMPABLE, {})", on as u8), e))
}

/// Write `process.oomScoreAdj` to /proc/<pid|self>/oom_score_adj.
pub fn set_oom_score_adj(pid: Option<i32>, v: i32) -> Result<()> {
    if !(-1000..=1000).contains(&v) {
        return Err(Error::spec(
            "process.oomScoreAdj",
            format!("{v} is outside -1000..=1000"),
        ));
    }
    let path = match pid {
        Some(p) => format!("/proc/{p}/oom_score_adj"),
        None => "/proc/self/oom_score_adj".to_string(),
    };
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(v.to_string().as_bytes())
    };
    write().map_err(|e| {
        let op = if e.raw_os_error() == Some(libc::EACCES) {
            // Lowering below the current value needs CAP_SYS_RESOURCE.
            "process.oomScoreAdj: write (lowering needs CAP_SYS_RESOURCE)"
        } else {
            "process.oomScoreAdj: write"
        };
        Error::io(op, path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_kept_fds() {
        // The real gap walk, recording instead of closing.
        fn gaps(first: u32, keep: &[u32]) -> Vec<(u32, u32)> {
            let mut out = vec![];
            for_each_gap(first, keep, |lo, hi| {
                out.push((lo, hi));
                Ok(())
            })
            .unwrap();
            out
        }
        assert_eq!(gaps(3, &[]), vec![(3, u32::MAX)]);
        assert_eq!(gaps(3, &[3, 7]), vec![(4, 6), (8, u32::MAX)]);
        assert_eq!(gaps(3, &[5, 6]), vec![(3, 4), (7, u32::MAX)]);
    }

    #[test]
    fn oom_score_adj_range_is_checked() {
        let e = set_oom_score_adj(None, 1001).unwrap_err().to_string();
        assert!(e.contains("process.oomScoreAdj"), "{e}");
    }

    #[test]
    fn negative_first_is_refused() {
        assert!(close_fds_from(-1, &[]).is_err());
    }
}
