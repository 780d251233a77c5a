//! Exec probes: `rpaas-run exec` spawned without waiting, its exit seen
//! through a pidfd in the scheduler's epoll and reaped there. On a timeout
//! the probe's process inside the instance is killed with everything it
//! started (found in the container's cgroup by parentage), then rpaas-run
//! reaps it and exits.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Where exec probes of one instance run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    /// The `rpaas-run` binary.
    pub runtime: PathBuf,
    /// Its `--root`.
    pub state_root: PathBuf,
    /// The container id (the instance name).
    pub id: String,
}

/// One exec probe run.
pub(crate) struct Running {
    child: Child,
    pub(crate) pidfd: OwnedFd,
    pid_file: PathBuf,
    target: ExecTarget,
    killed: bool,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain syscall; on success we own the returned fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Running {
    /// Spawn `rpaas-run --root R exec --pid-file F ID COMMAND...`; `tag`
    /// makes the pid file's name unique among the probes of the host.
    pub(crate) fn spawn(t: &ExecTarget, command: &[String], tag: u64) -> Result<Running, String> {
        let pid_file = t.state_root.join(format!("#probe-{tag}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let mut child = Command::new(&t.runtime)
            .arg("--root")
            .arg(&t.state_root)
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&t.id)
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", t.runtime.display()))?;
        let pidfd = match pidfd_open(child.id()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("pidfd_open: {e}"));
            }
        };
        Ok(Running {
            child,
            pidfd,
            pid_file,
            target: t.clone(),
            killed: false,
        })
    }

    /// Once the pidfd is readable: the outcome (rpaas-run exits with the
    /// command's code). None if it has not exited after all.
    pub(crate) fn reap(&mut self) -> Option<Result<(), String>> {
        let st = match self.child.try_wait() {
            Ok(Some(st)) => st,
            Ok(None) => return None,
            Err(e) => return Some(Err(format!("wait: {e}"))),
        };
        let _ = std::fs::remove_file(&self.pid_file);
        Some(match st.code() {
            Some(0) => Ok(()),
            Some(c) => Err(format!("exit status {c}")),
            None => Err(format!("{st}")),
        })
    }

    /// Kill the probe's process and what it started inside the instance;
    /// rpaas-run then reaps it and exits (the pidfd says when). Without a
    /// pid file yet (the exec had not started), rpaas-run itself is killed.
    pub(crate) fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let Some(pid) = pid else {
            let _ = self.child.kill();
            return;
        };
        // Twice: a fork between the listing and the kill is caught the second time.
        for _ in 0..2 {
            for p in tree(&self.target, pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// At shutdown: kill and wait (blocking).
    pub(crate) fn finish(mut self) {
        self.kill();
        if self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if self.child.try_wait().ok().flatten().is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// `pid` and its descendants among the container's processes. `pid` is the
/// exec'd process, still a child of rpaas-run (not reaped), so not reused.
fn tree(t: &ExecTarget, pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let procs = rpaas_runtime::Container::load(&t.state_root, &t.id)
        .and_then(|c| c.processes())
        .unwrap_or_default();
    let parent: Vec<(i32, i32)> = procs
        .iter()
        .filter_map(|&p| ppid(p).map(|pp| (p, pp)))
        .collect();
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        for &(p, pp) in &parent {
            if pp == cur && !out.contains(&p) {
                out.push(p);
            }
        }
        i += 1;
    }
    out
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the last ')' : state ppid ...
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
