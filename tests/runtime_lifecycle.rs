//! The OCI lifecycle of `rpaas-run` on real containers (busybox rootfs built
//! here), with runc and crun as peers on the same bundles.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn state(root: &Path, id: &str) -> Value {
    serde_json::from_str(&rpaas_ok(root, &["state", id])).expect("state json")
}

/// The container's cgroup directories: /sys/fs/cgroup/<hierarchy>/rpaas-<id> on
/// v1, /sys/fs/cgroup/rpaas-<id> on v2.
fn cgroup_dirs(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let v2 = Path::new("/sys/fs/cgroup").join(format!("rpaas-{id}"));
    if v2.exists() {
        found.push(v2.display().to_string());
    }
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let p = entry.path().join(format!("rpaas-{id}"));
        if p.exists() {
            found.push(p.display().to_string());
        }
    }
    found
}

#[test]
fn create_start_exec_kill_delete() {
    let root = state_root();
    let id = unique_id("life");
    let b = Bundle::new(&default_config(&["sleep", "1000"]));
    rpaas_ok(
        root.path(),
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    let s = state(root.path(), &id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(
        s["ociVersion"], "1.2.0",
        "the runtime's version, not the bundle's"
    );
    assert!(s["pid"].as_i64().unwrap() > 0);
    assert_eq!(
        s["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert!(s["created"].as_str().unwrap().ends_with('Z'));
    assert!(!cgroup_dirs(&id).is_empty(), "cgroup made at create");
    // create left no rpaas process behind: init's parent is not an rpaas-run.
    let pid = s["pid"].as_i64().unwrap();
    let ppid: i64 = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let parent_exe = std::fs::read_link(format!("/proc/{ppid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    assert!(
        !parent_exe.contains("rpaas-run"),
        "init's parent is {parent_exe}"
    );

    rpaas_ok(root.path(), &["start", &id]);
    assert_eq!(state(root.path(), &id)["status"], "running");
    let out = rpaas_ok(
        root.path(),
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "echo inside $(hostname); cat /proc/1/cmdline",
        ],
    );
    assert!(out.contains("inside rpaas-test"), "{out}");
    assert!(
        out.contains("sleep"),
        "pid 1 is the container's init: {out}"
    );
    let code = rpaas(root.path(), &["exec", &id, "sh", "-c", "exit 7"])
        .status
        .code();
    assert_eq!(code, Some(7), "exec returns the process's exit code");

    let ps: Vec<i64> =
        serde_json::from_str(&rpaas_ok(root.path(), &["ps", "--format", "json", &id])).unwrap();
    assert!(ps.contains(&pid), "{ps:?}");

    rpaas_ok(root.path(), &["pause", &id]);
    assert_eq!(state(root.path(), &id)["status"], "paused");
    rpaas_ok(root.path(), &["resume", &id]);
    assert_eq!(state(root.path(), &id)["status"], "running");

    let refused = rpaas(root.path(), &["delete", &id]);
    assert!(
        !refused.status.success(),
        "delete of a running container needs --force"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&id));

    rpaas_ok(root.path(), &["kill", &id, "KILL"]);
    for _ in 0..200 {
        if state(root.path(), &id)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(state(root.path(), &id)["status"], "stopped");
    rpaas_ok(root.path(), &["delete", &id]);
    assert!(
        cgroup_dirs(&id).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs(&id)
    );
    assert!(!root.path().join(&id).exists());
    assert!(!rpaas(root.path(), &["state", &id]).status.success());
    rpaas_ok(root.path(), &["delete", "--force", &id]);
}

#[test]
fn run_returns_exit_codes() {
    let root = state_root();
    for (args, want) in [
        (vec!["true"], 0),
        (vec!["sh", "-c", "exit 42"], 42),
        // pid 1 of a pid namespace ignores its own SIGKILL: kill a child shell.
        (vec!["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], 137),
    ] {
        let id = unique_id("code");
        let b = Bundle::new(&default_config(&args));
        let out = rpaas(
            root.path(),
            &["run", "--bundle", b.path().to_str().unwrap(), &id],
        );
        assert_eq!(
            out.status.code(),
            Some(want),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!root.path().join(&id).exists(), "run deletes the container");
        assert!(cgroup_dirs(&id).is_empty());
    }
}

#[test]
fn bad_config_names_the_field_and_leaves_nothing() {
    let root = state_root();
    let id = unique_id("bad");
    let mut cfg = default_config(&["true"]);
    cfg["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS".into();
    let b = Bundle::new(&cfg);
    let out = rpaas(
        root.path(),
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process.rlimits[0]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!root.path().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty());

    let mut cfg = default_config(&["/no/such/program"]);
    cfg["process"]["cwd"] = "/".into();
    b.write_config(&cfg);
    let log = root.path().join("rpaas.log");
    let out = rpaas(
        root.path(),
        &[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&id) && err.contains("/no/such/program"),
        "{err}"
    );
    let logged: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(logged["level"], "error");
    assert!(logged["msg"].as_str().unwrap().contains("/no/such/program"));
    assert!(!root.path().join(&id).exists(), "failed create undone");
    assert!(cgroup_dirs(&id).is_empty());
}

/// What a process sees, printed in a stable order, to compare runtimes.
/// (/dev/core is left out: crun makes it, runc does not; we follow runc.
/// Mount types are left out: masked files are bound from the host's
/// /dev/null by crun and from the container's by runc and rpaas.)
const PROBE: &str = "hostname; id; pwd; umask; cat /proc/self/status | grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):'; \
    ulimit -n; ls /dev | grep -vx core | sort | tr '\\n' ' '; echo; cat /proc/mounts | awk '{print $2}' | sort | tr '\\n' ';'; echo; \
    ls /proc/self/fd | wc -l; cat /proc/kcore 2>&1 | wc -c; echo $HOME $PATH";

fn run_with(runtime: &str, root: &Path, bundle: &Path, id: &str) -> (i32, String) {
    let out = run_to_files(
        std::process::Command::new(runtime)
            .arg("--root")
            .arg(root)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn same_bundle_same_view_as_runc_and_crun() {
    ensure_crun_can_run();
    let mut cfg = default_config(&["sh", "-c", PROBE]);
    cfg["process"]["cwd"] = "/tmp".into();
    cfg["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [1001]});
    let b = Bundle::new(&cfg);
    let root = state_root();
    let (code, ours) = run_with(
        rpaas_run_bin().to_str().unwrap(),
        root.path(),
        b.path(),
        &unique_id("peer"),
    );
    assert_eq!(code, 0, "rpaas-run: {ours}");
    for peer in ["runc", "crun"] {
        let peer_root = state_root();
        let (pcode, theirs) = run_with(peer, peer_root.path(), b.path(), &unique_id(peer));
        assert_eq!(pcode, code, "{peer} exit code");
        let mine: Vec<&str> = ours.lines().collect();
        let other: Vec<&str> = theirs.lines().collect();
        assert_eq!(mine.len(), other.len(), "{peer}:\n{theirs}\nrpaas:\n{ours}");
        for (i, (a, b)) in mine.iter().zip(other.iter()).enumerate() {
            assert_eq!(a, b, "line {i} differs from {peer}");
        }
    }
}

/// crun 1.8 refuses this host's hybrid layout until hugetlb is a v1 hierarchy.
pub fn ensure_crun_can_run() {
    // Only on a hybrid host: on pure v2 a mkdir here would make a cgroup.
    let p = Path::new("/sys/fs/cgroup/hugetlb");
    if Path::new("/sys/fs/cgroup/unified").exists() && !p.exists() {
        let _ = std::fs::create_dir(p);
        let _ = std::process::Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "hugetlb"])
            .arg(p)
            .status();
    }
}
