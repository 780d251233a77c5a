//! Issue 3, crash safety: `rpaas-run` is SIGKILLed at every crash point of
//! create / start / exec / delete (direct and keeper mode), then `gc` (or
//! `delete --force`) must leave nothing on the host: no cgroup dir in any
//! hierarchy, mount, link, netns file, state entry or process of the test.
//! Also: `delete` is idempotent, and states from another boot are stale.
//!
//! The crash points only exist in a build with the cargo feature `failpoints`.
//! This test builds that binary itself (`cargo build --bin rpaas-run --features
//! failpoints` into `<target>/failpoints`, incremental after the first time)
//! unless `RPAAS_FAILPOINTS_BIN` names one already built.

mod common;
#[path = "fixtures/host_snapshot.rs"]
mod host_snapshot;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use host_snapshot::{assert_nothing_left, HostSnapshot, Scope};
use serde_json::Value;

/// The rpaas-run built with `--features failpoints`.
fn failpoints_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RPAAS_FAILPOINTS_BIN") {
            return PathBuf::from(p);
        }
        // <target>/debug/rpaas-run → <target>/failpoints: beside the normal
        // build, never replacing it, wherever CARGO_TARGET_DIR points.
        let target = rpaas_run_bin()
            .parent()
            .and_then(Path::parent)
            .expect("target dir of rpaas-run")
            .join("failpoints");
        let out = run_to_files(
            Command::new(env!("CARGO"))
                .args(["build", "--bin", "rpaas-run", "--features", "failpoints"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("CARGO_TARGET_DIR", &target),
        );
        assert!(
            out.status.success(),
            "building rpaas-run --features failpoints failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug/rpaas-run")
    })
}

/// Run a build of rpaas-run with FAILPOINTS set to `point=return` (or unset).
fn run_with(bin: &Path, root: &Path, point: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("FAILPOINTS");
    if let Some(p) = point {
        cmd.env("FAILPOINTS", format!("{p}=return"));
    }
    run_to_files(&mut cmd)
}

fn gc_ok(root: &Path) {
    let out = rpaas(root, &["gc"]);
    assert!(
        out.status.success(),
        "gc failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every crash point in the runtime's sources, so that a point added later
/// without a case here fails this test.
fn crash_points_in_source() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src");
    let mut points = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read runtime/src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                for part in text.split("failpoint::crash(\"").skip(1) {
                    if let Some(name) = part.split('"').next() {
                        points.push(name.to_string());
                    }
                }
            }
        }
    }
    points.sort();
    points.dedup();
    points
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verb {
    Create,
    Start,
    Exec,
    Delete,
}

/// What the crashing command looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// The command itself died of SIGKILL.
    Killed,
    /// The keeper died during setup; create reports it and undoes itself.
    KeeperDiedInSetup,
    /// The keeper died after reporting success; create exits 0.
    KeeperDiedAfterReport,
}

/// How the host is cleaned afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recovery {
    /// `gc` alone: the container is half-made and dead.
    Gc,
    /// `delete --force ID` then `gc`: a live container (or one whose
    /// delete was interrupted) is the agent's to remove.
    DeleteForce,
}

struct Case {
    point: &'static str,
    verb: Verb,
    keeper: bool,
    outcome: Outcome,
    recovery: Recovery,
}

fn cases() -> Vec<Case> {
    use Outcome::*;
    use Recovery::*;
    use Verb::*;
    let mut v = Vec::new();
    let mut add = |point, verb, keeper, outcome, recovery| {
        v.push(Case {
            point,
            verb,
            keeper,
            outcome,
            recovery,
        })
    };
    // Steps done by the create command itself, before any keeper exists.
    for p in [
        "create::state-written",
        "create::cgroup-recorded",
        "create::cgroup-created",
        "create::resources-applied",
        "create::fifo-made",
    ] {
        add(p, Create, false, Killed, Gc);
        add(p, Create, true, Killed, Gc);
    }
    // Cloning and committing init: the create command in direct mode, the keeper in keeper mode.
    for p in [
        "create::before-clone",
        "create::init-cloned",
        "create::init-ready",
        "create::committed",
    ] {
        add(p, Create, false, Killed, Gc);
        add(p, Create, true, KeeperDiedInSetup, Gc);
    }
    add("keeper::started", Create, true, KeeperDiedInSetup, Gc);
    // The create command dies after forking the keeper: the keeper finishes alone.
    add("create::keeper-forked", Create, true, Killed, DeleteForce);
    add(
        "keeper::reported",
        Create,
        true,
        KeeperDiedAfterReport,
        DeleteForce,
    );
    for keeper in [false, true] {
        for p in ["start::begin", "start::released"] {
            add(p, Start, keeper, Killed, DeleteForce);
        }
        for p in ["exec::forked", "exec::in-cgroup", "exec::started"] {
            add(p, Exec, keeper, Killed, DeleteForce);
        }
        for p in ["delete::begin", "delete::killed", "delete::cgroup-removed"] {
            add(p, Delete, keeper, Killed, DeleteForce);
        }
    }
    v
}

fn keeper_flag(keeper: bool) -> Vec<&'static str> {
    if keeper {
        vec!["--keeper"]
    } else {
        vec![]
    }
}

fn state_json(root: &Path, id: &str) -> Value {
    serde_json::from_str(&rpaas_ok(root, &["state", id])).expect("state json")
}

/// Alive and not a zombie.
fn process_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .is_some_and(|c| c != 'Z' && c != 'X')
}

fn run_case(case: &Case, root: &Path, bundle: &Bundle, scope: &Scope) {
    let id = unique_id("rpaas-crash");
    let what = format!(
        "{} ({}, {})",
        case.point,
        if case.keeper { "keeper" } else { "direct" },
        id
    );
    let before = HostSnapshot::take(scope);
    let b = bundle.path().to_str().expect("utf8 bundle path");
    let kf = keeper_flag(case.keeper);
    let fp = failpoints_bin();

    // Set up the container the verb works on, with the ordinary build.
    match case.verb {
        Verb::Create => {}
        Verb::Start => {
            let args: Vec<&str> = ["create"]
                .into_iter()
                .chain(kf.clone())
                .chain(["--bundle", b, &id])
                .collect();
            rpaas_ok(root, &args);
        }
        Verb::Exec | Verb::Delete => {
            let args: Vec<&str> = ["run", "-d"]
                .into_iter()
                .chain(kf.clone())
                .chain(["--bundle", b, &id])
                .collect();
            rpaas_ok(root, &args);
        }
    }
    let args: Vec<&str> = match case.verb {
        Verb::Create => ["create"]
            .into_iter()
            .chain(kf.clone())
            .chain(["--bundle", b, &id])
            .collect(),
        Verb::Start => vec!["start", &id],
        // Detached: if the point were never reached, exec returns at once
        // (and the outcome check fails) instead of waiting for the sleep.
        Verb::Exec => vec!["exec", "--detach", &id, "sleep", "1000"],
        Verb::Delete => vec!["delete", "--force", &id],
    };
    let out = run_with(fp, root, Some(case.point), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match case.outcome {
        Outcome::Killed => assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{what}: expected the command to die at the crash point, got {} ({stderr})",
            out.status
        ),
        Outcome::KeeperDiedInSetup => {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what}: {} ({stderr})",
                out.status
            );
            assert!(
                stderr.contains("keeper exited during setup") && stderr.contains(&id),
                "{what}: {stderr}"
            );
        }
        Outcome::KeeperDiedAfterReport => {
            assert!(out.status.success(), "{what}: {} ({stderr})", out.status);
            let keeper = state_json(root, &id)["keeperPid"]
                .as_i64()
                .expect("keeperPid");
            for _ in 0..100 {
                if !process_alive(keeper) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(
                !process_alive(keeper),
                "{what}: keeper {keeper} still alive"
            );
        }
    }
    if case.recovery == Recovery::DeleteForce {
        let out = rpaas(root, &["delete", "--force", &id]);
        assert!(
            out.status.success(),
            "{what}: delete --force after the crash: {}; processes left in its cgroups: {:?}",
            String::from_utf8_lossy(&out.stderr).trim(),
            cgroup_procs(&id)
        );
    }
    assert_nothing_left(&what, scope, &before, 50, || gc_ok(root));
    // And the id is free again: a new create under it works.
    if case.verb == Verb::Create {
        rpaas_ok(root, &["run", "-d", "--bundle", b, &id]);
        rpaas_ok(root, &["delete", "--force", &id]);
        assert_nothing_left(&what, scope, &before, 50, || gc_ok(root));
    }
}

fn scope(root: &Path, bundles: &[&Bundle]) -> Scope {
    Scope {
        tags: vec![
            format!("rpaas-crash-{}-", std::process::id()),
            format!("rpaas-stale-{}-", std::process::id()),
            format!("rpaas-idem-{}-", std::process::id()),
            format!("rpaas-orphan-{}-", std::process::id()),
            root.display().to_string(),
        ],
        bundles: bundles.iter().map(|b| b.path().to_path_buf()).collect(),
        root: root.to_path_buf(),
    }
}

#[test]
fn every_crash_point_is_undone_by_gc_or_delete_force() {
    let cases = cases();
    let covered: Vec<String> = cases.iter().map(|c| c.point.to_string()).collect();
    let missing: Vec<String> = crash_points_in_source()
        .into_iter()
        .filter(|p| !covered.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "crash points without a test case: {missing:?}"
    );

    let root = state_root();
    let bundle = Bundle::new(&default_config(&["sleep", "1000"]));
    let scope = scope(root.path(), &[&bundle]);
    let _cleanup = CleanupRoot(root.path().to_path_buf());
    for case in &cases {
        run_case(case, root.path(), &bundle, &scope);
    }
}

/// On the way out (also after a failed assertion), force-delete whatever is
/// left under the test's root, so one failure does not leak into the host.
struct CleanupRoot(PathBuf);

impl Drop for CleanupRoot {
    fn drop(&mut self) {
        let ids = rpaas(&self.0, &["list", "--quiet"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = rpaas(&self.0, &["delete", "--force", id.trim()]);
        }
        let _ = rpaas(&self.0, &["gc", "--all"]);
    }
}

#[test]
fn delete_is_idempotent_and_names_a_missing_id() {
    let root = state_root();
    let _cleanup = CleanupRoot(root.path().to_path_buf());
    let bundle = Bundle::new(&default_config(&["sleep", "1000"]));
    let scope = scope(root.path(), &[&bundle]);
    let before = HostSnapshot::take(&scope);
    let id = unique_id("rpaas-idem");
    rpaas_ok(
        root.path(),
        &[
            "run",
            "-d",
            "--keeper",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(state_json(root.path(), &id)["status"], "running");
    rpaas_ok(root.path(), &["delete", "--force", &id]);
    rpaas_ok(root.path(), &["delete", "--force", &id]);

    let out = rpaas(root.path(), &["delete", &id]);
    assert!(
        !out.status.success(),
        "delete of a missing container succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&id), "error does not name the id: {err}");
    let out = rpaas(root.path(), &["state", &id]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(&id));

    assert_nothing_left("delete twice", &scope, &before, 50, || gc_ok(root.path()));
}

/// Rewrite `bootId` in a container's state.json, as if it had been written
/// before a reboot (the state root on a persistent disk).
fn set_boot_id(root: &Path, id: &str, boot_id: &str) {
    let path = root.join(id).join("state.json");
    let mut st: Value = serde_json::from_slice(&std::fs::read(&path).expect("read state.json"))
        .expect("state json");
    assert!(st.get("bootId").is_some(), "state.json has no bootId: {st}");
    st["bootId"] = boot_id.into();
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).expect("write state.json");
}

#[test]
fn states_from_another_boot_are_stopped_and_collected() {
    let root = state_root();
    let _cleanup = CleanupRoot(root.path().to_path_buf());
    let exits = Bundle::new(&default_config(&["true"]));
    let sleeps = Bundle::new(&default_config(&["sleep", "1000"]));
    let scope = scope(root.path(), &[&exits, &sleeps]);
    let before = HostSnapshot::take(&scope);
    let other_boot = "00000000-0000-4000-8000-rpaas0000000";

    // A stopped container with an exit record is kept by gc (the agent wants
    // its exit code) ... until its state turns out to be from another boot.
    let done = unique_id("rpaas-stale");
    rpaas_ok(
        root.path(),
        &[
            "run",
            "-d",
            "--keeper",
            "--bundle",
            exits.path().to_str().unwrap(),
            &done,
        ],
    );
    let out = rpaas_ok(root.path(), &["wait", &done]);
    assert!(out.contains("\"exitCode\":0"), "{out}");
    gc_ok(root.path());
    assert!(
        root.path().join(&done).join("state.json").exists(),
        "gc removed a stopped container with an exit record"
    );
    set_boot_id(root.path(), &done, other_boot);
    assert_eq!(state_json(root.path(), &done)["status"], "stopped");

    // A created container whose state says another boot: its pid means nothing now.
    let stale = unique_id("rpaas-stale");
    rpaas_ok(
        root.path(),
        &[
            "create",
            "--bundle",
            sleeps.path().to_str().unwrap(),
            &stale,
        ],
    );
    assert_eq!(state_json(root.path(), &stale)["status"], "created");
    set_boot_id(root.path(), &stale, other_boot);
    let s = state_json(root.path(), &stale);
    assert_eq!(s["status"], "stopped", "{s}");
    assert_eq!(s["pid"], 0, "{s}");

    let report: Value = serde_json::from_str(&rpaas_ok(root.path(), &["gc"])).expect("gc report");
    let removed = report["removedContainers"].to_string();
    assert!(
        removed.contains(&done) && removed.contains(&stale),
        "{report}"
    );
    assert_nothing_left("stale states", &scope, &before, 50, || gc_ok(root.path()));
}

/// The cgroup dirs of container `id` in every hierarchy (default `/rpaas-<id>` path).
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .expect("read /sys/fs/cgroup")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .map(|h| h.join(format!("rpaas-{id}")))
        .filter(|d| d.is_dir())
        .collect()
}

/// "hierarchy: pid comm state" for every process left in the cgroups of `id`.
fn cgroup_procs(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in cgroup_dirs(id) {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            out.push(format!(
                "{}: {}",
                d.display(),
                stat.split(' ').take(3).collect::<Vec<_>>().join(" ")
            ));
        }
    }
    out
}

/// Make a cgroup look as if it was made an hour ago (cgroupfs keeps the
/// mkdir time as mtime, and accepts utimes).
fn age_an_hour(dirs: &[PathBuf]) {
    for d in dirs {
        let out = run_to_files(Command::new("touch").args(["-d", "-1 hour"]).arg(d));
        assert!(
            out.status.success(),
            "touch {}: {}",
            d.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Kills a process and removes cgroup dirs on the way out (test cleanup).
struct CgroupGuard(Vec<PathBuf>, Option<i32>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for d in &self.0 {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// A cgroup no state names (its state root was wiped): gc removes it once it
/// is no longer young and has no process, and never kills a live one (it may
/// be another root's container).
#[test]
fn gc_collects_dead_orphan_cgroups_and_spares_live_ones() {
    let root = state_root();
    let _cleanup = CleanupRoot(root.path().to_path_buf());
    let bundle = Bundle::new(&default_config(&["sleep", "1000"]));
    let b = bundle.path().to_str().unwrap();
    let dead = unique_id("rpaas-orphan");
    let live = unique_id("rpaas-orphan");
    for id in [&dead, &live] {
        rpaas_ok(root.path(), &["run", "-d", "--bundle", b, id]);
    }
    let dead_dirs = cgroup_dirs(&dead);
    let live_dirs = cgroup_dirs(&live);
    assert!(
        !dead_dirs.is_empty() && !live_dirs.is_empty(),
        "no cgroup dirs /sys/fs/cgroup/*/rpaas-<id>"
    );
    let live_pid = state_json(root.path(), &live)["pid"].as_i64().expect("pid") as i32;
    let _guard_live = CgroupGuard(live_dirs.clone(), Some(live_pid));
    let _guard_dead = CgroupGuard(dead_dirs.clone(), None);
    // The dead one: its processes end; then both states vanish.
    rpaas_ok(root.path(), &["kill", &dead, "KILL"]);
    for _ in 0..200 {
        if state_json(root.path(), &dead)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for id in [&dead, &live] {
        std::fs::remove_dir_all(root.path().join(id)).expect("wipe state dir");
    }

    // Young: could be another root's create in progress.
    gc_ok(root.path());
    assert!(
        dead_dirs.iter().all(|d| d.is_dir()),
        "gc removed a cgroup made a moment ago"
    );

    age_an_hour(&dead_dirs);
    age_an_hour(&live_dirs);
    let report: Value = serde_json::from_str(&rpaas_ok(root.path(), &["gc"])).expect("gc report");
    assert!(
        report["removedCgroups"].to_string().contains(&dead),
        "{report}"
    );
    assert!(
        dead_dirs.iter().all(|d| !d.exists()),
        "dead orphan cgroup left: {dead_dirs:?}"
    );
    assert!(
        live_dirs.iter().all(|d| d.is_dir()),
        "gc removed a cgroup with a live process"
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{live_pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z ")),
        "gc killed the live orphan's process"
    );
}
