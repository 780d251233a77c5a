//! Health probes and the restart policy (`Host::supervise`) on real
//! instances: busybox httpd apps on a LAN of network namespaces, probes run
//! inside each instance's netns, restarts through `Host::restart`. Periods of
//! 1 s; the assertions are on counts and order, not wall times. Root only.

mod common;

use std::time::{Duration, Instant};

use common::apps::{Lan, Leftovers, Roots, IMAGE};
use rpaas::probe::ProbeKind;
use rpaas::{AppSpec, HistoryEntry, Host, SuperviseOptions, Supervisor};

fn spec(json: serde_json::Value) -> AppSpec {
    AppSpec::from_json(&serde_json::to_vec(&json).unwrap()).expect("spec")
}

fn supervise(h: &Host) -> Supervisor {
    h.supervise_with(SuperviseOptions {
        sync_interval: Duration::from_millis(200),
        ..SuperviseOptions::default()
    })
    .expect("supervise")
}

fn entries(sv: &Supervisor, inst: &str) -> Vec<HistoryEntry> {
    sv.history(inst).into_iter().map(|t| t.entry).collect()
}

/// Wait until `pred` holds of the instance's history; panic with it after `secs`.
fn wait_until(
    sv: &Supervisor,
    inst: &str,
    secs: u64,
    what: &str,
    pred: impl Fn(&[HistoryEntry]) -> bool,
) -> Vec<HistoryEntry> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = entries(sv, inst);
        if pred(&h) {
            return h;
        }
        if Instant::now() > end {
            panic!("{inst}: {what} not seen in {secs}s; history: {h:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(h: &[HistoryEntry], f: impl Fn(&HistoryEntry) -> bool) -> usize {
    h.iter().filter(|e| f(e)).count()
}

fn restarted(h: &[HistoryEntry]) -> usize {
    count(h, |e| matches!(e, HistoryEntry::Restarted { .. }))
}

fn healthy(sv: &Supervisor, inst: &str) -> bool {
    sv.status(inst).is_some_and(|s| s.health == "healthy")
}

fn wait_healthy(sv: &Supervisor, inst: &str, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !healthy(sv, inst) {
        assert!(
            Instant::now() < end,
            "{inst} not healthy in {secs}s: {:?}; history {:#?}",
            sv.status(inst),
            entries(sv, inst)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn init_pid(h: &Host, inst: &str) -> i32 {
    h.load(inst).unwrap().live_init().expect("running").pid
}

/// Everything of the test gone: app removed, supervisor stopped, nothing left.
fn finish(h: &Host, sv: Supervisor, apps: &[&str], roots: &Roots, before: &Leftovers) {
    for a in apps {
        h.remove(a).expect("remove");
    }
    sv.stop();
    let health_dir = roots.state.path().join("#health");
    let left: Vec<_> = std::fs::read_dir(&health_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "health files left: {left:?}");
    assert_eq!(&Leftovers::of(roots), before);
}

#[test]
fn startup_passes_then_liveness_runs() {
    let roots = Roots::new();
    let lan = Lan::new(61);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let sv = supervise(&h);
    // Serves only after 3 s.
    let app = spec(serde_json::json!({
        "name": "slow", "image": IMAGE,
        "command": ["sh", "-c", "sleep 3; exec httpd -f -p 8080 -h /www"],
        "stop": {"grace": 0.5},
        "health": {
            "startup": {"http": {"port": 8080, "path": "/", "headers": [{"name": "X-Probe", "value": "startup"}]},
                        "periodSeconds": 1, "failureThreshold": 10},
            "liveness": {"http": {"port": 8080, "path": "/index.html"}, "periodSeconds": 1},
            "readiness": {"tcp": {"port": 8080}, "periodSeconds": 1}
        }
    }));
    h.deploy(&app).expect("deploy");
    let st = h.app("slow").unwrap();
    assert!(
        matches!(st.instances[0].health.as_deref(), None | Some("starting")),
        "not looked at yet, or starting: {st:?}"
    );
    let hist = wait_until(&sv, "slow-1", 20, "two liveness successes", |h| {
        count(h, |e| {
            matches!(
                e,
                HistoryEntry::Probe {
                    kind: ProbeKind::Liveness,
                    ok: true,
                    ..
                }
            )
        }) >= 2
    });
    let startup_pass = hist
        .iter()
        .position(|e| {
            matches!(
                e,
                HistoryEntry::Probe {
                    kind: ProbeKind::Startup,
                    ok: true,
                    changed: Some(true),
                    ..
                }
            )
        })
        .expect("startup passed");
    let startup_fails = count(&hist[..startup_pass], |e| {
        matches!(
            e,
            HistoryEntry::Probe {
                kind: ProbeKind::Startup,
                ok: false,
                ..
            }
        )
    });
    assert!(
        (1..10).contains(&startup_fails),
        "the first 3 s fail startup, under its threshold: {hist:#?}"
    );
    // Nothing but startup ran before it passed.
    assert!(
        hist[..startup_pass].iter().all(|e| !matches!(
            e,
            HistoryEntry::Probe {
                kind: ProbeKind::Liveness | ProbeKind::Readiness,
                ..
            }
        )),
        "{hist:#?}"
    );
    assert_eq!(
        count(&hist, |e| matches!(
            e,
            HistoryEntry::Probe {
                kind: ProbeKind::Startup,
                ..
            }
        )),
        startup_fails + 1,
        "startup stops once passed: {hist:#?}"
    );
    assert!(!hist.iter().any(|e| matches!(
        e,
        HistoryEntry::Killed { .. } | HistoryEntry::Restarted { .. }
    )));
    wait_healthy(&sv, "slow-1", 5);
    // What `app inspect` shows (another process reads the same status).
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let i = h.app("slow").unwrap().instances[0].clone();
        if i.ready == Some(true) {
            assert_eq!(i.health.as_deref(), Some("healthy"));
            assert_eq!(i.restarts, 0);
            break;
        }
        assert!(Instant::now() < end, "not ready: {i:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    finish(&h, sv, &["slow"], &roots, &before);
}

#[test]
fn hung_http_fails_liveness_after_threshold_and_restarts_with_backoff() {
    let roots = Roots::new();
    let lan = Lan::new(62);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let sv = supervise(&h);
    let app = spec(serde_json::json!({
        "name": "hang", "image": IMAGE,
        "stop": {"grace": 0.5},
        "health": {
            "liveness": {"http": {"port": 8080}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3}
        },
        "restart": {"policy": "always", "backoffSeconds": 1, "maxBackoffSeconds": 4}
    }));
    h.deploy(&app).expect("deploy");
    wait_healthy(&sv, "hang-1", 10);
    let was = h.app("hang").unwrap().instances[0].clone();
    // A mark in the writable layer: a restart keeps it.
    let out = h
        .exec("hang-1", None, &["sh", "-c", "echo kept > /tmp/mark"])
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");

    let events = h.events().expect("events");
    for round in 1..=2u32 {
        let pid = init_pid(&h, "hang-1");
        // The HTTP handler hangs: the listener still completes connects
        // (backlog), nothing answers.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        let hist = wait_until(&sv, "hang-1", 30, "a restart", |h| {
            restarted(h) >= round as usize
        });
        // From the last success before the kill: exactly failureThreshold
        // failures, the last one crossing the threshold, then the kill.
        let killed = hist
            .iter()
            .rposition(|e| matches!(e, HistoryEntry::Killed { .. }))
            .unwrap();
        let last_ok = hist[..killed]
            .iter()
            .rposition(|e| matches!(e, HistoryEntry::Probe { ok: true, .. }))
            .unwrap();
        let fails: Vec<&HistoryEntry> = hist[last_ok + 1..killed]
            .iter()
            .filter(|e| matches!(e, HistoryEntry::Probe { .. }))
            .collect();
        assert_eq!(fails.len(), 3, "{hist:#?}");
        assert!(fails.iter().all(|e| matches!(
            e,
            HistoryEntry::Probe {
                kind: ProbeKind::Liveness,
                ok: false,
                ..
            }
        )));
        assert!(
            matches!(
                fails[2],
                HistoryEntry::Probe {
                    changed: Some(false),
                    ..
                }
            ),
            "{hist:#?}"
        );
        // Then: exit (a failure), the backoff of the round, the restart.
        let tail: Vec<&HistoryEntry> = hist[killed + 1..]
            .iter()
            .filter(|e| !matches!(e, HistoryEntry::Probe { .. }))
            .collect();
        let want_delay = 1000u64 << (round - 1);
        assert!(
            matches!(tail[0], HistoryEntry::Exited { failed: true, .. })
                && matches!(tail[1], HistoryEntry::Backoff { n, delay_ms } if *n == round && *delay_ms == want_delay)
                && matches!(tail[2], HistoryEntry::Restarted { restarts } if *restarts == round),
            "round {round}: {tail:#?}"
        );
        wait_healthy(&sv, "hang-1", 10);
        // On the host's event bus too: unhealthy, then restarted.
        let evs: Vec<rpaas::EventKind> = events
            .drain()
            .into_iter()
            .filter(|e| e.instance == "hang-1")
            .map(|e| e.kind)
            .collect();
        let down = evs
            .iter()
            .position(|k| matches!(k, rpaas::EventKind::HealthChanged { healthy: false, .. }))
            .unwrap_or_else(|| panic!("no HealthChanged(false): {evs:?}"));
        let up = evs
            .iter()
            .position(
                |k| matches!(k, rpaas::EventKind::Restarted { restarts, .. } if *restarts == round),
            )
            .unwrap_or_else(|| panic!("no Restarted: {evs:?}"));
        assert!(down < up, "{evs:?}");
        let now = h.app("hang").unwrap().instances[0].clone();
        assert_eq!(
            (now.ip.clone(), now.mac.clone()),
            (was.ip.clone(), was.mac.clone())
        );
        assert_ne!(now.pid, Some(pid));
        assert_eq!(now.restarts, round);
        let out = h.exec("hang-1", None, &["cat", "/tmp/mark"]).unwrap();
        assert_eq!(out.stdout, "kept\n", "same writable layer");
    }
    finish(&h, sv, &["hang"], &roots, &before);
}

#[test]
fn readiness_flips_without_restart() {
    let roots = Roots::new();
    let lan = Lan::new(63);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let sv = supervise(&h);
    let app = spec(serde_json::json!({
        "name": "ready", "image": IMAGE,
        "stop": {"grace": 0.5},
        "health": {
            "liveness": {"tcp": {"port": 8080}, "periodSeconds": 1},
            "readiness": {"file": {"path": "/tmp/ready"}, "periodSeconds": 1, "failureThreshold": 1}
        }
    }));
    h.deploy(&app).expect("deploy");
    wait_healthy(&sv, "ready-1", 10);
    let ready = |want: bool| {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let i = h.app("ready").unwrap().instances[0].clone();
            if i.ready == Some(want) {
                assert_eq!(i.health.as_deref(), Some("healthy"));
                return;
            }
            assert!(Instant::now() < end, "ready != {want}: {i:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ready(false);
    let pid = init_pid(&h, "ready-1");
    for (cmd, want) in [
        ("touch /tmp/ready", true),
        ("rm /tmp/ready", false),
        ("touch /tmp/ready", true),
    ] {
        assert_eq!(h.exec("ready-1", None, &["sh", "-c", cmd]).unwrap().code, 0);
        ready(want);
    }
    // `rpaas-run app inspect` (another process) shows them.
    let cfg = roots.image_dir.path().join("host.json");
    std::fs::write(
        &cfg,
        serde_json::to_vec(&roots.config(Some(lan.network()))).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(common::rpaas_run_bin())
        .arg("--root")
        .arg(roots.state.path())
        .args(["app", "--host-config"])
        .arg(&cfg)
        .args(["inspect", "ready"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = text.lines().find(|l| l.starts_with("ID ")).expect("table");
    let row = text
        .lines()
        .find(|l| l.starts_with("ready-1 "))
        .expect("row");
    let col = |name: &str| {
        let i = head.find(name).unwrap();
        row[i..].split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(
        (col("HEALTH"), col("READY")),
        ("healthy".into(), "yes".into()),
        "{text}"
    );
    let hist = entries(&sv, "ready-1");
    let flips: Vec<bool> = hist
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Probe {
                kind: ProbeKind::Readiness,
                changed: Some(c),
                ..
            } => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(flips, [false, true, false, true], "{hist:#?}");
    assert!(!hist.iter().any(|e| matches!(
        e,
        HistoryEntry::Killed { .. } | HistoryEntry::Restarted { .. } | HistoryEntry::Exited { .. }
    )));
    assert_eq!(init_pid(&h, "ready-1"), pid, "no restart");
    assert_eq!(h.app("ready").unwrap().instances[0].restarts, 0);
    finish(&h, sv, &["ready"], &roots, &before);
}

/// Processes on the host whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push((pid, c));
            }
        }
    }
    out
}

#[test]
fn exec_probe_timeout_kills_the_probe_process() {
    let roots = Roots::new();
    let lan = Lan::new(64);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let sv = supervise(&h);
    let app = spec(serde_json::json!({
        "name": "slowexec", "image": IMAGE,
        "stop": {"grace": 0.5},
        "health": {
            "liveness": {"exec": {"command": ["sh", "-c", "test -e /www/index.html"]}, "periodSeconds": 1},
            // Forks a child (sleep) that must go with it.
            "readiness": {"exec": {"command": ["sh", "-c", "sleep 37; true"]},
                          "periodSeconds": 6, "timeoutSeconds": 1, "failureThreshold": 1}
        }
    }));
    h.deploy(&app).expect("deploy");
    wait_healthy(&sv, "slowexec-1", 15);
    let hist = wait_until(&sv, "slowexec-1", 20, "a readiness timeout", |h| {
        h.iter().any(|e| matches!(
            e,
            HistoryEntry::Probe { kind: ProbeKind::Readiness, ok: false, reason: Some(r), .. } if r.contains("timed out")
        ))
    });
    // The next readiness run is 5 s away: within 2 s nothing of the probe is left.
    let c = h.load("slowexec-1").unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let sleeps = processes_with("sleep 37");
        let procs = c.processes().unwrap();
        let runtimes = processes_with(&format!("{} exec", roots.state.path().display()));
        // Liveness exec probes come and go each second: count only the readiness one.
        let leftover_runtime = runtimes.iter().any(|(_, c)| c.contains("sleep 37"));
        if sleeps.is_empty() && !leftover_runtime {
            assert!(procs.len() <= 3, "{procs:?}");
            break;
        }
        assert!(
            Instant::now() < end,
            "left after the timeout: {sleeps:?} {runtimes:?}; {hist:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(h.app("slowexec").unwrap().instances[0].ready, Some(false));
    // Liveness by exec passes all along: no restart.
    let hist = entries(&sv, "slowexec-1");
    assert!(
        count(&hist, |e| matches!(
            e,
            HistoryEntry::Probe {
                kind: ProbeKind::Liveness,
                ok: true,
                ..
            }
        )) >= 1
    );
    assert_eq!(restarted(&hist), 0, "{hist:#?}");
    finish(&h, sv, &["slowexec"], &roots, &before);
    assert!(processes_with("sleep 37").is_empty());
}

#[test]
fn restart_policies_backoff_and_agent_down() {
    let roots = Roots::new();
    let lan = Lan::new(65);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let app = |name: &str, exit: i32, policy: &str| {
        spec(serde_json::json!({
            "name": name, "image": IMAGE,
            "command": ["sh", "-c", format!("sleep 1; exit {exit}")],
            "stop": {"grace": 0.5},
            "restart": {"policy": policy, "backoffSeconds": 0.5, "maxBackoffSeconds": 1}
        }))
    };
    for (name, code, policy) in [
        ("crash", 3, "on-failure"),
        ("done", 0, "on-failure"),
        ("never", 3, "never"),
        ("always", 0, "always"),
    ] {
        h.deploy(&app(name, code, policy)).expect("deploy");
    }
    let sv = supervise(&h);
    let hist = wait_until(&sv, "crash-1", 30, "three restarts", |h| restarted(h) >= 3);
    let delays: Vec<(u32, u64)> = hist
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Backoff { n, delay_ms } => Some((*n, *delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(delays[..3], [(1, 500), (2, 1000), (3, 1000)], "{hist:#?}");
    let h2 = wait_until(&sv, "always-1", 30, "a restart after exit 0", |h| {
        restarted(h) >= 1
    });
    assert!(h2.iter().any(|e| matches!(
        e,
        HistoryEntry::Exited {
            code: 0,
            failed: false
        }
    )));
    for name in ["done-1", "never-1"] {
        let hist = wait_until(&sv, name, 10, "no restart", |h| {
            h.iter()
                .any(|e| matches!(e, HistoryEntry::NotRestarted { .. }))
        });
        assert_eq!(restarted(&hist), 0, "{name}: {hist:#?}");
    }
    std::thread::sleep(Duration::from_secs(2));
    for name in ["done", "never"] {
        let i = h.app(name).unwrap().instances[0].clone();
        assert_eq!((i.status.as_str(), i.restarts), ("stopped", 0), "{i:?}");
    }

    // The agent goes away: nothing restarts any more.
    sv.stop();
    let crash_restarts = h.app("crash").unwrap().instances[0].restarts;
    std::thread::sleep(Duration::from_secs(4));
    let i = h.app("crash").unwrap().instances[0].clone();
    assert_eq!(
        (i.status.as_str(), i.restarts),
        ("stopped", crash_restarts),
        "{i:?}"
    );
    // A new agent catches up: recover brings back what the policy restarts.
    let rep = h.recover().expect("recover");
    assert!(rep.restarted.contains(&"crash-1".to_string()), "{rep:?}");
    assert!(rep.restarted.contains(&"always-1".to_string()), "{rep:?}");
    assert!(
        !rep.restarted
            .iter()
            .any(|n| n == "done-1" || n == "never-1"),
        "{rep:?}"
    );
    for a in ["crash", "done", "never", "always"] {
        h.remove(a).expect("remove");
    }
    assert_eq!(Leftovers::of(&roots), before);
}
