//! The keeper: a tiny per-container monitor, the parent of init (a session
//! leader and child subreaper, forked by `create --keeper`). It waits for init,
//! writes `<root>/<id>/exit` atomically before anything else, and exits.
//! It holds no lock and no socket anyone needs, so the agent and the runtime
//! can be killed, restarted or upgraded at any time.
//!
//! Detached containers may have their stdout/stderr drained by the keeper into
//! `<root>/<id>/log` as JSON lines `{"time":…,"stream":"stdout","log":…}`,
//! rotated to `log.1` past a size (like conmon's log-size-max).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::state::{now_rfc3339, Dir, ExitRecord};

const DEFAULT_LOG_MAX: u64 = 10 * 1024 * 1024;

/// Env var naming the small keeper binary; else it is looked up as
/// `rpaas-keeper` beside the running binary (`rpaas-run`).
pub const KEEPER_BIN_ENV: &str = "RPAAS_KEEPER_BIN";

/// Replace this forked keeper by the small `rpaas-keeper` binary, which runs
/// [`run`] with a fraction of the memory: a fork of the whole runtime keeps
/// its relocated data, TLS libraries and heap alive for the container's
/// lifetime. Init stays our child (execve keeps children) and the subreaper
/// flag survives execve. Returns only if the binary cannot be executed; the
/// caller then keeps monitoring in-process.
pub fn exec_small(
    dir: &Dir,
    init: i32,
    cgroup: &Cgroup,
    logs: Option<&(OwnedFd, OwnedFd)>,
    log_max: u64,
) {
    let bin = match std::env::var_os(KEEPER_BIN_ENV) {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("rpaas-keeper"),
            Err(_) => return,
        },
    };
    let mut args = vec![
        bin.display().to_string(),
        dir.path.display().to_string(),
        init.to_string(),
        cgroup.id().to_string(),
        cgroup.path().to_string(),
        log_max.to_string(),
    ];
    if let Some((out, err)) = logs {
        // The pipes must survive execve: they were made close-on-exec.
        for fd in [out, err] {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
            args.push(fd.as_raw_fd().to_string());
        }
    }
    let Ok(cargs) = args
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let env: [std::ffi::CString; 0] = [];
    let _ = nix::unistd::execve(&cargs[0], &cargs, &env);
}

/// Lower the keeper to SCHED_IDLE for its start-up: once it has reported
/// the container created, the keeper's exec of `rpaas-keeper` (and that
/// binary's glibc start-up, ~0.5 ms of CPU here) would otherwise compete
/// with the caller's `start` and the container's own exec for the CPUs, on
/// the path the caller is waiting on. [`run`] restores the normal policy
/// first thing; init was cloned before this and keeps the normal one.
pub fn idle_until_running() {
    set_policy(libc::SCHED_IDLE);
}

fn set_policy(policy: libc::c_int) {
    // SAFETY: all-zero is a valid sched_param (priority 0, which the
    // normal and idle policies require).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // The system call, not libc's wrapper: musl's sched_setscheduler always
    // fails with ENOSYS (POSIX has it per process, Linux per thread).
    // SAFETY: sched_setscheduler on this thread with a valid param; failure
    // only leaves the policy as it was, which is harmless.
    let _ = unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &param) };
}

/// Runs until init exits; returns the keeper's own exit code.
pub fn run(
    dir: &Dir,
    init: i32,
    cgroup: &Cgroup,
    logs: Option<(OwnedFd, OwnedFd)>,
    log_max: u64,
) -> i32 {
    // Back from idle_until_running: the exit record must not wait for CPU.
    set_policy(libc::SCHED_OTHER);
    let oom_before = cgroup.oom_kill_count().unwrap_or(0);
    let mut log = logs.map(|(out, err)| {
        LogSink::new(
            dir,
            out,
            err,
            if log_max == 0 {
                DEFAULT_LOG_MAX
            } else {
                log_max
            },
        )
    });
    let status = match &mut log {
        Some(sink) => sink.pump_until_exit(init),
        None => wait_for(init),
    };
    let (code, signal) = match status {
        Some(WaitStatus::Exited(_, c)) => (c, None),
        Some(WaitStatus::Signaled(_, s, _)) => (128 + s as i32, Some(s as i32)),
        _ => (255, None),
    };
    let oom_after = cgroup.oom_kill_count().unwrap_or(oom_before);
    let record = ExitRecord {
        exit_code: code,
        exit_signal: signal,
        oom_killed: oom_after > oom_before,
        finished_at: now_rfc3339(),
    };
    // The exit record first: everything else is best effort.
    let written = dir.write_exit(&record).is_ok();
    if let Some(sink) = &mut log {
        sink.drain();
    }
    reap_orphans();
    if written {
        0
    } else {
        1
    }
}

/// Block until `init` exits, reaping any other child on the way (we are a subreaper).
fn wait_for(init: i32) -> Option<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(s) if s.pid() == Some(Pid::from_raw(init)) => return Some(s),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

fn reap_orphans() {
    while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Copies the container's output into the log file.
struct LogSink {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    size: u64,
    max: u64,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

impl LogSink {
    fn new(dir: &Dir, out: OwnedFd, err: OwnedFd, max: u64) -> LogSink {
        let path = dir.log_file();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        LogSink {
            path,
            file,
            size,
            max,
            out: Some(out),
            err: Some(err),
        }
    }

    /// poll the pipes and a pidfd of init; returns init's wait status.
    fn pump_until_exit(&mut self, init: i32) -> Option<WaitStatus> {
        let pidfd = crate::hooks::pidfd_open(init);
        loop {
            let mut fds = Vec::with_capacity(3);
            let pfd = pidfd.as_ref().map(|p| p.as_raw_fd()).unwrap_or(-1);
            fds.push(libc::pollfd {
                fd: pfd,
                events: libc::POLLIN,
                revents: 0,
            });
            for fd in [&self.out, &self.err] {
                let raw = fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
                fds.push(libc::pollfd {
                    fd: raw,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: polling fds we own; negative fds are ignored by poll.
            let rc = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    if pfd < 0 { 100 } else { -1 },
                )
            };
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return wait_for(init);
            }
            if fds[1].revents != 0 {
                self.copy(true);
            }
            if fds[2].revents != 0 {
                self.copy(false);
            }
            if fds[0].revents != 0 || pfd < 0 {
                match waitpid(Pid::from_raw(init), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(s) => return Some(s),
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return None,
                }
            }
            reap_orphans_except(init);
        }
    }

    /// Read what is left in the pipes without blocking (after init's exit).
    fn drain(&mut self) {
        for stdout in [true, false] {
            let fd = if stdout { &self.out } else { &self.err };
            if let Some(f) = fd {
                let _ = nix::fcntl::fcntl(
                    f,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
            }
            while self.copy(stdout) {}
        }
    }

    /// Copy one read's worth; false at EOF or when nothing is there.
    fn copy(&mut self, stdout: bool) -> bool {
        let slot = if stdout { &mut self.out } else { &mut self.err };
        let Some(fd) = slot.as_ref() else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                *slot = None;
                false
            }
            Ok(n) => {
                self.append(if stdout { "stdout" } else { "stderr" }, &buf[..n]);
                true
            }
            Err(nix::errno::Errno::EINTR) => true,
            Err(_) => false,
        }
    }

    fn append(&mut self, stream: &str, data: &[u8]) {
        let line = serde_json::json!({
            "time": now_rfc3339(),
            "stream": stream,
            "log": String::from_utf8_lossy(data),
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        if self.size + bytes.len() as u64 > self.max {
            self.rotate();
        }
        if let Some(f) = &mut self.file {
            if f.write_all(&bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        let old = self.path.with_extension("1");
        let _ = std::fs::rename(&self.path, old);
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

fn reap_orphans_except(init: i32) {
    // Reap only children other than init, one at a time, without blocking:
    // waitpid(-1) could take init's status away from pump_until_exit.
    let Ok(entries) =
        std::fs::read_to_string(format!("/proc/self/task/{}/children", std::process::id()))
    else {
        return;
    };
    for pid in entries
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid != init {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}
