//! Instance metrics and events through the library (`Host::metrics`,
//! `Host::events`), on real keeper containers: a memory hog and OOM kills,
//! a CPU spinner, traffic over the instance's veth, a fork bomb held by its
//! pids limit, writes to the writable layer, and the Prometheus exposition
//! read back by a real parser (Python's prometheus_client). Root only.

mod common;

use std::time::{Duration, Instant};

use common::apps::{get_eventually, Lan, Leftovers, Roots, IMAGE};
use rpaas::metrics::prometheus;
use rpaas::{AppSpec, EventKind, Host, InstanceMetrics, MetricsOptions};

fn spec(json: serde_json::Value) -> AppSpec {
    AppSpec::from_json(&serde_json::to_vec(&json).unwrap()).expect("spec")
}

fn fresh() -> MetricsOptions {
    MetricsOptions {
        fs_max_age: Duration::ZERO,
        app: None,
    }
}

fn of(h: &Host, instance: &str) -> InstanceMetrics {
    h.metrics_with(&fresh())
        .expect("metrics")
        .into_iter()
        .find(|m| m.instance == instance)
        .unwrap_or_else(|| panic!("no metrics for {instance}"))
}

/// Poll until `f` holds (or panic with the last value).
fn until<T: std::fmt::Debug>(what: &str, secs: u64, mut f: impl FnMut() -> (bool, T)) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, v) = f();
        if ok {
            return v;
        }
        if Instant::now() > end {
            panic!("{what}: not within {secs}s: {v:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_event(
    ev: &rpaas::Events,
    secs: u64,
    mut want: impl FnMut(&rpaas::Event) -> bool,
) -> rpaas::Event {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    while Instant::now() < end {
        if let Some(e) = ev.next_timeout(Duration::from_millis(200)) {
            if want(&e) {
                return e;
            }
            seen.push(e);
        }
    }
    panic!("event not seen within {secs}s; saw {seen:#?}");
}

#[test]
fn memory_hog_working_set_and_oom_kills_in_metrics_and_events() {
    let roots = Roots::new();
    let before = Leftovers::of(&roots);
    let h = roots.host(None);
    let events = h.events().expect("subscribe");
    // dd fills a 20 MB buffer, then blocks writing it to a pipe no one reads.
    let hog = spec(serde_json::json!({
        "name": "hog", "image": IMAGE, "instances": 1,
        "command": ["sh", "-c", "dd if=/dev/zero bs=20M count=1 | sleep 1000"],
        "resources": {"memory": "48M"},
        "stop": {"grace": 0.2}
    }));
    h.deploy(&hog).expect("deploy");
    wait_event(&events, 10, |e| {
        e.instance == "hog-1" && e.kind == EventKind::Started
    });
    let m = until("working set of the hog", 10, || {
        let m = of(&h, "hog-1");
        let ws = m.memory.as_ref().map(|x| x.working_set).unwrap_or(0);
        (ws >= 20 << 20, m)
    });
    let mem = m.memory.clone().unwrap();
    assert_eq!(mem.limit, Some(48 << 20), "{mem:?}");
    assert!(mem.rss >= 20 << 20, "{mem:?}");
    assert!(mem.usage >= mem.working_set, "{mem:?}");
    assert_eq!(mem.oom_kills, 0);
    // A child past the limit is OOM-killed; init lives on.
    let out = h
        .exec(
            "hog-1",
            None,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        )
        .expect("exec");
    assert_ne!(out.code, 0, "{out:?}");
    let e = wait_event(&events, 10, |e| {
        e.instance == "hog-1" && matches!(e.kind, EventKind::OomKill { .. })
    });
    assert_eq!(e.app.as_deref(), Some("hog"));
    let m = of(&h, "hog-1");
    assert_eq!(m.status, "running");
    assert!(m.memory.as_ref().unwrap().oom_kills >= 1, "{m:?}");
    let text = prometheus::render(&[m]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("container_oom_events_total{")
                && l.contains("instance=\"hog-1\"")
                && !l.ends_with(" 0")),
        "{text}"
    );
    // An init that is the hog: its exit says OOM-killed.
    let boom = spec(serde_json::json!({
        "name": "boom", "image": IMAGE, "instances": 1,
        "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        "resources": {"memory": "32M"},
        "stop": {"grace": 0.2}
    }));
    h.deploy(&boom).expect("deploy boom");
    let e = wait_event(&events, 15, |e| {
        e.instance == "boom-1" && matches!(e.kind, EventKind::Exited { .. })
    });
    assert_eq!(
        e.kind,
        EventKind::Exited {
            code: 137,
            signal: Some(9),
            oom_killed: true
        },
        "{e:?}"
    );
    h.remove("boom").unwrap();
    h.remove("hog").unwrap();
    let e = wait_event(&events, 10, |e| e.kind == EventKind::Removed);
    assert!(["hog-1", "boom-1"].contains(&e.instance.as_str()), "{e:?}");
    assert_eq!(Leftovers::of(&roots), before);
}

#[test]
fn cpu_spinner_usage_grows_about_one_core_second_per_second() {
    let roots = Roots::new();
    let h = roots.host(None);
    let spin = spec(serde_json::json!({
        "name": "spin", "image": IMAGE, "instances": 1,
        "command": ["sh", "-c", "while :; do :; done"],
        "stop": {"grace": 0.2}
    }));
    h.deploy(&spin).expect("deploy");
    let pid = h.app("spin").unwrap().instances[0].pid.expect("pid");
    // The spinning shell's own CPU time, as the scheduler counts it (ticks).
    let ticks = || {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<u64> = st
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        (f[0] + f[1]) as f64 / 100.0
    };
    let (a, pa) = (of(&h, "spin-1").cpu.expect("cpu"), ticks());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (b, pb) = (of(&h, "spin-1").cpu.expect("cpu"), ticks());
    let wall = t0.elapsed().as_secs_f64();
    let used = (b.usage_ns - a.usage_ns) as f64 / 1e9;
    // One busy thread: about one core-second per second when it has a core
    // to itself (other tests share the host's cores: loose lower bound),
    // and what the scheduler counted for the process itself.
    assert!(
        used > 0.25 * wall && used < 1.1 * wall,
        "{used}s of cpu in {wall}s"
    );
    let proc_used = pb - pa;
    assert!(
        (used - proc_used).abs() < 0.1 * proc_used + 0.05,
        "cgroup {used}s, process {proc_used}s"
    );
    assert!(
        b.user_ns + b.system_ns > a.user_ns + a.system_ns,
        "{a:?} {b:?}"
    );
    if !b.per_cpu_ns.is_empty() {
        let sum: u64 = b.per_cpu_ns.iter().sum();
        assert!(sum.abs_diff(b.usage_ns) < b.usage_ns / 10 + 50_000_000);
    }
    // A quota of 200 millicores throttles it.
    h.update(
        "spin",
        &serde_json::from_value(serde_json::json!({"cpus": 200})).unwrap(),
    )
    .expect("update");
    let c = until("throttled periods", 10, || {
        let c = of(&h, "spin-1").cpu.unwrap();
        (c.throttled_periods > 0 && c.throttled_ns > 0, c)
    });
    assert!(c.periods >= c.throttled_periods, "{c:?}");
    h.remove("spin").unwrap();
}

#[test]
fn traffic_over_the_veth_shows_in_the_instance_counters() {
    let roots = Roots::new();
    let lan = Lan::new(42);
    let h = roots.host(Some(lan.network()));
    let web = spec(serde_json::json!({
        "name": "net", "image": IMAGE, "instances": 1, "stop": {"grace": 0.2}
    }));
    let st = h.deploy(&web).expect("deploy");
    let ip = st.instances[0].ip.clone().unwrap();
    let ip = ip.split('/').next().unwrap();
    let out = h
        .exec(
            "net-1",
            Some("0"),
            &["dd", "if=/dev/zero", "of=/www/big", "bs=1024", "count=2048"],
        )
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let a = of(&h, "net-1");
    assert_eq!(a.ip.as_deref(), Some(ip));
    let eth = |m: &InstanceMetrics| {
        m.network
            .iter()
            .find(|i| i.name == "eth0")
            .cloned()
            .unwrap_or_else(|| panic!("no eth0 in {:?}", m.network))
    };
    assert!(a.network.iter().all(|i| i.name != "lo"), "{:?}", a.network);
    let e0 = eth(&a);
    let body = get_eventually(&lan.peer, &format!("http://{ip}:8080/big"));
    assert_eq!(body.len(), 2048 * 1024);
    let e1 = eth(&of(&h, "net-1"));
    assert!(e1.tx_bytes - e0.tx_bytes >= 2048 * 1024, "{e0:?} {e1:?}");
    // veth offloads segmentation: far fewer packets than MTU-sized ones.
    assert!(e1.tx_packets - e0.tx_packets >= 10, "{e0:?} {e1:?}");
    assert!(e1.rx_packets > e0.rx_packets && e1.rx_bytes > e0.rx_bytes);
    let text = prometheus::render(&h.metrics().unwrap());
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("container_network_transmit_bytes_total{")
                && l.contains("interface=\"eth0\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("ip=\"{ip}\"")), "{line}");
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v >= e1.tx_bytes as f64, "{line}");
    h.remove("net").unwrap();
}

#[test]
fn fork_bomb_held_by_the_pids_limit_shows_the_counts() {
    let roots = Roots::new();
    let h = roots.host(None);
    let bomb = spec(serde_json::json!({
        "name": "bomb", "image": IMAGE, "instances": 1,
        "command": ["sleep", "100000"],
        "resources": {"pids": 24},
        "stop": {"grace": 0.2}
    }));
    h.deploy(&bomb).expect("deploy");
    // The shell dies at its first failed fork; what it started stays.
    let out = h
        .exec(
            "bomb-1",
            None,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 200 ]; do sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done",
            ],
        )
        .expect("exec");
    assert_ne!(out.code, 0, "{out:?}");
    let m = until("pids at the limit", 15, || {
        let m = of(&h, "bomb-1");
        let cur = m.pids.as_ref().map(|p| p.current).unwrap_or(0);
        (cur >= 20, m)
    });
    let pids = m.pids.clone().unwrap();
    assert_eq!(pids.limit, Some(24));
    assert!(pids.current <= 24, "{pids:?}");
    let p = m.processes.clone().expect("processes");
    assert!(p.processes >= 20 && p.processes <= 24, "{p:?}");
    assert!(p.threads >= p.processes, "{p:?}");
    // Each process has at least stdin/stdout/stderr.
    assert!(p.file_descriptors >= 3 * p.processes, "{p:?}");
    let text = prometheus::render(&[m]);
    assert!(
        text.contains("# TYPE container_threads_max gauge"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("container_threads_max{") && l.ends_with(" 24")),
        "{text}"
    );
    h.remove("bomb").unwrap();
}

#[test]
fn writable_layer_usage_grows_by_the_bytes_written() {
    let roots = Roots::new();
    let h = roots.host(None);
    let app = spec(serde_json::json!({
        "name": "disk", "image": IMAGE, "instances": 1, "stop": {"grace": 0.2}
    }));
    h.deploy(&app).expect("deploy");
    let a = of(&h, "disk-1").fs.expect("fs");
    assert_eq!(a.driver, "overlay");
    assert!(a.complete);
    let out = h
        .exec(
            "disk-1",
            Some("0"),
            &[
                "sh",
                "-c",
                "mkdir /d && dd if=/dev/urandom of=/d/blob bs=1M count=8 && sync",
            ],
        )
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let b = of(&h, "disk-1").fs.expect("fs");
    let grown = b.usage_bytes - a.usage_bytes;
    assert!(
        (8 << 20..(8 << 20) + (1 << 20)).contains(&grown),
        "grew {grown}: {a:?} {b:?}"
    );
    assert_eq!(b.inodes_used - a.inodes_used, 2, "{a:?} {b:?}");
    // Cached: a sweep within the age gives the last walk's numbers.
    let opts = MetricsOptions {
        fs_max_age: Duration::from_secs(60),
        app: Some("disk".into()),
    };
    let c1 = h.metrics_with(&opts).unwrap()[0].fs.clone().unwrap();
    h.exec(
        "disk-1",
        Some("0"),
        &["dd", "if=/dev/zero", "of=/d/more", "bs=1M", "count=2"],
    )
    .unwrap();
    let c2 = h.metrics_with(&opts).unwrap()[0].fs.clone().unwrap();
    assert_eq!(c1.usage_bytes, c2.usage_bytes);
    assert!(c2.age_seconds > 0.0);
    h.remove("disk").unwrap();
}

/// The Prometheus text, parsed by prometheus_client: (name, type, labels, value).
fn parse_with_python(text: &str) -> Vec<(String, String, serde_json::Value, f64)> {
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, fam.type, s.labels, s.value])
print(json.dumps(out))
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text (scripts/install-deps.sh installs it): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prometheus_exposition_parses_with_cadvisor_names_types_and_labels() {
    let roots = Roots::new();
    let lan = Lan::new(43);
    let h = roots.host(Some(lan.network()));
    let app = spec(serde_json::json!({
        "name": "prom", "image": IMAGE, "instances": 2,
        "resources": {"memory": "64M", "pids": 64, "cpus": 500},
        "stop": {"grace": 0.2}
    }));
    h.deploy(&app).expect("deploy");
    let ms = h.metrics_with(&fresh()).unwrap();
    assert_eq!(ms.len(), 2);
    let json = serde_json::to_value(&ms).unwrap();
    assert_eq!(json[0]["instance"], "prom-1");
    assert!(json[0]["memory"]["workingSet"].as_u64().is_some(), "{json}");
    let text = prometheus::render(&ms);
    let samples = parse_with_python(&text);
    let want = [
        ("container_cpu_usage_seconds_total", "counter"),
        ("container_cpu_user_seconds_total", "counter"),
        ("container_cpu_system_seconds_total", "counter"),
        ("container_cpu_cfs_periods_total", "counter"),
        ("container_cpu_cfs_throttled_periods_total", "counter"),
        ("container_cpu_cfs_throttled_seconds_total", "counter"),
        ("container_memory_usage_bytes", "gauge"),
        ("container_memory_working_set_bytes", "gauge"),
        ("container_memory_rss", "gauge"),
        ("container_memory_cache", "gauge"),
        ("container_memory_failcnt", "counter"),
        ("container_spec_memory_limit_bytes", "gauge"),
        ("container_oom_events_total", "counter"),
        ("container_network_receive_bytes_total", "counter"),
        ("container_network_transmit_bytes_total", "counter"),
        ("container_network_receive_packets_total", "counter"),
        ("container_network_transmit_packets_total", "counter"),
        ("container_network_receive_errors_total", "counter"),
        ("container_network_transmit_errors_total", "counter"),
        ("container_network_receive_packets_dropped_total", "counter"),
        (
            "container_network_transmit_packets_dropped_total",
            "counter",
        ),
        ("container_processes", "gauge"),
        ("container_threads", "gauge"),
        ("container_threads_max", "gauge"),
        ("container_file_descriptors", "gauge"),
        ("container_fs_usage_bytes", "gauge"),
        ("container_fs_inodes_total", "gauge"),
    ];
    for (name, kind) in want {
        // The parser names counter samples with "_total" (cAdvisor's
        // container_memory_failcnt has none).
        let total = format!("{name}_total");
        let s: Vec<_> = samples
            .iter()
            .filter(|s| s.0 == name || s.0 == total)
            .collect();
        assert_eq!(s.len() % 2, 0, "{name}: {s:?}");
        assert!(!s.is_empty(), "{name} missing:\n{text}");
        for (_, t, labels, _) in &s {
            assert_eq!(t, kind, "{name}");
            for l in ["app", "instance", "ip", "numa_node"] {
                assert!(labels.get(l).is_some(), "{name} lacks {l}: {labels}");
            }
            assert_eq!(labels["app"], "prom");
            assert!(labels["ip"].as_str().unwrap().starts_with("10.233.43."));
        }
    }
    let label = |name: &str, l: &str| {
        samples
            .iter()
            .filter(|s| s.0 == name)
            .all(|s| s.2.get(l).is_some())
    };
    assert!(label("container_cpu_usage_seconds_total", "cpu"));
    assert!(label("container_network_receive_bytes_total", "interface"));
    assert!(label("container_fs_usage_bytes", "device"));
    let limit = samples
        .iter()
        .find(|s| s.0 == "container_spec_memory_limit_bytes")
        .unwrap();
    assert_eq!(limit.3, (64u64 << 20) as f64);
    // HELP before TYPE before samples, each family once.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut dedup = types.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(types.len(), dedup.len());
    h.remove("prom").unwrap();
}
