//! The supervisor: the agent's handle that runs every instance's probes (one
//! [`Scheduler`] for the host) and applies each app's restart policy.
//!
//! It lives inside the agent (`Host::supervise`): when the agent is down,
//! nothing restarts; a new agent calls `recover` and `supervise` again, and
//! the first look of the supervisor applies the policy to whatever exited in
//! between.
//!
//! - **Startup**: liveness and readiness wait until it passes; failing it is a
//!   liveness failure.
//! - **Liveness** failed (`failureThreshold` failures in a row): the instance
//!   is stopped (its stop signal, SIGKILL after the grace) and counts as a
//!   failed exit.
//! - **Readiness**: only the instance's `ready` changes.
//! - **Restart policy**: an exit (or a liveness kill) is restarted by
//!   `never` never, `on-failure` unless the code is 0 (a liveness kill is a
//!   failure), `always` always; through `Host::restart` (same address, MAC,
//!   NUMA cpus and writable layer). The n-th restart in a row waits
//!   `backoffSeconds × 2^(n-1)` (10 s, 20 s, 40 s, … at most
//!   `maxBackoffSeconds`, 300 s); an instance that ran `resetSeconds` (600 s)
//!   since its last start begins a new row.
//!
//! What it sees is written for `Host::app` to show (`health`, `ready`) to
//! `<stateRoot>/#health/<instance>.json`, on changes only; the files go when
//! the supervisor stops.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rpaas_runtime::{Container, Status};
use serde::{Deserialize, Serialize};

use crate::app::record::Phase;
use crate::app::spec::AppSpec;
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::host::Host;
use crate::probe::{
    ExecTarget, HealthSpec, ProbeId, ProbeKind, ProbeResult, RestartPolicy, Scheduler, Target,
};

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct SuperviseOptions {
    /// How often the records and containers are looked at again (new and
    /// removed instances, exits).
    pub sync_interval: Duration,
    /// History entries kept per instance.
    pub history: usize,
}

impl Default for SuperviseOptions {
    fn default() -> Self {
        SuperviseOptions {
            sync_interval: Duration::from_secs(1),
            history: 256,
        }
    }
}

/// One thing the supervisor saw or did about an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HistoryEntry {
    /// A run of a probe.
    #[serde(rename_all = "camelCase")]
    Probe {
        kind: ProbeKind,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The probe crossed a threshold: now healthy (true) or failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        changed: Option<bool>,
    },
    /// A new run of the container was seen (pid of its init).
    Running { pid: i32 },
    /// Stopped because a probe failed (`liveness` or `startup`).
    Killed { reason: String },
    /// The container ended.
    #[serde(rename_all = "camelCase")]
    Exited { code: i32, failed: bool },
    /// A restart is due after `delay` (the n-th of a row).
    #[serde(rename_all = "camelCase")]
    Backoff { n: u32, delay_ms: u64 },
    /// Brought back (`restarts` is the instance's count).
    Restarted { restarts: u32 },
    /// The policy says no restart.
    NotRestarted { policy: RestartPolicy },
    /// A restart or stop that failed.
    Error { message: String },
}

/// `HistoryEntry` with when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timed {
    pub at: SystemTime,
    #[serde(flatten)]
    pub entry: HistoryEntry,
}

/// What `Host::app` shows of an instance's probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `starting` (startup or liveness not passed yet), `healthy`, `unhealthy`.
    pub health: String,
    pub ready: bool,
    /// The init these belong to (a newer run makes them stale).
    pub pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where the status of `instance` is written.
pub(crate) fn status_path(state_root: &Path, instance: &str) -> PathBuf {
    state_root.join("#health").join(format!("{instance}.json"))
}

/// The status the supervisor wrote for `instance`, if it is about `pid`.
pub(crate) fn read_status(
    state_root: &Path,
    instance: &str,
    pid: Option<i32>,
) -> Option<HealthStatus> {
    let bytes = std::fs::read(status_path(state_root, instance)).ok()?;
    let st: HealthStatus = serde_json::from_slice(&bytes).ok()?;
    (Some(st.pid) == pid).then_some(st)
}

enum Msg {
    Result(ProbeResult),
    /// A stop or restart done by a worker.
    Done {
        instance: String,
        restart: bool,
        result: std::result::Result<u32, String>,
    },
    Stop,
}

/// The running supervisor. Dropping it (or `stop`) ends its thread and its
/// probes; instances keep running.
pub struct Supervisor {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish()
    }
}

#[derive(Default)]
struct Shared {
    history: HashMap<String, VecDeque<Timed>>,
    status: HashMap<String, HealthStatus>,
}

impl Supervisor {
    /// The instance's history (oldest first), as far as kept.
    pub fn history(&self, instance: &str) -> Vec<Timed> {
        self.shared
            .lock()
            .map(|s| {
                s.history
                    .get(instance)
                    .map(|h| h.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The instance's probe status now (None: no probes, or not running).
    pub fn status(&self, instance: &str) -> Option<HealthStatus> {
        self.shared.lock().ok()?.status.get(instance).cloned()
    }

    /// End the supervision (probes stopped, running exec probes killed).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Host {
    /// Start supervising every instance of the host (see the module doc).
    pub fn supervise(&self) -> Result<Supervisor> {
        self.supervise_with(SuperviseOptions::default())
    }

    pub fn supervise_with(&self, opts: SuperviseOptions) -> Result<Supervisor> {
        let (tx, rx) = mpsc::channel();
        let results = tx.clone();
        let sched = Scheduler::start(Box::new(move |r| {
            let _ = results.send(Msg::Result(r));
        }))
        .map_err(|e| Error::io("start the probe scheduler for", self.root(), e))?;
        let dir = self.root().join("#health");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut sv = Loop {
            host: self.clone(),
            opts,
            sched,
            tx: tx.clone(),
            rx,
            insts: BTreeMap::new(),
            probes: HashMap::new(),
            shared: shared.clone(),
            first: true,
            workers: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("rpaas-supervise".into())
            .spawn(move || sv.run())
            .map_err(|e| Error::io("spawn the supervisor for", self.root(), e))?;
        Ok(Supervisor {
            tx,
            shared,
            thread: Some(thread),
        })
    }
}

/// One supervised instance.
struct Inst {
    spec: AppSpec,
    /// The run being watched: init's pid and start time.
    run: Option<(i32, u64)>,
    probes: Vec<(ProbeKind, ProbeId)>,
    startup_passed: bool,
    live: Option<bool>,
    ready: Option<bool>,
    reason: Option<String>,
    /// A worker is stopping or restarting it.
    busy: bool,
    /// A restart due at.
    due: Option<Instant>,
    /// Stopped by the supervisor for this reason: its exit is a failure.
    killed: Option<String>,
    /// The exit already handled (finished_at of its record, or "lost").
    exit_seen: Option<String>,
    /// Restarts in the current row, and when it last started.
    row: u32,
    last_start: Instant,
    written: Option<HealthStatus>,
}

struct Loop {
    host: Host,
    opts: SuperviseOptions,
    sched: Scheduler,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    insts: BTreeMap<String, Inst>,
    probes: HashMap<ProbeId, (String, ProbeKind)>,
    shared: Arc<Mutex<Shared>>,
    first: bool,
    /// Stops and restarts in progress: waited for when the supervisor stops.
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Loop {
    fn run(&mut self) {
        let mut next_sync = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sync {
                if let Err(e) = self.sync() {
                    tracing::warn!("supervisor: {e}");
                }
                self.first = false;
                next_sync = Instant::now() + self.opts.sync_interval;
            }
            self.restarts_due();
            let mut wake = next_sync;
            for i in self.insts.values() {
                if let Some(d) = i.due {
                    wake = wake.min(d);
                }
            }
            let wait = wake.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Result(r)) => self.result(r),
                Ok(Msg::Done {
                    instance,
                    restart,
                    result,
                }) => {
                    self.done(&instance, restart, result);
                    // Look at it again now (a restart made a new run).
                    next_sync = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        let names: Vec<String> = self.insts.keys().cloned().collect();
        for n in names {
            self.forget(&n);
        }
        // A stop or restart under way finishes before the handle says stopped.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    fn spawn_worker(&mut self, f: impl FnOnce() + Send + 'static) {
        self.workers.retain(|w| !w.is_finished());
        self.workers.push(std::thread::spawn(f));
    }

    fn log(&self, instance: &str, entry: HistoryEntry) {
        tracing::debug!(instance, ?entry, "supervisor");
        if let Ok(mut s) = self.shared.lock() {
            let h = s.history.entry(instance.to_string()).or_default();
            if h.len() >= self.opts.history.max(1) {
                h.pop_front();
            }
            h.push_back(Timed {
                at: SystemTime::now(),
                entry,
            });
        }
    }

    /// Records and containers as they are now.
    fn sync(&mut self) -> Result<()> {
        let host = self.host.clone();
        let inner = &host.inner;
        let mut seen = Vec::new();
        for app in inner.records.app_names()? {
            let Some(rec) = inner.records.app(&app)? else {
                continue;
            };
            if rec.removing {
                continue;
            }
            for r in inner.records.instances(&app)? {
                if r.phase != Phase::Up {
                    continue;
                }
                seen.push(r.name.clone());
                self.look(&r.name, &rec.spec, r.ip());
            }
        }
        let gone: Vec<String> = self
            .insts
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for n in gone {
            self.forget(&n);
        }
        Ok(())
    }

    /// Stop watching an instance (removed, or the supervisor stops).
    fn forget(&mut self, name: &str) {
        if let Some(i) = self.insts.remove(name) {
            for (_, id) in i.probes {
                self.sched.remove(id);
                self.probes.remove(&id);
            }
        }
        let _ = std::fs::remove_file(status_path(self.host.root(), name));
        if let Ok(mut s) = self.shared.lock() {
            s.status.remove(name);
        }
    }

    fn look(&mut self, name: &str, spec: &AppSpec, ip: Option<std::net::IpAddr>) {
        let first = self.first;
        let inst = self.insts.entry(name.to_string()).or_insert_with(|| Inst {
            spec: spec.clone(),
            run: None,
            probes: Vec::new(),
            startup_passed: false,
            live: None,
            ready: None,
            reason: None,
            busy: false,
            due: None,
            killed: None,
            exit_seen: None,
            row: 0,
            last_start: Instant::now(),
            written: None,
        });
        // A changed spec (update) applies from the next run.
        inst.spec = spec.clone();
        if inst.busy || inst.due.is_some() {
            return;
        }
        let c = match Container::load(self.host.root(), name) {
            Ok(c) => c,
            // No container (a reboot, before recover): recover brings it back.
            Err(_) => return,
        };
        match c.status() {
            Status::Running => {
                let Some(init) = c.live_init() else { return };
                let key = (init.pid, init.start_time);
                if inst.run == Some(key) {
                    return;
                }
                let started = age(init.start_time)
                    .and_then(|a| Instant::now().checked_sub(a))
                    .unwrap_or_else(Instant::now);
                self.new_run(name, key, ip, started, first);
            }
            Status::Stopped => {
                let exit = c.exit_record().ok().flatten();
                let mark = exit
                    .as_ref()
                    .map(|e| e.finished_at.clone())
                    .unwrap_or_else(|| "lost".into());
                if inst.exit_seen.as_deref() == Some(mark.as_str()) {
                    return;
                }
                if exit.is_none() && !c.exit_status_lost() {
                    // The keeper is writing the record: next look.
                    return;
                }
                inst.exit_seen = Some(mark);
                let code = exit.as_ref().map(|e| e.exit_code).unwrap_or(-1);
                self.exited(name, code);
            }
            _ => {}
        }
    }

    /// A new run of the container: its probes from scratch.
    fn new_run(
        &mut self,
        name: &str,
        key: (i32, u64),
        ip: Option<std::net::IpAddr>,
        started: Instant,
        jitter: bool,
    ) {
        let root = self.host.root().to_path_buf();
        let runtime = self.host.inner.runtime.clone();
        let netns = {
            let pinned = self.host.inner.netns_path(name);
            if pinned.exists() {
                pinned
            } else {
                PathBuf::from(format!("/proc/{}/ns/net", key.0))
            }
        };
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        for (_, id) in inst.probes.drain(..) {
            self.sched.remove(id);
            self.probes.remove(&id);
        }
        inst.run = Some(key);
        inst.last_start = started;
        inst.killed = None;
        inst.exit_seen = None;
        inst.live = None;
        inst.ready = None;
        inst.reason = None;
        let health = inst.spec.health.clone();
        inst.startup_passed = health.startup.is_none();
        let target = Target {
            netns: Some(netns),
            ip,
            pid: Some(key.0),
            exec: Some(ExecTarget {
                runtime,
                state_root: root,
                id: name.to_string(),
            }),
        };
        self.log(name, HistoryEntry::Running { pid: key.0 });
        let kinds: Vec<ProbeKind> = if health.startup.is_some() {
            vec![ProbeKind::Startup]
        } else {
            vec![ProbeKind::Liveness, ProbeKind::Readiness]
        };
        self.add_probes(name, &health, &kinds, target, started, jitter);
        self.write_status(name);
    }

    fn add_probes(
        &mut self,
        name: &str,
        health: &HealthSpec,
        kinds: &[ProbeKind],
        target: Target,
        started: Instant,
        jitter: bool,
    ) {
        for (kind, p) in health.probes() {
            if !kinds.contains(&kind) {
                continue;
            }
            let id = self.sched.add(target.clone(), p.clone(), started, jitter);
            self.probes.insert(id, (name.to_string(), kind));
            if let Some(i) = self.insts.get_mut(name) {
                i.probes.push((kind, id));
            }
        }
    }

    fn result(&mut self, r: ProbeResult) {
        let Some((name, kind)) = self.probes.get(&r.id).cloned() else {
            return;
        };
        self.log(
            &name,
            HistoryEntry::Probe {
                kind,
                ok: r.ok,
                reason: r.reason.clone(),
                changed: r.changed,
            },
        );
        let Some(changed) = r.changed else { return };
        let Some(inst) = self.insts.get_mut(&name) else {
            return;
        };
        match (kind, changed) {
            (ProbeKind::Startup, true) => {
                inst.startup_passed = true;
                let health = inst.spec.health.clone();
                let Some(pos) = inst.probes.iter().position(|(k, _)| *k == kind) else {
                    return;
                };
                let (_, id) = inst.probes.remove(pos);
                self.sched.remove(id);
                self.probes.remove(&id);
                let Some((pid, _)) = inst.run else { return };
                let target = self.target_of(&name, pid);
                // Liveness and readiness start now, their delays counted from
                // the container's start (as Kubernetes).
                self.add_probes(
                    &name,
                    &health,
                    &[ProbeKind::Liveness, ProbeKind::Readiness],
                    target,
                    Instant::now(),
                    false,
                );
                self.publish(&name, true, Some("startup passed".into()));
            }
            (ProbeKind::Liveness, true) => {
                inst.live = Some(true);
                inst.reason = None;
                self.publish(&name, true, None);
            }
            (ProbeKind::Readiness, ready) => {
                inst.ready = Some(ready);
                let why = if ready {
                    "ready".to_string()
                } else {
                    format!("not ready: {}", r.reason.clone().unwrap_or_default())
                };
                let healthy = inst.live != Some(false);
                self.publish(&name, healthy, Some(why));
            }
            (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                let reason = format!(
                    "{} probe failed {} times: {}",
                    kind.as_str(),
                    r.consecutive,
                    r.reason.clone().unwrap_or_default()
                );
                inst.live = Some(false);
                inst.reason = Some(reason.clone());
                self.publish(&name, false, Some(reason.clone()));
                self.kill(&name, reason);
            }
        }
        self.write_status(&name);
    }

    fn target_of(&self, name: &str, pid: i32) -> Target {
        let pinned = self.host.inner.netns_path(name);
        let ip = self
            .host
            .inner
            .records
            .instances(crate::app::record::parse_instance(name).map_or(name, |(a, _)| a))
            .ok()
            .and_then(|v| v.into_iter().find(|r| r.name == name))
            .and_then(|r| r.ip());
        Target {
            netns: Some(if pinned.exists() {
                pinned
            } else {
                PathBuf::from(format!("/proc/{pid}/ns/net"))
            }),
            ip,
            pid: Some(pid),
            exec: Some(ExecTarget {
                runtime: self.host.inner.runtime.clone(),
                state_root: self.host.root().to_path_buf(),
                id: name.to_string(),
            }),
        }
    }

    fn publish(&self, name: &str, healthy: bool, reason: Option<String>) {
        self.host.publish(Event::now(
            name,
            EventKind::HealthChanged { healthy, reason },
        ));
    }

    /// Stop the instance in a worker: a failed liveness or startup probe.
    fn kill(&mut self, name: &str, reason: String) {
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        for (_, id) in inst.probes.drain(..) {
            self.sched.remove(id);
            self.probes.remove(&id);
        }
        inst.killed = Some(reason.clone());
        inst.busy = true;
        let stop = inst.spec.stop.clone();
        self.log(name, HistoryEntry::Killed { reason });
        let (host, tx, name) = (self.host.clone(), self.tx.clone(), name.to_string());
        self.spawn_worker(move || {
            let result = host
                .inner
                .stop_container(&name, &stop)
                .map(|()| 0)
                .map_err(|e| e.to_string());
            let _ = tx.send(Msg::Done {
                instance: name,
                restart: false,
                result,
            });
        });
    }

    /// The container ended with `code`: the policy decides.
    fn exited(&mut self, name: &str, code: i32) {
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        for (_, id) in inst.probes.drain(..) {
            self.sched.remove(id);
            self.probes.remove(&id);
        }
        inst.run = None;
        let failed = inst.killed.is_some() || code != 0;
        let policy = inst.spec.restart.policy;
        let restart = match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        let spec = inst.spec.restart.clone();
        let mut delay = None;
        if restart {
            if inst.last_start.elapsed() >= Duration::from_secs_f64(spec.reset_seconds) {
                inst.row = 0;
            }
            inst.row += 1;
            let d = spec.backoff(inst.row);
            inst.due = Some(Instant::now() + d);
            delay = Some((inst.row, d));
        }
        self.log(name, HistoryEntry::Exited { code, failed });
        match delay {
            Some((n, d)) => self.log(
                name,
                HistoryEntry::Backoff {
                    n,
                    delay_ms: d.as_millis() as u64,
                },
            ),
            None => self.log(name, HistoryEntry::NotRestarted { policy }),
        }
        self.write_status(name);
    }

    /// Start the restarts whose backoff is over, each in a worker.
    fn restarts_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .insts
            .iter()
            .filter(|(_, i)| i.due.is_some_and(|d| d <= now) && !i.busy)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(inst) = self.insts.get_mut(&name) else {
                continue;
            };
            inst.due = None;
            inst.busy = true;
            let (host, tx) = (self.host.clone(), self.tx.clone());
            self.spawn_worker(move || {
                let result = host
                    .restart(&name)
                    .map(|s| s.restarts)
                    .map_err(|e| e.to_string());
                let _ = tx.send(Msg::Done {
                    instance: name,
                    restart: true,
                    result,
                });
            });
        }
    }

    fn done(&mut self, name: &str, restart: bool, result: std::result::Result<u32, String>) {
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        inst.busy = false;
        match result {
            Ok(restarts) if restart => {
                inst.last_start = Instant::now();
                self.log(name, HistoryEntry::Restarted { restarts });
                self.host.publish(Event::now(
                    name,
                    EventKind::Restarted {
                        restarts,
                        reason: None,
                    },
                ));
            }
            Ok(_) => {}
            Err(message) => {
                if restart {
                    // Try again after the next backoff.
                    inst.row += 1;
                    let d = inst.spec.restart.backoff(inst.row);
                    inst.due = Some(Instant::now() + d);
                }
                self.log(name, HistoryEntry::Error { message });
            }
        }
    }

    /// Write the instance's status when it changed.
    fn write_status(&mut self, name: &str) {
        let root = self.host.root().to_path_buf();
        let Some(inst) = self.insts.get_mut(name) else {
            return;
        };
        let st = match inst.run {
            Some((pid, _)) if !inst.spec.health.is_empty() => {
                let h = &inst.spec.health;
                let health = if inst.live == Some(false) {
                    "unhealthy"
                } else if !inst.startup_passed || (h.liveness.is_some() && inst.live != Some(true))
                {
                    "starting"
                } else {
                    "healthy"
                };
                let ready = if h.readiness.is_some() {
                    inst.ready == Some(true)
                } else {
                    inst.startup_passed && inst.live != Some(false)
                };
                Some(HealthStatus {
                    health: health.into(),
                    ready,
                    pid,
                    reason: inst.reason.clone(),
                })
            }
            _ => None,
        };
        if st == inst.written {
            return;
        }
        inst.written = st.clone();
        let path = status_path(&root, name);
        match &st {
            Some(s) => {
                if let Ok(bytes) = serde_json::to_vec(s) {
                    let _ = rpaas_runtime::state::write_atomic(&path, &bytes);
                }
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        if let Ok(mut sh) = self.shared.lock() {
            match st {
                Some(s) => sh.status.insert(name.to_string(), s),
                None => sh.status.remove(name),
            };
        }
    }
}

/// How long ago a process started (its start time in clock ticks since boot).
fn age(start_ticks: u64) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let started = start_ticks as f64 / hz as f64;
    (up >= started).then(|| Duration::from_secs_f64(up - started))
}
