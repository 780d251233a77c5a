//! Issue 17: `rpaas-run checkpoint` / `restore` through CRIU. CRIU fails
//! `criu check` on the CI host's kernel (6.18), so these run in the qemu
//! guest of tests/vm (Debian's 6.1 kernel, cgroup v2): tests/vm/run-tests.sh.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A shell loop that counts in memory and writes the count to /tmp/n (in the rootfs).
/// Every 10th count is also printed (to the keeper's log).
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; [ $((i % 10)) = 0 ] && echo tick $i; sleep 0.1; done";

fn state(root: &Path, id: &str) -> Value {
    serde_json::from_str(&rpaas_ok(root, &["state", id])).expect("state json")
}

fn count_in(rootfs: &Path) -> u64 {
    std::fs::read_to_string(rootfs.join("tmp/n"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_count(rootfs: &Path, at_least: u64) -> u64 {
    let t = Instant::now();
    loop {
        let n = count_in(rootfs);
        if n >= at_least {
            return n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "counter stuck at {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The count read through `exec` inside the container.
fn count_by_exec(root: &Path, id: &str) -> u64 {
    rpaas_ok(root, &["exec", id, "cat", "/tmp/n"])
        .trim()
        .parse()
        .expect("a number in /tmp/n")
}

fn wait_stopped(root: &Path, id: &str) -> Value {
    let t = Instant::now();
    loop {
        let s = state(root, id);
        if s["status"] == "stopped" && s.get("exitCode").is_some() {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{id} did not stop: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs CRIU (kernel 6.1): runs in the VM suite"]
fn checkpoint_stops_restore_continues_the_count_and_the_keeper_records_the_exit() {
    assert!(is_root(), "needs root");
    let root = state_root();
    let r = root.path();
    let bundle = Bundle::new(&default_config(&["/bin/sh", "-c", COUNTER]));
    let b = bundle.path().to_str().expect("bundle path");
    let rootfs = bundle.rootfs();
    let id = unique_id("criu");
    let images = tempfile::tempdir().expect("image dir");
    let img = images.path().join("img");
    let img_s = img.to_str().expect("image path");

    rpaas_ok(r, &["run", "--detach", "--keeper", "--bundle", b, &id]);
    let before = state(r, &id);
    assert_eq!(before["status"], "running", "{before}");
    // Long enough that a restart from 0 could not catch up during the restore.
    wait_count(&rootfs, 30);

    // Without --leave-running: CRIU stops the tree, the container is gone.
    rpaas_ok(r, &["checkpoint", "--image-path", img_s, &id]);
    assert!(img.join("rpaas-checkpoint.json").exists());
    let gone = rpaas(r, &["state", &id]);
    assert!(
        !gone.status.success(),
        "the checkpointed container still exists"
    );
    let n1 = count_in(&rootfs);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        count_in(&rootfs),
        n1,
        "the counter went on after the checkpoint"
    );

    // A bad image dir: one clear line, nothing made.
    let bad = rpaas(
        r,
        &[
            "restore",
            "-d",
            "--image-path",
            "/nonexistent-img",
            "-b",
            b,
            &id,
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--image-path /nonexistent-img"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!r.join(&id).exists(), "a failed restore left its state dir");

    rpaas_ok(
        r,
        &[
            "restore",
            "--detach",
            "--image-path",
            img_s,
            "--bundle",
            b,
            &id,
        ],
    );
    let after = state(r, &id);
    assert_eq!(after["status"], "running", "{after}");
    let pid = after["pid"].as_i64().expect("pid");
    assert!(pid > 0, "{after}");
    assert!(after["keeperPid"].as_i64().is_some(), "no keeper: {after}");
    // The restored init is the keeper's child, in the container's cgroup.
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .expect("init stat")
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .expect("ppid");
    assert_eq!(
        ppid,
        after["keeperPid"].to_string(),
        "init's parent is not the keeper"
    );
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert!(
        cg.contains(&id),
        "restored init outside the container's cgroup: {cg}"
    );

    // The count goes on from where it was: the shell's memory came back.
    let n2 = count_by_exec(r, &id);
    assert!(n2 >= n1, "counter restarted: {n2} after {n1}");
    let t = Instant::now();
    let n3 = loop {
        let n = count_by_exec(r, &id);
        if n > n2 {
            break n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "restored counter stuck at {n}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(n3 > n1, "{n3} <= {n1}");

    // The output goes on reaching the log through the new keeper.
    let t = Instant::now();
    loop {
        let log = std::fs::read_to_string(r.join(&id).join("log")).unwrap_or_default();
        let last_tick = log
            .lines()
            .filter_map(|l| l.split("tick ").nth(1))
            .filter_map(|n| {
                n.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        if last_tick > n1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no tick after {n1} in the log: {log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The keeper of the restored container records the exit.
    rpaas_ok(r, &["kill", &id, "KILL"]);
    let end = wait_stopped(r, &id);
    assert_eq!(end["exitCode"], 137, "{end}");
    assert_eq!(end["exitSignal"], 9, "{end}");
    rpaas_ok(r, &["delete", &id]);
    assert!(!r.join(&id).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains("criu-root"), "criu root left mounted");
    assert!(
        !Path::new("/sys/fs/cgroup")
            .join(format!("rpaas-{id}"))
            .exists(),
        "cgroup left"
    );
}

#[test]
#[ignore = "needs CRIU (kernel 6.1): runs in the VM suite"]
fn leave_running_and_pre_dump_keep_it_running_and_a_dump_on_the_pre_dump_restores() {
    assert!(is_root(), "needs root");
    let root = state_root();
    let r = root.path();
    let bundle = Bundle::new(&default_config(&["/bin/sh", "-c", COUNTER]));
    let b = bundle.path().to_str().expect("bundle path");
    let id = unique_id("criu-lr");
    let images = tempfile::tempdir().expect("image dir");
    let img = images.path().join("img");
    let img_s = img.to_str().expect("image path");
    let work = images.path().join("work");
    let work_s = work.to_str().expect("work path");

    rpaas_ok(r, &["run", "--detach", "--keeper", "--bundle", b, &id]);
    wait_count(&bundle.rootfs(), 5);
    rpaas_ok(
        r,
        &[
            "checkpoint",
            "--leave-running",
            "--manage-cgroups-mode",
            "soft",
            "--image-path",
            img_s,
            "--work-path",
            work_s,
            &id,
        ],
    );
    assert!(work.join("dump.log").exists(), "no CRIU log in --work-path");
    let s = state(r, &id);
    assert_eq!(s["status"], "running", "{s}");
    let n = count_by_exec(r, &id);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        count_by_exec(r, &id) > n,
        "not running after --leave-running"
    );

    // A bad mode is one line naming the flag.
    let bad = rpaas(
        r,
        &[
            "checkpoint",
            "--manage-cgroups-mode",
            "bogus",
            "--image-path",
            img_s,
            &id,
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--manage-cgroups-mode bogus"), "{err}");

    // Incremental: a pre-dump, then the final dump on top of it
    // (--parent-path relative to --image-path), then a restore.
    let pre = images.path().join("pre");
    let fin = images.path().join("final");
    rpaas_ok(
        r,
        &[
            "checkpoint",
            "--pre-dump",
            "--image-path",
            pre.to_str().expect("p"),
            &id,
        ],
    );
    assert_eq!(state(r, &id)["status"], "running", "a pre-dump stopped it");
    let fin_s = fin.to_str().expect("final path");
    rpaas_ok(
        r,
        &[
            "checkpoint",
            "--parent-path",
            "../pre",
            "--image-path",
            fin_s,
            &id,
        ],
    );
    assert!(
        fin.join("parent").exists(),
        "no parent link in the final images"
    );
    let n1 = count_in(&bundle.rootfs());
    rpaas_ok(r, &["restore", "-d", "--image-path", fin_s, "-b", b, &id]);
    let n2 = count_by_exec(r, &id);
    assert!(n2 >= n1, "counter restarted: {n2} after {n1}");
    rpaas_ok(r, &["delete", "--force", &id]);
}

/// podman 4.3 drives `container checkpoint` / `container restore` with
/// `--runtime rpaas-run` (through conmon for the restore).
#[test]
#[ignore = "needs CRIU (kernel 6.1): runs in the VM suite"]
fn podman_checkpoints_and_restores_through_rpaas_run() {
    assert!(is_root(), "needs root");
    let store = tempfile::Builder::new()
        .prefix("rpaas-podman-store")
        .tempdir_in("/var/tmp")
        .expect("store");
    let run = tempfile::Builder::new()
        .prefix("rpaas-podman-run")
        .tempdir_in("/run")
        .expect("run dir");
    let podman = |args: &[&str]| -> String {
        let mut c = std::process::Command::new("timeout");
        c.args(["--kill-after=10", "300", "podman"]);
        c.current_dir(run.path());
        c.arg("--root").arg(store.path().join("graph"));
        c.arg("--runroot").arg(run.path().join("runroot"));
        c.arg("--tmpdir").arg(run.path().join("tmp"));
        c.arg("--network-config-dir")
            .arg(store.path().join("networks"));
        c.arg("--volumepath").arg(store.path().join("volumes"));
        c.args(["--storage-driver", "vfs", "--events-backend", "file"]);
        c.args(["--cgroup-manager", "cgroupfs", "--runtime"]);
        c.arg(rpaas_run_bin());
        c.args(args);
        let out = run_to_files(&mut c);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let rootfs = store.path().join("image-rootfs");
    busybox_rootfs(&rootfs);
    let tarball = store.path().join("image.tar");
    let tar = run_to_files(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    assert!(tar.status.success(), "tar failed");
    podman(&[
        "import",
        tarball.to_str().expect("path"),
        "localhost/rpaas-criu:test",
    ]);
    let name = unique_id("rpaas-criu-podman");
    podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--ulimit",
        "nofile=1024",
        "--ulimit",
        "nproc=1024",
        "localhost/rpaas-criu:test",
        "/bin/sh",
        "-c",
        COUNTER,
    ]);
    let count = |name: &str| -> u64 {
        podman(&["exec", name, "cat", "/tmp/n"])
            .parse()
            .unwrap_or(0)
    };
    let t = Instant::now();
    // High enough that a restart from 0 could not catch up during the restore.
    while count(&name) < 50 {
        assert!(t.elapsed() < Duration::from_secs(120), "counter stuck");
        std::thread::sleep(Duration::from_millis(200));
    }
    let n1 = count(&name);
    podman(&["container", "checkpoint", &name]);
    let status = podman(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_ne!(status, "running", "still running after checkpoint");
    podman(&["container", "restore", &name]);
    let status = podman(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(status, "running");
    let n2 = count(&name);
    assert!(n2 >= n1, "counter restarted: {n2} after {n1}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(count(&name) > n2, "restored counter does not count");
    podman(&["kill", &name]);
    let t = Instant::now();
    loop {
        let s = podman(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ]);
        if s.starts_with("exited") {
            assert_eq!(s, "exited 137");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "not stopped: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    podman(&["rm", "-f", &name]);
    podman(&["rmi", "-f", "localhost/rpaas-criu:test"]);
}

/// The library: `Host::checkpoint_container` / `restore_container` on a
/// container `Host::run` made (keeper mode, output logged).
#[test]
#[ignore = "needs CRIU (kernel 6.1): runs in the VM suite"]
fn host_checkpoints_and_restores_a_container() {
    assert!(is_root(), "needs root");
    let root = state_root();
    let data = tempfile::tempdir().expect("data root");
    let host = rpaas::Host::open(rpaas::HostConfig {
        state_root: root.path().to_path_buf(),
        data_root: data.path().to_path_buf(),
        runtime: Some(rpaas_run_bin()),
        ..rpaas::HostConfig::default()
    })
    .expect("open host");
    let bundle = Bundle::new(&default_config(&["/bin/sh", "-c", COUNTER]));
    let id = unique_id("criu-host");
    let images = tempfile::tempdir().expect("image dir");
    let img = images.path().join("img");
    host.run(&id, bundle.path()).expect("run");
    wait_count(&bundle.rootfs(), 30);
    host.checkpoint_container(&id, &img, false)
        .expect("checkpoint");
    assert!(host.load(&id).is_err(), "still there after the checkpoint");
    let n1 = count_in(&bundle.rootfs());
    let c = host
        .restore_container(&id, bundle.path(), &img)
        .expect("restore");
    assert_eq!(c.status(), rpaas_runtime::Status::Running);
    let out = host.exec(&id, None, &["cat", "/tmp/n"]).expect("exec");
    let n2: u64 = out.stdout.trim().parse().expect("count");
    assert!(n2 >= n1, "counter restarted: {n2} after {n1}");
    // A failed restore (the id is taken) leaves the running one alone.
    let again = host.restore_container(&id, bundle.path(), &img);
    assert!(again.is_err(), "restored twice under one id");
    assert_eq!(
        host.load(&id).expect("load").status(),
        rpaas_runtime::Status::Running
    );
    let rec = host
        .stop(&id, Duration::from_secs(2))
        .expect("stop")
        .expect("exit record");
    assert!(rec.exit_code == 143 || rec.exit_code == 137, "{rec:?}");
    host.delete(&id).expect("delete");
}

/// A joined network namespace (`linux.namespaces[].path`, what podman and the
/// agent give) is external to CRIU: the restored container is back in it.
#[test]
#[ignore = "needs CRIU (kernel 6.1): runs in the VM suite"]
fn a_joined_netns_is_joined_again_after_restore() {
    assert!(is_root(), "needs root");
    let netns = unique_id("rpaas-criu-ns");
    let ip = |args: &[&str]| {
        let out = run_to_files(std::process::Command::new("ip").args(args));
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &netns]);
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _del = DelNs(netns.clone());
    let ns_path = format!("/run/netns/{netns}");
    let ns_ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&ns_path).expect("netns file").ino()
    };
    let mut config = default_config(&["/bin/sh", "-c", COUNTER]);
    for ns in config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        if ns["type"] == "network" {
            ns["path"] = ns_path.clone().into();
        }
    }
    let root = state_root();
    let r = root.path();
    let bundle = Bundle::new(&config);
    let b = bundle.path().to_str().expect("bundle path");
    let id = unique_id("criu-ns");
    let images = tempfile::tempdir().expect("image dir");
    let img = images.path().join("img");
    let img_s = img.to_str().expect("image path");
    rpaas_ok(r, &["run", "--detach", "--keeper", "--bundle", b, &id]);
    wait_count(&bundle.rootfs(), 5);
    rpaas_ok(r, &["checkpoint", "--image-path", img_s, &id]);
    rpaas_ok(r, &["restore", "-d", "--image-path", img_s, "-b", b, &id]);
    let pid = state(r, &id)["pid"].as_i64().expect("pid");
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .expect("ns")
            .ino()
    };
    assert_eq!(ino, ns_ino, "restored outside the joined netns");
    rpaas_ok(r, &["delete", "--force", &id]);
}
