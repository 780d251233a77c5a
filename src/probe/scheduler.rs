//! One scheduler for every probe of the host: one thread, one epoll, one
//! timer heap. Network probes are non-blocking sockets (made in the
//! instance's netns by the one helper thread of `net.rs`), exec probes are
//! `rpaas-run exec` children watched through pidfds, file probes are a
//! path resolution. Nothing blocks the loop but socket creation (a round trip
//! to the netns thread) and the spawn of an exec probe.
//!
//! Each probe runs once per period (the next run is due a period after the
//! start of the last one), one run at a time; a run that has not finished
//! after `timeoutSeconds` fails. Consecutive results are counted against the
//! thresholds; every result is reported, with `changed` set when it crossed
//! one (healthy after `successThreshold` successes, failed after
//! `failureThreshold` failures).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::AddressFamily;

use crate::probe::exec::{ExecTarget, Running};
use crate::probe::net::{self, Answer, SocketMaker};
use crate::probe::spec::{Action, Probe};

/// A probe added to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub u64);

/// What a probe runs against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The instance's netns (a pinned netns file or `/proc/<pid>/ns/net`);
    /// None: the scheduler's own.
    pub netns: Option<PathBuf>,
    /// The address network probes use when theirs names none (else 127.0.0.1).
    pub ip: Option<IpAddr>,
    /// The instance's init (file probes resolve under its root).
    pub pid: Option<i32>,
    /// How exec probes run.
    pub exec: Option<ExecTarget>,
}

/// One result of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub id: ProbeId,
    pub ok: bool,
    /// Why not, when not ok.
    pub reason: Option<String>,
    /// Consecutive results like this one, this one included.
    pub consecutive: u32,
    /// Set when this result crossed a threshold: the probe is now healthy
    /// (true) or failed (false).
    pub changed: Option<bool>,
    pub at: SystemTime,
}

/// Counters since the scheduler started.
#[derive(Debug, Default)]
pub struct Stats {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
}

enum Cmd {
    Add {
        id: u64,
        target: Box<Target>,
        probe: Box<Probe>,
        start: Instant,
        jitter: bool,
    },
    Remove(u64),
    Stop,
}

/// The handle: dropping it (or `stop`) ends the thread, killing running
/// exec probes.
pub struct Scheduler {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<EventFd>,
    next_id: AtomicU64,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("stats", &self.stats)
            .finish()
    }
}

/// Results go to this callback, on the scheduler's thread: keep it short
/// (send to a channel).
pub type OnResult = Box<dyn FnMut(ProbeResult) + Send>;

impl Scheduler {
    pub fn start(on_result: OnResult) -> std::io::Result<Scheduler> {
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(std::io::Error::from)?,
        );
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        epoll
            .add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))
            .map_err(std::io::Error::from)?;
        let maker = SocketMaker::start()?;
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let mut lp = Loop {
            epoll,
            wake: wake.clone(),
            rx,
            maker,
            entries: HashMap::new(),
            timers: BinaryHeap::new(),
            reaping: HashMap::new(),
            next_reap: REAP_BASE,
            on_result,
            stats: stats.clone(),
            base: Instant::now(),
            seed: std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15,
        };
        let thread = std::thread::Builder::new()
            .name("rpaas-probes".into())
            .spawn(move || lp.run())?;
        Ok(Scheduler {
            tx,
            wake,
            next_id: AtomicU64::new(1),
            stats,
            thread: Some(thread),
        })
    }

    /// Run `probe` against `target`; its initial delay counts from `start`
    /// (the container's start). With `jitter`, a probe whose delay is over
    /// already starts at a random point of its first period (probes added
    /// together do not run together).
    pub fn add(&self, target: Target, probe: Probe, start: Instant, jitter: bool) -> ProbeId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(Cmd::Add {
            id,
            target: Box::new(target),
            probe: Box::new(probe),
            start,
            jitter,
        });
        ProbeId(id)
    }

    /// Stop running a probe (a running exec probe is killed).
    pub fn remove(&self, id: ProbeId) {
        self.send(Cmd::Remove(id.0));
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// End the thread (running exec probes killed and reaped).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    fn shutdown(&mut self) {
        self.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const WAKE: u64 = u64::MAX;
/// Timers are coalesced into slots this long (runs and timeouts are late by
/// up to this much; Kubernetes' prober is no more exact).
const SLACK: Duration = Duration::from_millis(100);
/// Tokens of exec probes being reaped after their probe moved on.
const REAP_BASE: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Run,
    Timeout,
}

enum Run {
    Connecting {
        fd: OwnedFd,
        addr: SocketAddr,
        http: bool,
    },
    Reading {
        fd: OwnedFd,
        buf: Vec<u8>,
    },
    Exec(Running),
}

struct Entry {
    target: Target,
    probe: Probe,
    action: Action,
    /// Generation: a timer of an older one is stale.
    gen: u64,
    started: Instant,
    run: Option<Run>,
    successes: u32,
    failures: u32,
    healthy: Option<bool>,
}

impl Entry {
    /// Where a network probe connects.
    fn socket_addr(&self) -> Option<SocketAddr> {
        match &self.action {
            Action::Tcp(t) => Some(SocketAddr::new(address(t.host, &self.target), t.port)),
            Action::Http(h) => Some(SocketAddr::new(address(h.host, &self.target), h.port)),
            _ => None,
        }
    }
}

struct Loop {
    epoll: Epoll,
    wake: Arc<EventFd>,
    rx: mpsc::Receiver<Cmd>,
    maker: SocketMaker,
    entries: HashMap<u64, Entry>,
    timers: BinaryHeap<Reverse<(Instant, u64, u64, TimerKind)>>,
    reaping: HashMap<u64, Running>,
    next_reap: u64,
    on_result: OnResult,
    stats: Arc<Stats>,
    base: Instant,
    seed: u64,
}

impl Loop {
    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let now = Instant::now();
            // Wake at the end of the slot of the earliest timer: every timer
            // of that slot fires in one wake-up, their sockets made in one
            // round trip.
            let wait = self
                .timers
                .peek()
                .map(|Reverse((at, ..))| self.slot_end(*at).saturating_duration_since(now))
                .map(|d| {
                    // Round up: waking a little early would spin.
                    let ms = d.as_micros().div_ceil(1000);
                    u16::try_from(ms).unwrap_or(u16::MAX)
                });
            let timeout = match wait {
                Some(ms) => nix::sys::epoll::EpollTimeout::from(ms),
                None => nix::sys::epoll::EpollTimeout::NONE,
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    tracing::error!("probe scheduler: epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            for ev in &events[..n] {
                let token = ev.data();
                if token == WAKE {
                    let _ = self.wake.read();
                    if !self.commands() {
                        self.shutdown();
                        return;
                    }
                } else if token >= REAP_BASE {
                    self.reaped(token);
                } else {
                    self.ready(token);
                }
            }
            self.fire_timers();
        }
    }

    /// Apply queued commands; false on Stop.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Add {
                    id,
                    target,
                    probe,
                    start,
                    jitter,
                }) => self.add(id, *target, *probe, start, jitter),
                Ok(Cmd::Remove(id)) => {
                    if let Some(mut e) = self.entries.remove(&id) {
                        self.abandon(id, &mut e);
                    }
                }
                Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn add(&mut self, id: u64, target: Target, probe: Probe, start: Instant, jitter: bool) {
        let Some(action) = probe.action() else {
            return;
        };
        let now = Instant::now();
        let period = Duration::from_secs(u64::from(probe.period_seconds));
        let mut first = start + Duration::from_secs(u64::from(probe.initial_delay_seconds));
        if first <= now {
            first = now;
            if jitter {
                first += period.mul_f64(self.random());
            }
        }
        self.entries.insert(
            id,
            Entry {
                target,
                probe,
                action,
                gen: 0,
                started: now,
                run: None,
                successes: 0,
                failures: 0,
                healthy: None,
            },
        );
        self.timers.push(Reverse((first, id, 0, TimerKind::Run)));
    }

    /// The end of the `SLACK` slot `at` falls in.
    fn slot_end(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.base).as_nanos();
        let slack = SLACK.as_nanos();
        let end = since.div_ceil(slack) * slack;
        self.base + Duration::from_nanos(u64::try_from(end).unwrap_or(u64::MAX))
    }

    /// xorshift: spread only, nothing secret.
    fn random(&mut self) -> f64 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, id, gen, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            if e.gen != gen {
                continue;
            }
            match kind {
                TimerKind::Run if e.run.is_none() => due.push(id),
                TimerKind::Timeout if e.run.is_some() => {
                    let secs = e.probe.timeout_seconds;
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    self.finish(id, Err(format!("timed out after {secs}s")));
                }
                _ => {}
            }
        }
        if due.is_empty() {
            return;
        }
        // The sockets of every network probe due, in one round trip.
        let mut asks = Vec::new();
        let mut who = Vec::new();
        for &id in &due {
            if let Some(e) = self.entries.get(&id) {
                if let (Some(addr), Some(ns)) = (e.socket_addr(), &e.target.netns) {
                    let family = if addr.is_ipv4() {
                        AddressFamily::Inet
                    } else {
                        AddressFamily::Inet6
                    };
                    asks.push((ns.clone(), family));
                    who.push(id);
                }
            }
        }
        let mut made: HashMap<u64, Result<OwnedFd, String>> = if asks.is_empty() {
            HashMap::new()
        } else {
            who.into_iter().zip(self.maker.sockets(asks)).collect()
        };
        for id in due {
            let sock = made.remove(&id);
            self.start_run(id, sock);
        }
    }

    fn start_run(&mut self, id: u64, sock: Option<Result<OwnedFd, String>>) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        e.started = now;
        let timeout = now + Duration::from_secs(u64::from(e.probe.timeout_seconds));
        let gen = e.gen;
        let begun: Result<Option<Run>, String> = match &e.action {
            Action::Tcp(t) => {
                let addr = SocketAddr::new(address(t.host, &e.target), t.port);
                open(sock, addr, false)
            }
            Action::Http(h) => {
                let addr = SocketAddr::new(address(h.host, &e.target), h.port);
                open(sock, addr, true)
            }
            Action::File(f) => match e.target.pid {
                Some(pid) => crate::probe::file::check(pid, &f.path).map(|()| None),
                None => Err("the instance is not running".into()),
            },
            Action::Exec(x) => match &e.target.exec {
                Some(t) => Running::spawn(t, &x.command, id).map(|r| Some(Run::Exec(r))),
                None => Err("no exec target".into()),
            },
        };
        let run = match begun {
            Ok(Some(run)) => run,
            Ok(None) => return self.finish(id, Ok(())),
            Err(reason) => return self.finish(id, Err(reason)),
        };
        // A connect that completed at once is writable at once: no special case.
        let (fd, flags) = match &run {
            Run::Connecting { fd, .. } => (fd.as_fd(), EpollFlags::EPOLLOUT),
            Run::Reading { fd, .. } => (fd.as_fd(), EpollFlags::EPOLLIN),
            Run::Exec(r) => (r.pidfd.as_fd(), EpollFlags::EPOLLIN),
        };
        if let Err(err) = self.epoll.add(fd, EpollEvent::new(flags, id)) {
            if let Run::Exec(r) = run {
                r.finish();
            }
            return self.finish(id, Err(format!("epoll: {err}")));
        }
        e.run = Some(run);
        self.timers
            .push(Reverse((timeout, id, gen, TimerKind::Timeout)));
    }

    /// A probe's fd is ready.
    fn ready(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let outcome: Option<Result<(), String>> = match e.run.as_mut() {
            None => None,
            Some(Run::Connecting { fd, addr, http }) => match net::connected(fd, *addr) {
                Err(r) => Some(Err(r)),
                Ok(()) if !*http => Some(Ok(())),
                Ok(()) => {
                    let Action::Http(h) = &e.action else {
                        return;
                    };
                    let req = net::request(*addr, &h.path, &h.headers);
                    match net::send(fd, &req).and_then(|()| {
                        self.epoll
                            .modify(fd.as_fd(), &mut EpollEvent::new(EpollFlags::EPOLLIN, id))
                            .map_err(|e| format!("epoll: {e}"))
                    }) {
                        Err(r) => Some(Err(r)),
                        Ok(()) => {
                            if let Some(Run::Connecting { fd, .. }) = e.run.take() {
                                e.run = Some(Run::Reading {
                                    fd,
                                    buf: Vec::new(),
                                });
                            }
                            None
                        }
                    }
                }
            },
            Some(Run::Reading { fd, buf }) => match net::read_answer(fd, buf) {
                Answer::More => None,
                Answer::Done(r) => Some(r),
            },
            Some(Run::Exec(r)) => r.reap(),
        };
        if let Some(r) = outcome {
            self.finish(id, r);
        }
    }

    /// An exec probe killed after its timeout has exited: reaped.
    fn reaped(&mut self, token: u64) {
        if let Some(mut r) = self.reaping.remove(&token) {
            if r.reap().is_none() {
                self.reaping.insert(token, r);
            } else {
                let _ = self.epoll.delete(r.pidfd.as_fd());
            }
        }
    }

    /// Drop what a run holds: sockets closed, an exec probe killed and
    /// reaped later.
    fn abandon(&mut self, _id: u64, e: &mut Entry) {
        match e.run.take() {
            Some(Run::Connecting { fd, .. }) | Some(Run::Reading { fd, .. }) => {
                let _ = self.epoll.delete(fd.as_fd());
            }
            Some(Run::Exec(mut r)) => {
                let _ = self.epoll.delete(r.pidfd.as_fd());
                if let Some(_done) = r.reap() {
                    return;
                }
                r.kill();
                let token = self.next_reap;
                self.next_reap += 1;
                if self
                    .epoll
                    .add(r.pidfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
                    .is_ok()
                {
                    self.reaping.insert(token, r);
                } else {
                    r.finish();
                }
            }
            None => {}
        }
    }

    fn finish(&mut self, id: u64, result: Result<(), String>) {
        let Some(mut e) = self.entries.remove(&id) else {
            return;
        };
        self.abandon(id, &mut e);
        e.gen += 1;
        let ok = result.is_ok();
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        let (consecutive, changed) = if ok {
            e.successes += 1;
            e.failures = 0;
            let crossed = e.healthy != Some(true) && e.successes >= e.probe.success_threshold;
            if crossed {
                e.healthy = Some(true);
            }
            (e.successes, crossed.then_some(true))
        } else {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            e.failures += 1;
            e.successes = 0;
            let crossed = e.healthy != Some(false) && e.failures >= e.probe.failure_threshold;
            if crossed {
                e.healthy = Some(false);
            }
            (e.failures, crossed.then_some(false))
        };
        let period = Duration::from_secs(u64::from(e.probe.period_seconds));
        let next = (e.started + period).max(Instant::now());
        self.timers.push(Reverse((next, id, e.gen, TimerKind::Run)));
        self.entries.insert(id, e);
        (self.on_result)(ProbeResult {
            id: ProbeId(id),
            ok,
            reason: result.err(),
            consecutive,
            changed,
            at: SystemTime::now(),
        });
    }

    fn shutdown(&mut self) {
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            if let Some(mut e) = self.entries.remove(&id) {
                if let Some(Run::Exec(r)) = e.run.take() {
                    r.finish();
                }
            }
        }
        for (_, r) in self.reaping.drain() {
            r.finish();
        }
    }
}

fn address(host: Option<IpAddr>, t: &Target) -> IpAddr {
    host.or(t.ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The connect of `addr` begun on `sock` (made in the target's netns), or
/// on a socket of the scheduler's own netns when the target names none.
fn open(
    sock: Option<Result<OwnedFd, String>>,
    addr: SocketAddr,
    http: bool,
) -> Result<Option<Run>, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = match sock {
        Some(made) => made?,
        None => nix::sys::socket::socket(
            family,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?,
    };
    if net::connect(&fd, addr)? && !http {
        return Ok(None);
    }
    Ok(Some(Run::Connecting { fd, addr, http }))
}
