//! Instance events: started, exited (code, signal, OOM-killed), OOM kills,
//! removed, and the health and restart events the supervisor publishes.
//!
//! The runtime keeps no daemon to ask, so events are read from the state
//! root: inotify tells which container directory changed (the keepers'
//! atomically renamed `exit` files, the state file's phase), and the
//! container's state is then read to see what changed. A slow periodic
//! re-read catches what inotify cannot tell (an OOM kill of a child process,
//! counted by the cgroup) and anything missed while watches were added.
//! Exits that happened while the agent was down are published by
//! `Host::recover` (its report's `exited`).
//!
//! Subscribers get events published after they subscribed; the watcher
//! runs (one thread per `Host`) while anyone is subscribed.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rpaas_runtime::{Container, ExitRecord, Status};
use serde::{Deserialize, Serialize};

use crate::app::record::{parse_instance, Phase};
use crate::error::{Error, Result};
use crate::host::{Host, Inner};

/// What happened to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    /// Its init runs (a new run: after a deploy, scale, restart or recover).
    Started,
    /// Its init exited.
    #[serde(rename_all = "camelCase")]
    Exited {
        /// Exit code, or 128+signal, as shells report it.
        code: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        oom_killed: bool,
    },
    /// The OOM killer killed `kills` processes of the instance (its init or
    /// others; an init killed this way is also `Exited { oom_killed }`).
    OomKill { kills: u64 },
    /// Its container is gone for good (app removed or scaled in).
    Removed,
    /// Published by the health prober.
    HealthChanged {
        healthy: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Published by the supervisor when it restarts an instance.
    Restarted {
        restarts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One event: when, which instance, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// RFC 3339 UTC: when it happened (an exit: the keeper's record), or
    /// when it was seen.
    pub time: String,
    /// The instance (container id).
    pub instance: String,
    /// Its app, when the id is an instance name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event of `instance` now.
    pub fn now(instance: &str, kind: EventKind) -> Event {
        Event {
            time: rpaas_runtime::state::now_rfc3339(),
            instance: instance.to_string(),
            app: parse_instance(instance).map(|(a, _)| a.to_string()),
            kind,
        }
    }

    /// The exit of `instance` its keeper recorded.
    pub fn exited(instance: &str, e: &ExitRecord) -> Event {
        let mut ev = Event::now(
            instance,
            EventKind::Exited {
                code: e.exit_code,
                signal: e.exit_signal,
                oom_killed: e.oom_killed,
            },
        );
        ev.time = e.finished_at.clone();
        ev
    }
}

/// The subscribers of one `Host` (in its shared state).
#[derive(Default)]
pub(crate) struct Bus {
    state: Mutex<BusState>,
}

#[derive(Default)]
struct BusState {
    subs: Vec<Sender<Event>>,
    watching: bool,
}

impl Bus {
    pub(crate) fn publish(&self, ev: &Event) {
        if let Ok(mut s) = self.state.lock() {
            s.subs.retain(|tx| tx.send(ev.clone()).is_ok());
        }
    }

    /// Whether no one listens (the watcher then stops, marked so under the
    /// same lock a subscriber takes).
    fn stop_if_unheard(&self) -> bool {
        match self.state.lock() {
            Ok(mut s) => {
                if s.subs.is_empty() {
                    s.watching = false;
                    true
                } else {
                    false
                }
            }
            Err(_) => true,
        }
    }
}

/// A subscription: an iterator of events (blocking), or polled with a timeout.
pub struct Events {
    rx: Receiver<Event>,
}

impl Events {
    /// The next event within `timeout`; None when none came.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Every event already there, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }
}

impl Iterator for Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

impl Host {
    /// Subscribe to instance events from now on. The first subscriber starts
    /// the watcher of the state root; every container there is taken as it
    /// is now before this returns, so nothing that happens after is missed.
    pub fn events(&self) -> Result<Events> {
        let (tx, rx) = mpsc::channel();
        let bus = &self.inner.events;
        let mut st = bus.state.lock().map_err(|_| Error::Spec {
            field: "events".into(),
            reason: "subscriber list poisoned".into(),
        })?;
        st.subs.push(tx);
        if !st.watching {
            let w = match Watcher::new(&self.inner) {
                Ok(w) => w,
                Err(e) => {
                    st.subs.pop();
                    return Err(e);
                }
            };
            st.watching = true;
            let weak = Arc::downgrade(&self.inner);
            std::thread::Builder::new()
                .name("rpaas-events".into())
                .spawn(move || w.run(weak))
                .map_err(|e| Error::io("spawn the event watcher for", self.root(), e))?;
        }
        Ok(Events { rx })
    }

    /// Publish an event to every subscriber (the health prober and the
    /// supervisor publish `HealthChanged` and `Restarted` this way).
    pub fn publish(&self, event: Event) {
        self.inner.events.publish(&event);
    }
}

/// What the watcher last saw of one container.
#[derive(Debug, Clone)]
struct Seen {
    running: bool,
    pid: Option<i32>,
    /// `finished_at` of the last exit record seen.
    exit_at: Option<String>,
    oom: u64,
    /// Stopped, but the keeper's record not there yet (it is written right
    /// after the reap): since when.
    exit_pending: Option<Instant>,
}

/// How often every container is read again, inotify or not.
const RESCAN: Duration = Duration::from_millis(1000);
/// A stopped container whose keeper never writes the record (killed):
/// reported exited with code -1 after this long.
const EXIT_GRACE: Duration = Duration::from_secs(5);

struct Watcher {
    root: PathBuf,
    ino: Inotify,
    /// Watch descriptor → container id ("" for the root).
    wds: HashMap<i32, String>,
    seen: HashMap<String, Seen>,
}

fn is_container_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('#') && !name.starts_with('.')
}

impl Watcher {
    fn new(inner: &Inner) -> Result<Watcher> {
        let root = inner.config.state_root.clone();
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| Error::io("inotify_init for", &root, e.into()))?;
        let mut w = Watcher {
            root,
            ino,
            wds: HashMap::new(),
            seen: HashMap::new(),
        };
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ONLYDIR;
        let wd = w
            .ino
            .add_watch(&w.root, flags)
            .map_err(|e| Error::io("inotify watch", &w.root, e.into()))?;
        w.wds.insert(wd.as_raw(), String::new());
        for id in w.list() {
            w.watch(&id);
            if let Some(s) = w.look(inner, &id) {
                w.seen.insert(id, s);
            }
        }
        Ok(w)
    }

    fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| is_container_name(n))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn watch(&mut self, id: &str) {
        let flags = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ONLYDIR;
        if let Ok(wd) = self.ino.add_watch(&self.root.join(id), flags) {
            self.wds.insert(wd.as_raw(), id.to_string());
        }
    }

    /// The container as it is now; None when it is gone or unreadable.
    fn look(&self, _inner: &Inner, id: &str) -> Option<Seen> {
        let c = Container::load(&self.root, id).ok()?;
        let status = c.status();
        let running = matches!(status, Status::Running | Status::Paused);
        let pid = if running {
            c.live_init().map(|p| p.pid)
        } else {
            None
        };
        let oom = c
            .cgroup()
            .filter(|_| running)
            .and_then(|cg| cg.oom_kill_count().ok())
            .unwrap_or(0);
        Some(Seen {
            running,
            pid,
            exit_at: c.exit_record().ok().flatten().map(|e| e.finished_at),
            oom,
            exit_pending: None,
        })
    }

    fn run(mut self, inner: Weak<Inner>) {
        let mut last_scan = Instant::now();
        loop {
            let Some(inner) = inner.upgrade() else { return };
            if inner.events.stop_if_unheard() {
                return;
            }
            let mut dirty: Vec<String> = Vec::new();
            let mut fds = [PollFd::new(self.ino.as_fd(), PollFlags::POLLIN)];
            let wait = RESCAN.saturating_sub(last_scan.elapsed());
            let _ = nix::poll::poll(&mut fds, wait.as_millis().min(1000) as u16);
            if let Ok(evs) = self.ino.read_events() {
                for ev in evs {
                    let Some(owner) = self.wds.get(&ev.wd.as_raw()).cloned() else {
                        continue;
                    };
                    if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                        self.wds.remove(&ev.wd.as_raw());
                    }
                    if owner.is_empty() {
                        let Some(name) = ev.name.and_then(|n| n.into_string().ok()) else {
                            continue;
                        };
                        if !is_container_name(&name) {
                            continue;
                        }
                        if ev
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                        {
                            self.watch(&name);
                        }
                        dirty.push(name);
                    } else {
                        dirty.push(owner);
                    }
                }
            }
            if last_scan.elapsed() >= RESCAN {
                last_scan = Instant::now();
                dirty.extend(self.list());
                dirty.extend(self.seen.keys().cloned());
            }
            dirty.sort();
            dirty.dedup();
            for id in dirty {
                self.reconcile(&inner, &id);
            }
        }
    }

    /// Compare the container with what was seen; publish what changed.
    fn reconcile(&mut self, inner: &Inner, id: &str) {
        let now = self.look(inner, id);
        let prev = self.seen.get(id).cloned();
        let bus = &inner.events;
        let Some(mut now) = now else {
            if prev.is_some() && !self.root.join(id).exists() {
                self.seen.remove(id);
                if is_removal(inner, id) {
                    bus.publish(&Event::now(id, EventKind::Removed));
                }
            }
            return;
        };
        let exit = || {
            Container::load(&self.root, id)
                .ok()
                .and_then(|c| c.exit_record().ok().flatten())
        };
        match (&prev, now.running) {
            (None, true) => bus.publish(&Event::now(id, EventKind::Started)),
            (None, false) => {
                // Made, run and exited between two looks.
                if let Some(e) = exit() {
                    publish_exit(bus, id, &e);
                }
            }
            (Some(p), true) => {
                if !p.running || p.pid != now.pid {
                    bus.publish(&Event::now(id, EventKind::Started));
                } else if now.oom > p.oom {
                    bus.publish(&Event::now(
                        id,
                        EventKind::OomKill {
                            kills: now.oom - p.oom,
                        },
                    ));
                }
            }
            (Some(p), false) => {
                let new_exit = now.exit_at.is_some() && now.exit_at != p.exit_at;
                if new_exit {
                    if let Some(e) = exit() {
                        publish_exit(bus, id, &e);
                    }
                } else if p.running || p.exit_pending.is_some() {
                    // Stopped, record not written yet: look again later.
                    let since = p.exit_pending.unwrap_or_else(Instant::now);
                    if since.elapsed() < EXIT_GRACE {
                        now.exit_pending = Some(since);
                        now.running = false;
                        now.exit_at = p.exit_at.clone();
                    } else {
                        bus.publish(&Event::now(
                            id,
                            EventKind::Exited {
                                code: -1,
                                signal: None,
                                oom_killed: false,
                            },
                        ));
                    }
                }
                now.oom = p.oom;
            }
        }
        self.seen.insert(id.to_string(), now);
    }
}

fn publish_exit(bus: &Bus, id: &str, e: &ExitRecord) {
    if e.oom_killed {
        let mut ev = Event::now(id, EventKind::OomKill { kills: 1 });
        ev.time = e.finished_at.clone();
        bus.publish(&ev);
    }
    bus.publish(&Event::exited(id, e));
}

/// A container dir gone for good, not for a restart or recreate (the
/// instance's record is still up then).
fn is_removal(inner: &Inner, id: &str) -> bool {
    match parse_instance(id) {
        Some((app, n)) => match inner.records.instance(app, n) {
            Ok(Some(rec)) => rec.phase == Phase::Removing,
            Ok(None) => true,
            Err(_) => true,
        },
        None => true,
    }
}

/// Events of exits found by `recover` (they happened while no agent ran).
pub(crate) fn publish_recovered(bus: &Bus, exited: &[(String, ExitRecord)]) {
    for (id, e) in exited {
        publish_exit(bus, id, e);
    }
}
