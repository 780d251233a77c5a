//! Issue 3: containers in keeper mode outlive the process that made them
//! ("the agent", killed with SIGKILL here); a fresh process lists them, execs
//! into them and stops them; the exit status is recorded by the keeper for
//! `exit 0`, `exit 42`, SIGKILL, SIGTERM and an OOM kill.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn state(root: &Path, id: &str) -> Value {
    serde_json::from_str(&rpaas_ok(root, &["state", id])).expect("state json")
}

fn wait_stopped(root: &Path, id: &str) -> Value {
    for _ in 0..1000 {
        let s = state(root, id);
        if s["status"] == "stopped" && s.get("exitCode").is_some() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{id} did not stop: {}", state(root, id));
}

/// `run --detach --keeper` of `bundle` as `id` (the mode the agent uses).
fn run_detached_with_keeper(root: &Path, bundle: &Bundle, id: &str) {
    let b = bundle.path().to_str().expect("bundle path");
    rpaas_ok(root, &["run", "--detach", "--keeper", "--bundle", b, id]);
}

/// A stand-in for the host agent: a shell that runs `rpaas-run run -d --keeper`
/// for each bundle and then waits forever, so the test can SIGKILL it.
fn spawn_agent(root: &Path, jobs: &[(&str, &Path)]) -> std::process::Child {
    let mut script = String::new();
    for (id, bundle) in jobs {
        script.push_str(&format!(
            "{} --root {} run --detach --keeper --bundle {} {} || exit 1\n",
            rpaas_run_bin().display(),
            root.display(),
            bundle.display(),
            id
        ));
    }
    script.push_str("echo ready; exec sleep 1000\n");
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent")
}

#[test]
fn containers_outlive_a_killed_agent_and_exit_codes_survive() {
    let root = state_root();
    let cases: Vec<(String, Bundle, Option<i64>, Option<i64>)> = vec![
        (
            unique_id("k-exit0"),
            Bundle::new(&default_config(&["sh", "-c", "read x < /tmp/go; exit 0"])),
            Some(0),
            None,
        ),
        (
            unique_id("k-exit42"),
            Bundle::new(&default_config(&["sh", "-c", "read x < /tmp/go; exit 42"])),
            Some(42),
            None,
        ),
        (
            unique_id("k-sigkill"),
            Bundle::new(&default_config(&["sleep", "1000"])),
            Some(137),
            Some(9),
        ),
        // As pid 1 of its own pid namespace a process ignores SIGTERM it has no
        // handler for, so this one shares the host's pid namespace.
        (
            unique_id("k-sigterm"),
            Bundle::new(&without_pid_ns(default_config(&["sleep", "1000"]))),
            Some(143),
            Some(15),
        ),
    ];
    for (_, b, _, _) in &cases {
        // A fifo the container blocks on until the test says go.
        nix::unistd::mkfifo(
            &b.rootfs().join("tmp/go"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
    }
    let jobs: Vec<(&str, &Path)> = cases
        .iter()
        .map(|(id, b, _, _)| (id.as_str(), b.path()))
        .collect();
    let mut agent = spawn_agent(root.path(), &jobs);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(agent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    agent.kill().expect("SIGKILL the agent");
    agent.wait().unwrap();

    // A fresh process sees every container running, with its keeper.
    let listed = rpaas_ok(root.path(), &["list", "--quiet"]);
    for (id, _, _, _) in &cases {
        assert!(listed.contains(id.as_str()), "{listed}");
        let s = state(root.path(), id);
        assert_eq!(s["status"], "running", "{s}");
        assert!(s["keeperPid"].as_i64().unwrap() > 0);
        let out = rpaas_ok(root.path(), &["exec", id, "echo", "still-here"]);
        assert_eq!(out.trim(), "still-here");
    }

    // Now end them four ways.
    for (id, _, _, _) in &cases[..2] {
        rpaas_ok(root.path(), &["exec", id, "sh", "-c", "echo > /tmp/go"]);
    }
    rpaas_ok(root.path(), &["kill", &cases[2].0, "KILL"]);
    rpaas_ok(root.path(), &["kill", &cases[3].0, "TERM"]);
    for (id, _, code, signal) in &cases {
        let s = wait_stopped(root.path(), id);
        assert_eq!(s["exitCode"].as_i64(), *code, "{id}: {s}");
        assert_eq!(s["exitSignal"].as_i64(), *signal, "{id}: {s}");
        assert_eq!(s["oomKilled"], false);
        assert!(s["finishedAt"].as_str().unwrap().ends_with('Z'));
        // The keeper is gone once it has written the record.
        rpaas_ok(root.path(), &["delete", id]);
    }
}

fn without_pid_ns(mut cfg: Value) -> Value {
    let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "pid");
    cfg
}

#[test]
fn oom_kill_is_recorded() {
    let root = state_root();
    let id = unique_id("k-oom");
    let mut cfg = default_config(&[
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    cfg["linux"]["resources"]["memory"] =
        serde_json::json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
    let b = Bundle::new(&cfg);
    run_detached_with_keeper(root.path(), &b, &id);
    let s = wait_stopped(root.path(), &id);
    assert_eq!(s["oomKilled"], true, "{s}");
    assert_eq!(s["exitCode"].as_i64(), Some(137), "{s}");
    rpaas_ok(root.path(), &["delete", &id]);
}

#[test]
fn detached_keeper_logs_output_as_json_lines() {
    let root = state_root();
    let id = unique_id("k-log");
    let b = Bundle::new(&default_config(&[
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2",
    ]));
    run_detached_with_keeper(root.path(), &b, &id);
    let s = wait_stopped(root.path(), &id);
    assert_eq!(s["exitCode"], 0);
    let log = std::fs::read_to_string(root.path().join(&id).join("log")).expect("log file");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stdout" && l["log"].as_str().unwrap().contains("to-stdout")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["log"].as_str().unwrap().contains("to-stderr")),
        "{log}"
    );
    assert!(lines.iter().all(|l| l["time"].as_str().is_some()));
    rpaas_ok(root.path(), &["delete", &id]);
}

/// Field 41 of /proc/<pid>/stat: the scheduling policy (0 = SCHED_OTHER,
/// 5 = SCHED_IDLE).
fn sched_policy(pid: i64) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(38)?.parse().ok()
}

/// The keeper idles (SCHED_IDLE) only through its own start-up: once it
/// waits for init it is back to the normal policy, so an exit record never
/// waits for spare CPU; init never idles.
#[test]
fn keeper_and_init_run_with_the_normal_policy() {
    let root = state_root();
    let id = unique_id("k-sched");
    let b = Bundle::new(&default_config(&["sleep", "1000"]));
    run_detached_with_keeper(root.path(), &b, &id);
    let s = state(root.path(), &id);
    let (keeper, init) = (s["keeperPid"].as_i64().unwrap(), s["pid"].as_i64().unwrap());
    assert_eq!(sched_policy(init), Some(0), "init's policy");
    let mut policy = sched_policy(keeper);
    for _ in 0..500 {
        let exe = std::fs::read_link(format!("/proc/{keeper}/exe")).unwrap_or_default();
        if exe.ends_with("rpaas-keeper") && policy == Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        policy = sched_policy(keeper);
    }
    assert_eq!(
        policy,
        Some(0),
        "the keeper's policy once it waits for init"
    );
    rpaas_ok(root.path(), &["delete", "--force", &id]);
}
