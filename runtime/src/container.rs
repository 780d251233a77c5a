//! A container that exists under a state root: load, status, start, kill,
//! pause, resume, update, delete, wait. This is the library API the host agent
//! uses; none of it forks, so it is safe in a multi-threaded (tokio) program.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Spec};
use serde::Serialize;

use crate::cgroups::Cgroup;
use crate::state::{Dir, ExitRecord, Lock, Phase, ProcessId, State, Step};
use crate::{failpoint, hooks, spec};
use crate::{Error, Result};

/// What `state` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Container {
    pub root: PathBuf,
    pub dir: Dir,
    pub state: State,
}

impl Container {
    /// Load container `id` from the state root.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        crate::state::validate_id(id)?;
        let dir = Dir::new(root, id);
        if !dir.state_file().exists() {
            return Err(Error::NotFound { id: id.to_string() });
        }
        let state = dir.read_state()?;
        Ok(Container {
            root: root.to_path_buf(),
            dir,
            state,
        })
    }

    /// Every container under the root (unreadable entries are skipped).
    pub fn list(root: &Path) -> Result<Vec<Container>> {
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read state root", root, e)),
        };
        let mut out: Vec<Container> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|id| Container::load(root, &id).ok())
            .collect();
        out.sort_by(|a, b| a.state.id.cmp(&b.state.id));
        Ok(out)
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// `delete [--force] ID` by id: also removes what a create killed before
    /// its first state write left (a state dir with no state.json, which
    /// [`Container::load`] reports as not found). Succeeds only when the
    /// container's state dir and everything it recorded are gone.
    pub fn delete_id(root: &Path, id: &str, force: bool) -> Result<()> {
        crate::state::validate_id(id)?;
        let dir = Dir::new(root, id);
        if !dir.path.is_dir() {
            return Err(Error::NotFound { id: id.to_string() });
        }
        let lock = Lock::try_take(&dir.lock_file())?;
        let lock = match lock {
            Some(l) => l,
            // Held (a create, start or delete at work: wait for it), or no
            // lock file (an earlier build's create): take it the usual way.
            None => match dir.lock() {
                Ok(l) => l,
                Err(_) if !dir.path.is_dir() => return Err(Error::NotFound { id: id.to_string() }),
                Err(e) => return Err(e),
            },
        };
        match dir.read_state() {
            Ok(state) => Container {
                root: root.to_path_buf(),
                dir,
                state,
            }
            .delete_locked(lock, force),
            Err(_) if !dir.path.is_dir() => Err(Error::NotFound { id: id.to_string() }),
            // Killed before its first state write: nothing else was made yet.
            Err(_) if !dir.state_file().exists() => crate::state::remove_state_dir(&dir.path),
            Err(e) => Err(Error::State {
                id: id.to_string(),
                reason: format!(
                    "state unreadable, not deleted (its processes and cgroup may be alive): {}",
                    e.chain()
                ),
            }),
        }
    }

    pub fn cgroup(&self) -> Option<Cgroup> {
        let path = self.state.cgroup_path.as_deref()?;
        Cgroup::new(&self.state.id, Some(path)).ok()
    }

    /// True if this state was written in an earlier boot (its processes are gone).
    pub fn is_stale(&self) -> bool {
        !self.state.boot_id.is_empty() && self.state.boot_id != crate::state::boot_id()
    }

    /// The init process, if it is the very process that was started (pid + start time).
    pub fn live_init(&self) -> Option<ProcessId> {
        if self.is_stale() {
            return None;
        }
        self.state.init.filter(|p| p.is_alive())
    }

    pub fn status(&self) -> Status {
        if self.state.phase == Phase::Creating {
            // Still being created if the creator holds the lock; otherwise it was killed.
            return match Lock::try_take(&self.dir.lock_file()) {
                Ok(None) if !self.is_stale() => Status::Creating,
                _ => Status::Stopped,
            };
        }
        self.status_after_create()
    }

    /// The status of a container whose create finished (phase created or running).
    fn status_after_create(&self) -> Status {
        let Some(init) = self.live_init() else {
            return Status::Stopped;
        };
        if self.state.phase == Phase::Created
            && self.dir.fifo().exists()
            && !self.init_has_execd(&init)
        {
            return Status::Created;
        }
        if self
            .cgroup()
            .and_then(|c| c.is_frozen().ok())
            .unwrap_or(false)
        {
            return Status::Paused;
        }
        Status::Running
    }

    /// Whether init has left the runtime's code (passed the start fifo and
    /// exec'd): its executable is no longer the one recorded at create. A
    /// `start` killed after init consumed the fifo byte leaves phase
    /// "created" and the fifo behind; this is what tells the truth then.
    /// Unknown (states of earlier builds, unreadable exe): false.
    pub fn init_has_execd(&self, init: &ProcessId) -> bool {
        match (self.state.init_exe, crate::state::FileId::exe_of(init.pid)) {
            (Some(recorded), Some(now)) => recorded != now && init.is_alive(),
            _ => false,
        }
    }

    pub fn exit_record(&self) -> Result<Option<ExitRecord>> {
        self.dir.read_exit()
    }

    /// Keeper mode only: the keeper is gone without an exit record, so the
    /// container's exit status is lost (it was killed, e.g. SIGKILL or OOM).
    pub fn exit_status_lost(&self) -> bool {
        let Some(keeper) = self.state.keeper else {
            return false;
        };
        if keeper.is_alive() && !self.is_stale() {
            return false;
        }
        // The keeper writes the record before it exits: read after the check.
        matches!(self.exit_record(), Ok(None))
    }

    /// The OCI state plus rpaas's extras (exit status, keeper pid).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = match status {
            Status::Stopped => 0,
            _ => self.state.init.map(|p| p.pid).unwrap_or(0),
        };
        let mut v = serde_json::json!({
            "ociVersion": self.state.oci_version,
            "id": self.state.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.state.bundle,
            "rootfs": self.state.rootfs,
            "created": self.state.created,
            "owner": self.state.owner,
            "annotations": self.state.annotations,
        });
        if let Some(k) = self.state.keeper {
            v["keeperPid"] = k.pid.into();
        }
        if let Ok(Some(exit)) = self.exit_record() {
            v["exitCode"] = exit.exit_code.into();
            if let Some(s) = exit.exit_signal {
                v["exitSignal"] = s.into();
            }
            v["oomKilled"] = exit.oom_killed.into();
            v["finishedAt"] = exit.finished_at.into();
        } else if self.exit_status_lost() {
            v["exitStatusUnknown"] = "keeper died".into();
        }
        v
    }

    /// The config.json copy taken at create (the bundle may have changed since).
    pub fn spec(&self) -> Result<Spec> {
        let path = self.dir.config_copy();
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        spec::parse_json(&bytes, "config.json")
    }

    /// Release init: open the fifo for reading, wait for init's byte, remove it.
    pub fn start(&mut self) -> Result<()> {
        let _lock = self.dir.lock()?;
        self.state = self.dir.read_state()?;
        let status = self.status();
        if matches!(status, Status::Running | Status::Paused) {
            // Started already (perhaps by a start killed before it could
            // record it): fail fast, as runc does, and record what is true.
            return Err(self.already_running());
        }
        if status != Status::Created {
            return Err(self.wrong_state("start", status));
        }
        let init = self
            .live_init()
            .ok_or_else(|| self.wrong_state("start", Status::Stopped))?;
        failpoint::crash("start::begin");
        let fifo_path = self.dir.fifo();
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(&fifo_path)
            .map_err(|e| Error::io("open start fifo", &fifo_path, e))?;
        let pidfd = hooks::pidfd_open(init.pid);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: fifo.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd.as_ref().map(|p| p.as_raw_fd()).unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: polling two fds we own (a negative one is ignored).
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                let mut b = [0u8; 1];
                if matches!(nix::unistd::read(&fifo, &mut b), Ok(1)) {
                    break;
                }
            }
            if fds[1].revents != 0 || !init.is_alive() {
                return Err(Error::State {
                    id: self.state.id.clone(),
                    reason: "init exited before start".into(),
                });
            }
            // Someone else's start took the byte (and was killed before it
            // recorded it): no byte will come, init runs the program.
            if self.init_has_execd(&init) {
                return Err(self.already_running());
            }
        }
        let _ = std::fs::remove_file(&fifo_path);
        self.state.phase = Phase::Running;
        self.dir.write_state(&self.state)?;
        failpoint::crash("start::released");
        if let Ok(spec) = self.spec() {
            let state_json = crate::create::oci_state_json(&self.state, "running", None);
            // poststart failures are reported but do not stop the container (runtime-spec).
            if let Err(e) = hooks::run_all(
                "poststart",
                spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()),
                &state_json,
            ) {
                tracing::warn!("container {}: {}", self.state.id, e.chain());
            }
        }
        Ok(())
    }

    /// Send `signal` to init, or with `all` to every process of the container.
    pub fn kill(&self, signal: Signal, all: bool) -> Result<()> {
        let status = self.status();
        if all {
            let cg = self
                .cgroup()
                .ok_or_else(|| self.wrong_state("kill --all", status))?;
            for pid in cg.pids()? {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            return Ok(());
        }
        let init = self
            .live_init()
            .ok_or_else(|| self.wrong_state("kill", Status::Stopped))?;
        // A pidfd pins the process we verified: the signal cannot hit a reused pid.
        match hooks::pidfd_open(init.pid) {
            Some(fd) if init.is_alive() => {
                // SAFETY: pidfd_send_signal on a pidfd we own.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as i32,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                if rc != 0 {
                    return Err(Error::sys(
                        format!("container {}: kill {signal}", self.state.id),
                        nix::errno::Errno::last(),
                    ));
                }
                Ok(())
            }
            _ => Err(self.wrong_state("kill", Status::Stopped)),
        }
    }

    pub fn pause(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(self.wrong_state("pause", status));
        }
        self.cgroup()
            .ok_or_else(|| self.wrong_state("pause", status))?
            .freeze()
    }

    pub fn resume(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.wrong_state("resume", status));
        }
        self.cgroup()
            .ok_or_else(|| self.wrong_state("resume", status))?
            .thaw()
    }

    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.wrong_state("update", status));
        }
        self.cgroup()
            .ok_or_else(|| self.wrong_state("update", status))?
            .apply(resources)
    }

    /// Host pids of every process in the container.
    pub fn processes(&self) -> Result<Vec<i32>> {
        match self.cgroup() {
            Some(cg) if cg.exists() => cg.pids(),
            _ => Ok(Vec::new()),
        }
    }

    /// Wait until init has exited and return its exit record. In keeper mode
    /// the keeper writes it; otherwise only liveness is known (code -1).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<ExitRecord>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        if let Some(init) = self.live_init() {
            let ms = deadline
                .map(|d| {
                    d.saturating_duration_since(std::time::Instant::now())
                        .as_millis() as i64
                })
                .unwrap_or(i64::MAX / 2);
            if !hooks::wait_exit(init.pid, ms) && init.is_alive() {
                return Ok(None);
            }
        }
        // The keeper writes the exit file right after init's exit: give it a moment.
        if self.state.keeper.is_some() {
            for _ in 0..500 {
                if let Some(rec) = self.exit_record()? {
                    return Ok(Some(rec));
                }
                if !self.state.keeper.is_some_and(|k| k.is_alive()) {
                    return self.exit_record();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.exit_record()
    }

    /// Remove the container. Without `force` a running container is refused;
    /// with it every process is killed first. Removing twice is not an error
    /// with `force`.
    pub fn delete(self, force: bool) -> Result<()> {
        let lock = self.dir.lock()?;
        self.delete_locked(lock, force)
    }

    /// [`Container::delete`] with the container's lock already held by the
    /// caller (`gc`): a create that held it is dead, whatever the phase says.
    pub fn delete_locked(self, _lock: Lock, force: bool) -> Result<()> {
        let status = self.status_locked();
        match status {
            Status::Stopped | Status::Created => {}
            Status::Creating if force => {}
            _ if force => {}
            _ => return Err(self.wrong_state("delete (use --force)", status)),
        }
        failpoint::crash("delete::begin");
        self.kill_everything();
        if let Ok(spec) = self.spec() {
            let state_json = crate::create::oci_state_json(&self.state, "stopped", None);
            if let Err(e) = hooks::run_all(
                "poststop",
                spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()),
                &state_json,
            ) {
                tracing::warn!("container {}: {}", self.state.id, e.chain());
            }
        }
        failpoint::crash("delete::killed");
        self.undo_steps()?;
        failpoint::crash("delete::cgroup-removed");
        crate::state::remove_cgroup_marker(&self.root, &self.state.id)?;
        crate::state::remove_state_dir(&self.dir.path)
    }

    /// The status while the caller holds the container's lock: a create
    /// that held it is gone (it would still hold it), so "creating" is stopped.
    pub(crate) fn status_locked(&self) -> Status {
        match self.state.phase {
            Phase::Creating => Status::Stopped,
            _ => self.status_after_create(),
        }
    }

    /// SIGKILL init and everything in the cgroup (thawed first, or the kill
    /// would wait for a thaw), then wait briefly for init to be gone.
    fn kill_everything(&self) {
        let cg = self.cgroup();
        if let Some(cg) = &cg {
            if cg.exists() {
                let _ = cg.thaw();
                for pid in cg.pids().unwrap_or_default() {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        if let Some(init) = self.live_init() {
            let _ = self.kill(Signal::SIGKILL, false);
            hooks::wait_exit(init.pid, 2000);
            // If we are init's parent (run without keeper), reap it.
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(init.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        // The keeper writes the exit record right after init's death: let it
        // finish, or it would race with the removal of the state dir. One
        // that does not finish in time (starved, stopped) writes nothing more.
        if let Some(k) = self.state.keeper.filter(|k| k.is_alive()) {
            if !hooks::wait_exit(k.pid, 2000) {
                if let Some(fd) = hooks::pidfd_open(k.pid).filter(|_| k.is_alive()) {
                    // SAFETY: pidfd_send_signal on a pidfd we own.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        )
                    };
                    hooks::wait_exit(k.pid, 2000);
                }
            }
        }
        // Processes leave the cgroup asynchronously after SIGKILL.
        if let Some(cg) = &cg {
            for _ in 0..200 {
                if !cg.exists() || cg.pids().map(|p| p.is_empty()).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Undo create's recorded steps (cgroups in every hierarchy, host mounts).
    fn undo_steps(&self) -> Result<()> {
        for step in self.state.steps.iter().rev() {
            match step {
                Step::Cgroup { path } => {
                    let cg = Cgroup::new(&self.state.id, Some(path))?;
                    cg.destroy()?;
                    // An earlier build's container: its shared parent goes with the last one.
                    let legacy = path
                        .trim_start_matches('/')
                        .strip_prefix(crate::cgroups::LEGACY_PARENT)
                        .is_some_and(|rest| rest.starts_with('/'));
                    if legacy {
                        crate::cgroups::remove_if_empty(crate::cgroups::LEGACY_PARENT);
                    }
                }
                Step::HostMount { path } => {
                    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
                }
                Step::Keeper { .. } | Step::Init { .. } => {}
            }
        }
        Ok(())
    }

    /// The error of a second `start`; first records the truth (phase
    /// running, no fifo) if a killed start left "created" behind.
    fn already_running(&mut self) -> Error {
        if self.state.phase != Phase::Running {
            let _ = std::fs::remove_file(self.dir.fifo());
            self.state.phase = Phase::Running;
            let _ = self.dir.write_state(&self.state);
        }
        Error::State {
            id: self.state.id.clone(),
            reason: "cannot start: container is already running".into(),
        }
    }

    fn wrong_state(&self, what: &str, status: Status) -> Error {
        Error::State {
            id: self.state.id.clone(),
            reason: format!("cannot {what}: container is {}", status.as_str()),
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}
