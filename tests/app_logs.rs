//! Instance logs through the library (`Host::logs`) and the CLI (`rpaas-run
//! app logs|metrics|events`), on real keeper containers: rotation by size
//! and file count under a chatty app with nothing lost for a follower, long
//! lines cut into CRI partial records that never straddle a rotation, the
//! CRI format parsed back, follow seeing new lines and ending with the
//! instance, tail and since. Root only.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::apps::{Roots, IMAGE};
use common::rpaas_run_bin;
use rpaas::logs::parse_cri;
use rpaas::{AppSpec, Host, LogEntry, LogOptions};

fn spec(json: serde_json::Value) -> AppSpec {
    AppSpec::from_json(&serde_json::to_vec(&json).unwrap()).expect("spec")
}

fn cri_host(roots: &Roots, size: u64, files: u32) -> Host {
    let mut cfg = roots.config(None);
    cfg.log_size_max = size;
    cfg.log_max_files = files;
    cfg.log_driver = Some("k8s-file".into());
    Host::open(cfg).expect("open host")
}

/// Whole lines from entries (partial pieces joined), per stream.
fn lines(entries: &[LogEntry], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for e in entries.iter().filter(|e| e.stream == stream) {
        cur.push_str(&e.log);
        if !e.partial {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "log" || n.starts_with("log."))
        .collect();
    v.sort();
    v
}

const N: usize = 3000;

#[test]
fn chatty_app_rotates_by_size_and_count_and_a_follower_loses_nothing() {
    let roots = Roots::new();
    let h = cri_host(&roots, 32 * 1024, 3);
    // Waits a moment (the follower subscribes), then N numbered lines with
    // a 40000-byte line in the middle, stderr too, then a marker: about
    // 200 KB in 1.5 s, a rotation every 0.25 s. (A follower that falls more
    // than the kept files behind loses the files dropped meanwhile, as
    // kubelet's does: the writer here is fast, not unbounded.)
    let script = format!(
        "sleep 1; i=0; while [ $i -lt {N} ]; do echo \"line $i of the chatty app ..........\"; \
         if [ $i = 1500 ]; then head -c 40000 /dev/zero | tr '\\0' x; echo; echo oops >&2; fi; \
         i=$((i+1)); if [ $((i % 100)) = 0 ]; then sleep 0.05; fi; done; echo done; exec sleep 1000"
    );
    let app = spec(serde_json::json!({
        "name": "chat", "image": IMAGE, "instances": 1,
        "command": ["sh", "-c", script], "stop": {"grace": 0.2}
    }));
    h.deploy(&app).expect("deploy");
    let follow = h
        .logs(
            "chat-1",
            LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .expect("follow");
    let t0 = Instant::now();
    let mut got: Vec<LogEntry> = Vec::new();
    for e in follow {
        let e = e.expect("entry");
        let end = e.log == "done";
        got.push(e);
        if end {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "too slow");
    }
    let out = lines(&got, "stdout");
    // Every line, in order, across several rotations.
    let mut want: Vec<String> = Vec::new();
    for i in 0..N {
        want.push(format!("line {i} of the chatty app .........."));
        if i == 1500 {
            want.push("x".repeat(40000));
        }
    }
    want.push("done".into());
    let dbg = {
        let dir = roots.state.path().join("chat-1");
        let mut t = String::new();
        for f in log_files(&dir) {
            let text = std::fs::read_to_string(dir.join(&f)).unwrap();
            let ls: Vec<&str> = text.lines().collect();
            t += &format!(
                "{f}: {} bytes {} lines first {:.80} last {:.80}\n",
                text.len(),
                ls.len(),
                ls.first().unwrap_or(&""),
                ls.last().unwrap_or(&"")
            );
        }
        t
    };
    if let Some(k) = (0..out.len().min(want.len())).find(|k| out[*k] != want[*k]) {
        panic!(
            "line {k} differs: got {:.60} want {:.60}; next got {:?}; files:\n{dbg}",
            out[k],
            want[k],
            out.get(k + 1)
                .map(|l| l.chars().take(60).collect::<String>())
        );
    }
    assert_eq!(out.len(), want.len());
    assert!(out == want, "lines differ");
    assert_eq!(lines(&got, "stderr"), ["oops"]);
    // The long line came as CRI partial pieces of at most 16 KiB.
    let pieces: Vec<&LogEntry> = got.iter().filter(|e| e.partial).collect();
    assert_eq!(pieces.len(), 2, "{}", pieces.len());
    assert!(pieces.iter().all(|e| e.log.len() == 16 * 1024));
    // On disk: 3 files at most (by count), each about the size; every line
    // is a CRI record; P records are followed by their F in the same file.
    let dir = roots.state.path().join("chat-1");
    let files = log_files(&dir);
    assert_eq!(files, ["log", "log.1", "log.2"], "{files:?}");
    let mut on_disk: Vec<LogEntry> = Vec::new();
    for f in ["log.2", "log.1", "log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let len = text.len() as u64;
        let recs: Vec<LogEntry> = text
            .lines()
            .map(|l| parse_cri(l).unwrap_or_else(|| panic!("{f}: not CRI: {l:.80}")))
            .collect();
        // One cut line may overflow (up to twice the size), never more.
        assert!(len <= 2 * 32 * 1024 + 17 * 1024, "{f}: {len} bytes");
        let mut open = false;
        for r in &recs {
            if r.stream == "stdout" {
                open = r.partial;
            }
        }
        assert!(!open, "{f} ends inside a cut line");
        if recs.first().is_some_and(|r| r.stream == "stdout") {
            // A file never starts with the rest of a cut line: the first
            // stdout record either is whole or starts a new cut line.
            let first = recs.iter().find(|r| r.stream == "stdout").unwrap();
            assert!(
                !first.log.starts_with('x') || first.log.len() == 16 * 1024,
                "{f} starts mid-line"
            );
        }
        on_disk.extend(recs);
    }
    // What is kept is a suffix of what was written (older files dropped).
    let kept = lines(&on_disk, "stdout");
    assert!(kept.len() < want.len(), "nothing was dropped?");
    assert_eq!(kept[..], want[want.len() - kept.len()..]);
    // The library reads the same back, tail included.
    let all: Vec<LogEntry> = h
        .logs("chat-1", LogOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, on_disk);
    let tail: Vec<LogEntry> = h
        .logs(
            "chat-1",
            LogOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tail.iter().map(|e| e.log.as_str()).collect::<Vec<_>>(),
        [
            format!("line {} of the chatty app ..........", N - 1),
            "done".into()
        ]
    );
    h.remove("chat").unwrap();
}

#[test]
fn follow_sees_new_lines_and_ends_when_the_instance_stops() {
    let roots = Roots::new();
    let h = roots.host(None);
    let app = spec(serde_json::json!({
        "name": "tick", "image": IMAGE, "instances": 1,
        "command": ["sh", "-c", "echo first; sleep 1.5; echo second; echo err >&2; sleep 1; exit 3"],
        "stop": {"grace": 0.2}
    }));
    h.deploy(&app).expect("deploy");
    // Default (json-file) format.
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(roots.state.path().join("tick-1/log")).unwrap();
    assert!(text.starts_with("{\""), "{text}");
    let t0 = Instant::now();
    let mut follow = h
        .logs(
            "tick-1",
            LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .unwrap();
    let first = follow.next().unwrap().unwrap();
    assert_eq!(
        (first.log.as_str(), first.stream.as_str()),
        ("first", "stdout")
    );
    let rest: Vec<LogEntry> = follow.map(Result::unwrap).collect();
    // It waited for the second line, then ended with the instance.
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(lines(&rest, "stdout"), ["second"]);
    assert_eq!(lines(&rest, "stderr"), ["err"]);
    assert_eq!(h.app("tick").unwrap().instances[0].status, "stopped");
    // since: only what came after the first line.
    let after = rpaas::logs::parse_time(&first.time).unwrap() + Duration::from_millis(500);
    let since: Vec<LogEntry> = h
        .logs(
            "tick-1",
            LogOptions {
                since: Some(after),
                ..Default::default()
            },
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(since.len(), 2, "{since:?}");
    assert!(h.logs("nope-1", LogOptions::default()).is_err());
    h.remove("tick").unwrap();
}

#[test]
fn cli_logs_metrics_and_events() {
    let roots = Roots::new();
    let h = cri_host(&roots, 0, 0);
    let app = spec(serde_json::json!({
        "name": "cli", "image": IMAGE, "instances": 1,
        "command": ["sh", "-c", "echo one; echo two; echo three; exec sleep 1000"],
        "resources": {"memory": "64M"},
        "stop": {"grace": 0.2}
    }));
    h.deploy(&app).expect("deploy");
    let cfg = roots.image_dir.path().join("host.json");
    std::fs::write(&cfg, serde_json::to_vec(h.config()).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(rpaas_run_bin())
            .arg("app")
            .arg("--host-config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while run(&["logs", "cli-1"]) != "one\ntwo\nthree\n" {
        assert!(Instant::now() < end, "{}", run(&["logs", "cli-1"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(run(&["logs", "cli-1", "--tail", "1"]), "three\n");
    let ts = run(&["logs", "cli-1", "--tail", "1", "--timestamps"]);
    assert!(ts.ends_with(" stdout three\n"), "{ts}");
    let prom = run(&["metrics", "cli"]);
    assert!(
        prom.contains("# TYPE container_memory_working_set_bytes gauge"),
        "{prom}"
    );
    assert!(
        prom.contains("container_spec_memory_limit_bytes{app=\"cli\",instance=\"cli-1\""),
        "{prom}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&["metrics", "--format", "json"])).unwrap();
    assert_eq!(json[0]["instance"], "cli-1");
    let events = run(&["events"]);
    let first: serde_json::Value = serde_json::from_str(events.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "started");
    assert_eq!(first["instance"], "cli-1");
    let out = std::process::Command::new(rpaas_run_bin())
        .args(["app", "--host-config"])
        .arg(&cfg)
        .args(["logs", "../etc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    h.remove("cli").unwrap();
}
