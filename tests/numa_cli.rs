//! `rpaas-run numa …` end to end: the binary on the sysfs fixtures, its books in a temp
//! --root, and `numa locality` on a real cgroup v1 memory cgroup of this host.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn seed_sysfs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("numa/tests/fixtures/seed-2socket/sys")
}

fn rpaas(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpaas-run"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run rpaas-run")
}

fn json_ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn show_place_refuse_release_on_the_seed_host() {
    let root = tempfile::tempdir().unwrap();
    let sysfs = seed_sysfs();
    let sysfs = sysfs.to_str().unwrap();
    let show = json_ok(&rpaas(
        root.path(),
        &["numa", "show", "--sysfs", sysfs, "--json"],
    ));
    assert_eq!(show["topology"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(show["topology"]["nodes"][1]["cpus"], "6-11,18-23");

    let place = |id: &str| {
        rpaas(
            root.path(),
            &[
                "numa", "place", "--cpus", "12", "--memory", "16G", "--id", id, "--sysfs", sysfs,
                "--json",
            ],
        )
    };
    let a = json_ok(&place("rpaas-a"));
    let b = json_ok(&place("rpaas-b"));
    assert_eq!(a["placement"]["node"], 0);
    assert_eq!(b["placement"]["node"], 1);
    assert_eq!(b["linux.resources.cpu"]["cpus"], "6-11,18-23");
    assert_eq!(b["linux.resources.cpu"]["mems"], "1");
    assert!(root.path().join("numa/placements.json").exists());

    let c = place("rpaas-c");
    assert_eq!(c.status.code(), Some(1));
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(err.contains("no NUMA node has room for 12 cpus"), "{err}");

    // Preferred falls back and says so (dry run: not recorded).
    let pref = json_ok(&rpaas(
        root.path(),
        &[
            "numa",
            "place",
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--policy",
            "preferred",
            "--sysfs",
            sysfs,
            "--json",
        ],
    ));
    assert_eq!(pref["recorded"], false);
    assert!(pref["note"].as_str().unwrap().contains("over-committed"));

    let rel = json_ok(&rpaas(
        root.path(),
        &[
            "numa", "release", "--id", "rpaas-a", "--sysfs", sysfs, "--json",
        ],
    ));
    assert_eq!(rel["released"]["id"], "rpaas-a");
    let again = json_ok(&place("rpaas-c"));
    assert_eq!(again["placement"]["node"], 0);
    let show = json_ok(&rpaas(
        root.path(),
        &["numa", "show", "--sysfs", sysfs, "--json"],
    ));
    let ids: Vec<&str> = show["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["rpaas-b", "rpaas-c"]);

    let bad = rpaas(
        root.path(),
        &["numa", "release", "--id", "rpaas-a", "--sysfs", sysfs],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"rpaas-a\": is not placed"));
}

#[test]
fn bad_requests_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let sysfs = seed_sysfs();
    let sysfs = sysfs.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--cpus", "32", "--memory", "1G"],
            "32 cpus asked, the host has 24",
        ),
        (&["--cpus", "two", "--memory", "1G"], "request cpus"),
        (&["--cpus", "1", "--memory", "lots"], "request memory"),
        (
            &["--cpus", "1", "--memory", "1G", "--policy", "best"],
            "request policy",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["numa", "place", "--sysfs", sysfs];
        all.extend_from_slice(args);
        let out = rpaas(root.path(), &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = rpaas(
        root.path(),
        &["numa", "show", "--sysfs", "/nonexistent-rpaas-sysfs"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-rpaas-sysfs"));
}

/// Removes the memory cgroup and the tmpfs file even when the test fails.
struct Cleanup(PathBuf, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn locality_reads_the_cgroup_named_in_the_state_file() {
    let memory_root = Path::new("/sys/fs/cgroup/memory");
    assert!(
        memory_root.join("memory.numa_stat").exists(),
        "needs the host's cgroup v1 memory hierarchy"
    );
    let root = tempfile::tempdir().unwrap();
    let id = "rpaas-numa-cli";
    let cg = format!("/rpaas-numa-cli-{}", std::process::id());
    let dir = memory_root.join(&cg[1..]);
    let shm = PathBuf::from(format!("/dev/shm/rpaas-numa-cli-{}", std::process::id()));
    let _guard = Cleanup(dir.clone(), shm.clone());
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(root.path().join(id)).unwrap();
    std::fs::write(
        root.path().join(id).join("state.json"),
        format!(r#"{{"id":"{id}","cgroupPath":"{cg}"}}"#),
    )
    .unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec busybox dd if=/dev/zero of={} bs=1M count=64",
        dir.display(),
        shm.display()
    );
    let dd = Command::new("busybox")
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        dd.status.success(),
        "{}",
        String::from_utf8_lossy(&dd.stderr)
    );

    let out = json_ok(&rpaas(root.path(), &["numa", "locality", id, "--json"]));
    assert_eq!(out["cgroup"], cg.as_str());
    assert!(out["total"].as_u64().unwrap() >= 62 << 20, "{out}");
    let node0 = &out["nodes"][0];
    assert_eq!(node0["node"], 0);
    assert!(node0["percent"].as_f64().unwrap() >= 99.0, "{out}");

    // No state file: the default /rpaas-<id>, named in the error.
    let out = rpaas(root.path(), &["numa", "locality", "rpaas-numa-ghost"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/rpaas-rpaas-numa-ghost/memory.numa_stat"),
        "{err}"
    );
}

/// Removes the v1 cgroups of the rebuild test, children first.
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn rebuild_recovers_the_books_from_running_cgroups() {
    let cg_root = Path::new("/sys/fs/cgroup");
    assert!(
        cg_root.join("cpuset/cpuset.cpus").exists(),
        "needs the host's cgroup v1 cpuset hierarchy"
    );
    let root = tempfile::tempdir().unwrap();
    let id = "rpaas-numa-rebuild";
    let cg = format!("rpaas-numa-cli-rebuild-{}", std::process::id());
    let cpuset = cg_root.join("cpuset").join(&cg);
    let memory = cg_root.join("memory").join(&cg);
    let cpu = cg_root.join("cpu").join(&cg);
    let _guard = Cgroups(vec![cpuset.clone(), memory.clone(), cpu.clone()]);
    // What the runtime leaves for a running container: cpuset, quota, memory limit.
    std::fs::create_dir(&cpuset).unwrap();
    std::fs::write(cpuset.join("cpuset.cpus"), "0").unwrap();
    std::fs::write(cpuset.join("cpuset.mems"), "0").unwrap();
    std::fs::create_dir(&memory).unwrap();
    std::fs::write(memory.join("memory.limit_in_bytes"), "268435456").unwrap();
    if cg_root.join("cpu/cpu.cfs_quota_us").exists() {
        std::fs::create_dir(&cpu).unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "50000").unwrap();
    }
    for (ctr, path) in [
        (id, format!("/{cg}")),
        ("rpaas-numa-stopped", "/rpaas-numa-gone".into()),
    ] {
        std::fs::create_dir(root.path().join(ctr)).unwrap();
        std::fs::write(
            root.path().join(ctr).join("state.json"),
            format!(r#"{{"id":"{ctr}","cgroupPath":"{path}"}}"#),
        )
        .unwrap();
    }
    let out = json_ok(&rpaas(root.path(), &["numa", "rebuild", "--json"]));
    let p = &out["placements"][0];
    assert_eq!(p["id"], id, "{out}");
    assert_eq!(p["cpus"], "0");
    assert_eq!(p["node"], 0);
    assert_eq!(p["memory"], 268435456);
    if cg_root.join("cpu/cpu.cfs_quota_us").exists() {
        assert_eq!(p["millicores"], 500);
    }
    assert_eq!(out["skipped"][0], "rpaas-numa-stopped");
    let show = json_ok(&rpaas(root.path(), &["numa", "show", "--json"]));
    assert_eq!(show["placements"][0]["id"], id);
}
