//! The keeper: a tiny per-container monitor, the parent of init (a session
//! leader and child subreaper, forked by `create --keeper`). It waits for init,
//! writes `<root>/<id>/exit` atomically before anything else, and exits.
//! It holds no lock and no socket anyone needs, so the agent and the runtime
//! can be killed, restarted or upgraded at any time.
//!
//! Detached containers may have their stdout/stderr drained by the keeper into
//! `<root>/<id>/log`, rotated past a size to `log.1` … `log.<files-1>` (the
//! oldest dropped), like kubelet's containerLogMaxSize × containerLogMaxFiles
//! (defaults 10 MiB × 5 files). Two formats ([`LogFormat`]): Docker's
//! json-file lines `{"time":…,"stream":"stdout","log":…}` (one per read), or
//! the CRI format `<RFC3339Nano> <stream> <P|F> <content>` (one per line; a
//! line longer than [`CRI_MAX_LINE`] is cut into `P` records ended by an `F`,
//! and those pieces never straddle a rotation).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::state::{now_rfc3339, Dir, ExitRecord};

const DEFAULT_LOG_MAX: u64 = 10 * 1024 * 1024;
const DEFAULT_LOG_FILES: u32 = 5;
/// CRI records carry at most this much of a line (containerd's buffer size).
pub const CRI_MAX_LINE: usize = 16 * 1024;

/// How the keeper writes the container's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Docker's json-file lines (podman's "json-file" driver).
    #[default]
    Json,
    /// The CRI log format (kubelet's; podman's "k8s-file" driver).
    Cri,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json-file",
            LogFormat::Cri => "k8s-file",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "json-file" | "json" => Ok(LogFormat::Json),
            "k8s-file" | "cri" => Ok(LogFormat::Cri),
            _ => Err(format!(
                "log driver {s:?}: expected json-file or k8s-file (cri)"
            )),
        }
    }
}

/// The keeper's log settings; zeros mean the defaults (10 MiB, 5 files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Rotate past this many bytes.
    pub max_size: u64,
    /// Files kept, the live one included (at least 2).
    pub max_files: u32,
    pub format: LogFormat,
}

impl LogOptions {
    fn size(&self) -> u64 {
        if self.max_size == 0 {
            DEFAULT_LOG_MAX
        } else {
            self.max_size
        }
    }

    fn files(&self) -> u32 {
        if self.max_files == 0 {
            DEFAULT_LOG_FILES
        } else {
            self.max_files.max(2)
        }
    }

    /// One argv word for the `rpaas-keeper` binary: `SIZE:FILES:FORMAT`.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}",
            self.max_size,
            self.max_files,
            self.format.as_str()
        )
    }

    /// [`to_arg`](Self::to_arg)'s word; a bare size (earlier builds) too.
    pub fn from_arg(s: &str) -> Option<LogOptions> {
        let mut it = s.split(':');
        let max_size = it.next()?.parse().ok()?;
        let max_files = match it.next() {
            Some(f) => f.parse().ok()?,
            None => 0,
        };
        let format = match it.next() {
            Some(f) => f.parse().ok()?,
            None => LogFormat::Json,
        };
        Some(LogOptions {
            max_size,
            max_files,
            format,
        })
    }
}

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
    log: &LogOptions,
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
        log.to_arg(),
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
    log_opts: LogOptions,
) -> i32 {
    // Back from idle_until_running: the exit record must not wait for CPU.
    set_policy(libc::SCHED_OTHER);
    let oom_before = cgroup.oom_kill_count().unwrap_or(0);
    let mut log = logs.map(|(out, err)| LogSink::new(dir, out, err, log_opts));
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
    opts: LogOptions,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// CRI: the unfinished line of stdout and stderr.
    pending: [Vec<u8>; 2],
    /// CRI: a line of that stream was cut into P records not yet ended by
    /// its F (no rotation in between).
    open_partial: [bool; 2],
}

impl LogSink {
    fn new(dir: &Dir, out: OwnedFd, err: OwnedFd, opts: LogOptions) -> LogSink {
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
            opts,
            out: Some(out),
            err: Some(err),
            pending: [Vec::new(), Vec::new()],
            open_partial: [false, false],
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
        // CRI: a last line without its newline is a whole line now.
        for i in 0..2 {
            if !self.pending[i].is_empty() || self.open_partial[i] {
                let rest = std::mem::take(&mut self.pending[i]);
                self.cri_record(i, b'F', &rest);
            }
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
        if self.opts.format == LogFormat::Cri {
            return self.append_cri(usize::from(stream == "stderr"), data);
        }
        let line = serde_json::json!({
            "time": now_rfc3339(),
            "stream": stream,
            "log": String::from_utf8_lossy(data),
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.write_record(&bytes, true);
    }

    /// One record, written whole by one write, after a rotation if it would
    /// not fit (`may_rotate`: not in the middle of a cut line; a cut line
    /// may overflow up to twice the size before it is rotated anyway).
    fn write_record(&mut self, bytes: &[u8], may_rotate: bool) {
        let over = self.size + bytes.len() as u64 > self.opts.size();
        if self.size > 0 && over && (may_rotate || self.size > 2 * self.opts.size()) {
            self.rotate();
        }
        if let Some(f) = &mut self.file {
            if f.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }

    /// CRI: whole lines become F records; a line longer than CRI_MAX_LINE
    /// is cut into P records; the rest waits for its newline.
    fn append_cri(&mut self, i: usize, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.pending[i]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let mut line = &buf[start..start + nl];
            while line.len() > CRI_MAX_LINE {
                self.cri_record(i, b'P', &line[..CRI_MAX_LINE]);
                line = &line[CRI_MAX_LINE..];
            }
            self.cri_record(i, b'F', line);
            start += nl + 1;
        }
        let mut rest = &buf[start..];
        while rest.len() >= CRI_MAX_LINE {
            self.cri_record(i, b'P', &rest[..CRI_MAX_LINE]);
            rest = &rest[CRI_MAX_LINE..];
        }
        self.pending[i] = rest.to_vec();
    }

    fn cri_record(&mut self, i: usize, tag: u8, content: &[u8]) {
        let stream = if i == 0 { "stdout" } else { "stderr" };
        let mut rec = Vec::with_capacity(content.len() + 48);
        rec.extend_from_slice(now_rfc3339().as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.push(b' ');
        rec.push(tag);
        rec.push(b' ');
        rec.extend_from_slice(content);
        rec.push(b'\n');
        // Rotating is fine unless a cut line of either stream is open.
        let may_rotate = !self.open_partial[0] && !self.open_partial[1];
        self.write_record(&rec, may_rotate);
        self.open_partial[i] = tag == b'P';
    }

    /// log.<n-2> → log.<n-1> (the oldest dropped) … log → log.1, then a new log.
    fn rotate(&mut self) {
        let files = self.opts.files();
        let nth = |k: u32| self.path.with_extension(k.to_string());
        let _ = std::fs::remove_file(nth(files - 1));
        for k in (1..files - 1).rev() {
            let _ = std::fs::rename(nth(k), nth(k + 1));
        }
        let _ = std::fs::rename(&self.path, nth(1));
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
