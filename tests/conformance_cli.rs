//! Issue 12, the conformance items of rpaas-run's command line: hooks as
//! runtime-spec 1.2 says (a failing poststart/poststop hook warns and the
//! rest go on; create-time hooks read "created"), runc's wording for a kill of
//! a stopped container, real-time signals, no (uid_t)-1, no process left by a
//! failed `exec -d`, invalid resources and configs refused with their field,
//! and every error on one bounded line. Run: `cargo test --test conformance_cli`.

mod common;
mod runtime_support;

use common::*;
use runtime_support::*;
use serde_json::{json, Value};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command that must fail: its stderr, which must be one line naming `field`.
fn refused(out: &std::process::Output, field: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "accepted; stderr: {err}");
    assert!(err.contains(field), "does not name {field}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

/// create a container with `cfg` under a fresh root: must fail naming
/// `field`, leaving nothing under the root.
fn create_refused(prefix: &str, cfg: &Value, field: &str) -> String {
    let c = Ctr::new(prefix, cfg);
    let b = c.bundle_arg();
    let err = refused(&c.cmd(&["create", "--bundle", &b, &c.id]), field);
    let left: Vec<_> = std::fs::read_dir(c.root()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left under the root: {left:?}");
    err
}

// ---------------------------------------------------------------- hooks

/// A host hook: `sh -c SCRIPT` with the state on stdin.
fn sh_hook(script: String) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/bin:/bin"]})
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_rest_run() {
    let h = host_dir("hooks-warn");
    let d = h.path().display().to_string();
    let log = h.path().join("runtime.log");
    let mut cfg = default_config(&["sleep", "1000"]);
    cfg["hooks"] = json!({
        "poststart": [sh_hook("exit 3".into()), sh_hook(format!("cat > {d}/poststart.json"))],
        "poststop": [sh_hook("exit 4".into()), sh_hook(format!("cat > {d}/poststop.json"))]
    });
    let c = Ctr::new("hooks-warn", &cfg);
    let b = c.bundle_arg();
    let logged = |args: &[&str]| {
        let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        all.extend_from_slice(args);
        c.cmd(&all)
    };
    let out = logged(&["create", "--bundle", &b, &c.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = logged(&["start", &c.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    // Without any debug setting, the warning is on stderr and in --log.
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("poststart[0]") && err.contains(&c.id),
        "start's stderr: {err:?}"
    );
    assert!(
        h.path().join("poststart.json").exists(),
        "the hook after the failing one did not run"
    );
    assert_eq!(c.state()["status"], "running", "the lifecycle must go on");
    let out = logged(&["delete", "--force", &c.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(
        stderr(&out).contains("poststop[0]"),
        "delete's stderr: {}",
        stderr(&out)
    );
    assert!(
        h.path().join("poststop.json").exists(),
        "second poststop hook skipped"
    );
    let text = std::fs::read_to_string(&log).expect("--log file");
    let warnings: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "warning")
        .collect();
    for kind in ["poststart[0]", "poststop[0]"] {
        assert!(
            warnings
                .iter()
                .any(|w| w["msg"].as_str().is_some_and(|m| m.contains(kind))),
            "no {kind} warning in --log: {text}"
        );
    }
}

#[test]
fn create_time_hooks_read_status_created() {
    let h = host_dir("hooks-status");
    let d = h.path().display().to_string();
    let mut cfg = default_config(&["true"]);
    cfg["hooks"] = json!({
        "prestart": [sh_hook(format!("cat > {d}/prestart.json"))],
        "createRuntime": [sh_hook(format!("cat > {d}/createRuntime.json"))],
        "createContainer": [sh_hook(format!("cat > {d}/createContainer.json"))]
    });
    let c = Ctr::new("hooks-status", &cfg);
    let b = c.bundle_arg();
    rpaas_ok(c.root(), &["create", "--bundle", &b, &c.id]);
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let p = h.path().join(format!("{kind}.json"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let state: Value = serde_json::from_str(&text).expect("state json");
        assert_eq!(state["status"], "created", "{kind}: {state}");
    }
}

// ---------------------------------------------------------------- kill

#[test]
fn kill_of_a_stopped_container_says_container_not_running() {
    let c = Ctr::new("kill-stopped", &default_config(&["true"]));
    c.start(&[]);
    c.wait_until("stopped", || c.state()["status"] == "stopped");
    for sig in [None, Some("KILL"), Some("15")] {
        let mut args = vec!["kill", c.id.as_str()];
        args.extend(sig);
        let err = refused(&c.cmd(&args), "container not running");
        assert!(!err.contains("is stopped"), "{err}");
    }
}

#[test]
fn real_time_signals_are_accepted_by_name_and_number() {
    // SIGRTMIN is 34 with glibc; each accepted spelling below is 37.
    let script = "n=0; trap 'n=$((n+1)); echo $n > /tmp/rt' 37; echo 0 > /tmp/rt; \
                  while :; do sleep 0.05; done";
    let c = Ctr::new("rtsig", &default_config(&["sh", "-c", script]));
    c.start(&[]);
    c.wait_until("the trap set", || {
        c.cmd(&["exec", &c.id, "cat", "/tmp/rt"]).status.success()
    });
    let count = || {
        String::from_utf8_lossy(&c.cmd(&["exec", &c.id, "cat", "/tmp/rt"]).stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    for (i, sig) in ["SIGRTMIN+3", "RTMIN+3", "37", "sigrtmax-27", "rtmax-27"]
        .iter()
        .enumerate()
    {
        let out = c.cmd(&["kill", &c.id, sig]);
        assert!(out.status.success(), "kill {sig}: {}", stderr(&out));
        c.wait_until(&format!("signal {sig} delivered"), || {
            count() == i as u32 + 1
        });
    }
    for bad in ["SIGRTMAX+1", "RTMIN-1", "65", "RTMIN+x", "0x22"] {
        refused(&c.cmd(&["kill", &c.id, bad]), "signal");
    }
    assert_eq!(c.state()["status"], "running");
}

// ---------------------------------------------------------------- users

#[test]
fn uid_and_gid_minus_one_are_refused() {
    for (field, set) in [
        ("process.user.uid", json!({"uid": 4294967295u32, "gid": 0})),
        ("process.user.gid", json!({"uid": 0, "gid": 4294967295u32})),
        (
            "process.user.additionalGids[1]",
            json!({"uid": 0, "gid": 0, "additionalGids": [5, 4294967295u32]}),
        ),
    ] {
        let mut cfg = default_config(&["id"]);
        cfg["process"]["user"] = set;
        create_refused("uid-1", &cfg, field);
    }
    let c = Ctr::new("exec-uid-1", &default_config(&["sleep", "1000"]));
    c.start(&[]);
    for user in ["4294967295", "0:4294967295", "4294967295:0"] {
        refused(&c.cmd(&["exec", "--user", user, &c.id, "id"]), "--user");
    }
}

// ---------------------------------------------------------------- exec

#[test]
fn failed_exec_detach_leaves_no_process() {
    let c = Ctr::new("exec-pidfile", &default_config(&["sleep", "1000"]));
    c.start(&[]);
    let before = rpaas_ok(c.root(), &["ps", "--format", "json", &c.id]);
    let out = c.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        "/nonexistent-rpaas-dir/p",
        &c.id,
        "sleep",
        "777",
    ]);
    refused(&out, "pid file");
    // The exec'd process is killed and reaped before exec returns.
    let after = rpaas_ok(c.root(), &["ps", "--format", "json", &c.id]);
    assert_eq!(before, after, "a process was left running");
    let cmdlines: Vec<String> = serde_json::from_str::<Vec<i32>>(&after)
        .unwrap()
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .collect();
    assert!(!cmdlines.iter().any(|c| c.contains("777")), "{cmdlines:?}");
}

// ---------------------------------------------------------------- resources

#[test]
fn invalid_update_resources_are_refused_with_the_field() {
    let c = Ctr::new("update-bad", &default_config(&["sleep", "1000"]));
    c.start(&[]);
    let h = host_dir("update-bad");
    for (text, field) in [
        ("[]", "resources"),
        (r#"{"cpu":{"quota":-5,"period":0}}"#, "resources.cpu.quota"),
        (r#"{"memroy":{"limit":1048576}}"#, "resources.memroy"),
        (
            r#"{"cpu":{"shares":512,"quotaa":1}}"#,
            "resources.cpu.quotaa",
        ),
        (
            r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"wieght":10}]}}"#,
            "resources.blockIO.weightDevice[0].wieght",
        ),
        (r#"{"pids":{"limit":10}} trailing"#, "resources"),
        (r#"{"memory":{"limit":-2}}"#, "resources.memory.limit"),
    ] {
        let f = h.path().join("r.json");
        std::fs::write(&f, text).unwrap();
        let err = refused(
            &c.cmd(&["update", "--resources", f.to_str().unwrap(), &c.id]),
            field,
        );
        assert!(err.contains(field), "{text}: {err}");
    }
    // A valid update still works.
    let f = h.path().join("ok.json");
    std::fs::write(&f, r#"{"pids":{"limit":100}}"#).unwrap();
    rpaas_ok(
        c.root(),
        &["update", "--resources", f.to_str().unwrap(), &c.id],
    );
}

#[test]
fn invalid_configs_are_refused_with_the_field() {
    // A config that is not an object: named as such, not "process: missing".
    let c = Ctr::new("cfg-array", &default_config(&["true"]));
    std::fs::write(c.bundle.path().join("config.json"), "[]").unwrap();
    let b = c.bundle_arg();
    let err = refused(&c.cmd(&["create", "--bundle", &b, &c.id]), "config.json");
    assert!(
        err.contains("JSON object") && !err.contains("process"),
        "{err}"
    );
    // Text after the object.
    let good = serde_json::to_string(&default_config(&["true"])).unwrap();
    std::fs::write(c.bundle.path().join("config.json"), format!("{good}\n}}x")).unwrap();
    let err = refused(&c.cmd(&["create", "--bundle", &b, &c.id]), "config.json");
    assert!(err.contains("after"), "{err}");

    let mut cfg = default_config(&["true"]);
    cfg["linux"]["resources"]["cpu"] = json!({"quota": -7, "period": 0});
    create_refused("cfg-quota", &cfg, "linux.resources.cpu.quota");

    let mut cfg = default_config(&["true"]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    create_refused("cfg-hostname", &cfg, "hostname");
}

// ---------------------------------------------------------------- errors

#[test]
fn seventy_thousand_gids_give_one_short_line() {
    let mut cfg = default_config(&["id"]);
    let gids: Vec<u32> = (1..=70_000).collect();
    cfg["process"]["user"]["additionalGids"] = json!(gids);
    let err = create_refused("gids", &cfg, "process.user.additionalGids");
    assert!(err.len() < 4200, "{} bytes", err.len());
}

#[test]
fn bad_ids_give_one_line() {
    let root = state_root();
    for args in [
        vec!["state", "a\nb"],
        vec!["kill", "-abc"],
        vec!["delete", "-x"],
        vec!["start", "--bogus", "id"],
    ] {
        let out = rpaas(root.path(), &args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = stderr(&out);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
    }
    // A long id is shown bounded.
    let long = "x".repeat(100_000);
    let err = stderr(&rpaas(root.path(), &["state", &long]));
    assert!(err.len() < 4200, "{} bytes", err.len());
}

#[test]
fn keeper_setup_errors_name_the_container_once() {
    let c = Ctr::new("keeper-err", &default_config(&["/no/such/program"]));
    let b = c.bundle_arg();
    let out = c.cmd(&["create", "--keeper", "--bundle", &b, &c.id]);
    let err = refused(&out, "process.args[0]");
    let prefix = format!("container {}:", c.id);
    assert_eq!(err.matches(&prefix).count(), 1, "{err}");
}

#[test]
fn a_memory_limit_init_cannot_live_with_says_what_the_kernel_did() {
    let mut cfg = default_config(&["true"]);
    cfg["linux"]["resources"]["memory"] = json!({"limit": 1});
    // Init's death shows up as EOF or as a reset connection: try a few times.
    for keeper in [false, false, false, true] {
        let c = Ctr::new("mem1", &cfg);
        let b = c.bundle_arg();
        let mut args = vec!["create", "--bundle", b.as_str()];
        if keeper {
            args.push("--keeper");
        }
        args.push(&c.id);
        let err = refused(&c.cmd(&args), "linux.resources.memory.limit");
        assert!(err.contains("OOM killer"), "{err}");
    }
}
