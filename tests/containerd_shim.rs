//! rpaas-run driven by a real containerd, as Kubernetes drives it (issue 12,
//! items 6 and 7): Debian's containerd with its runc v2 shim, whose runc
//! option `BinaryName` is rpaas-run (`ctr run --runc-binary` sets that
//! option on the task, as the CRI plugin's `runtimes.runc.options.BinaryName`
//! does), cgroupfs. Each test starts its own containerd with a private root,
//! state dir and socket in a temp dir, and a [`Containerd`] guard kills it and
//! removes its shims, containers, mounts and cgroups, also when the test
//! fails. Run: `cargo test --test containerd_shim`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";

/// One private containerd; dropped: containers, shims, daemon, mounts and
/// cgroups it made are removed.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    /// The containerd namespace the test's containers live in.
    ns: String,
}

impl Containerd {
    fn start() -> Containerd {
        assert!(
            Path::new(CONTAINERD).exists() && Path::new(CTR).exists(),
            "containerd is not installed (scripts/install-deps.sh installs Debian's containerd)"
        );
        // In /run (tmpfs): socket paths stay short, and nothing survives a reboot.
        let dir = tempfile::Builder::new()
            .prefix("rpaas-ctrd")
            .tempdir_in("/run")
            .expect("tempdir");
        let d = dir.path().display().to_string();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[metrics]
  address = ""
"#
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let daemon = Command::new(CONTAINERD)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            ns: format!("rpaas-test-{}", std::process::id()),
            daemon: Some(daemon),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.path().join("containerd.sock")
    }

    /// rpaas-run's (and runc's) `--root` for the shim: private to this test.
    fn runtime_root(&self) -> PathBuf {
        self.path().join("runtime-root")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK --namespace NS ARGS…`, bounded by `timeout` (a hang guard).
    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.arg("120")
            .arg(CTR)
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        run_to_files(&mut cmd)
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}\ncontainerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr run -d` of a busybox rootfs through the runc v2 shim with `binary`
    /// as its runc; `extra` are ctr run flags.
    fn run_detached(&self, binary: &Path, id: &str, rootfs: &Path, extra: &[&str], args: &[&str]) {
        let bin = binary.to_str().expect("utf-8");
        let rr = self.runtime_root();
        let rf = rootfs.to_str().expect("utf-8");
        let mut all = vec![
            "run",
            "-d",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            bin,
            "--runc-root",
            rr.to_str().expect("utf-8"),
            "--rootfs",
        ];
        all.extend_from_slice(extra);
        all.push(rf);
        all.push(id);
        all.extend_from_slice(args);
        self.ctr_ok(&all);
    }

    /// The task's status as `ctr task ls` shows it (RUNNING, STOPPED, …).
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
            })
            .next()
            .unwrap_or_default()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.task_status(id);
            if s == want {
                return;
            }
            assert!(Instant::now() < deadline, "task {id} is {s:?}, not {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Remove task and container (killing the task first).
    fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.task_status(id) == "RUNNING" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.ctr(&["task", "delete", "--force", id]);
        let _ = self.ctr(&["container", "delete", id]);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks and containers first, through containerd (shims exit then).
        if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.ctr(&["container", "ls", "-q"])
        })) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                self.remove(id.trim());
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // Shims still running (they name our socket on their command line).
        let sock = self.socket().display().to_string();
        for pid in pids_with_arg(&sock) {
            // SAFETY: kill(2) of a shim this test's containerd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Containers the runtimes still know.
        for bin in [rpaas_run_bin(), PathBuf::from("/usr/sbin/runc")] {
            if let Ok(entries) = std::fs::read_dir(self.runtime_root()) {
                for e in entries.flatten() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let _ = Command::new(&bin)
                        .arg("--root")
                        .arg(self.runtime_root())
                        .args(["delete", "--force", &id])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        unmount_under(self.path());
        // The cgroups ctr's default spec names: /<namespace>/<id> in every hierarchy.
        remove_cgroups_named(&self.ns);
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Pids whose command line has `arg` as one of its arguments.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Unmount (lazily, deepest first) every mount at or under `dir`.
fn unmount_under(dir: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// rmdir `<hierarchy>/<name>` and its (empty) children in every cgroup hierarchy.
fn remove_cgroups_named(name: &str) {
    fn rmdir_tree(p: &Path) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(p);
    }
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        roots.push(e.path());
    }
    for r in roots {
        let p = r.join(name);
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
}

/// A busybox rootfs on the host (removed with its temp dir).
fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rpaas-ctrd-rootfs")
        .tempdir()
        .expect("tempdir");
    busybox_rootfs(dir.path());
    std::fs::create_dir_all(dir.path().join("mnt")).expect("mkdir /mnt");
    dir
}

fn stderr_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ctr task kill` of a task that already exited, through `binary` as the
/// shim's runc: what ctr says.
fn kill_after_exit(ctrd: &Containerd, binary: &Path, id: &str) -> Vec<String> {
    let rootfs = rootfs();
    ctrd.run_detached(binary, id, rootfs.path(), &[], &["/bin/true"]);
    ctrd.wait_status(id, "STOPPED");
    let mut said = Vec::new();
    for args in [
        vec!["task", "kill", id],
        vec!["task", "kill", "-s", "SIGKILL", id],
    ] {
        let out = ctrd.ctr(&args);
        said.push(format!(
            "{args:?}: {} {}",
            out.status,
            stderr_of(&out).trim()
        ));
    }
    ctrd.remove(id);
    said
}

#[test]
fn ctr_task_kill_of_an_exited_task_reports_it_finished_as_with_runc() {
    let ctrd = Containerd::start();
    let rpaas = kill_after_exit(&ctrd, &rpaas_run_bin(), &unique_id("rpaas-k7"));
    for line in &rpaas {
        // containerd's shim maps runc's "container not running" to "process
        // already finished: not found"; any other wording is "unknown error
        // after kill", which fails the kubelet's StopPodSandbox.
        assert!(
            line.contains("process already finished") && !line.contains("unknown error"),
            "rpaas-run through containerd: {line}\nall: {rpaas:#?}"
        );
    }
    // The same steps with runc, the reference, say the same.
    if Path::new("/usr/sbin/runc").exists() {
        let runc = kill_after_exit(&ctrd, Path::new("/usr/sbin/runc"), &unique_id("runc-k7"));
        for line in &runc {
            assert!(line.contains("process already finished"), "runc: {line}");
        }
    }
}

/// `dir` bound onto itself and made shared: this host's "/" is private, so
/// without this no propagation could show either way. Unmounted on drop.
struct SharedDir(tempfile::TempDir);

impl SharedDir {
    fn new() -> SharedDir {
        use nix::mount::{mount, MsFlags};
        let dir = tempfile::Builder::new()
            .prefix("rpaas-ctrd-shared")
            .tempdir()
            .expect("tempdir");
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind the shared dir");
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .expect("make it shared");
        SharedDir(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        unmount_under(self.0.path());
    }
}

/// cri-tools' "mount with 'rshared' should support propagation from host to
/// container and vice versa", through ctr: the rootfs rshared and a volume
/// `rbind:rshared` of a shared host dir.
#[test]
fn rshared_volume_propagates_both_ways_through_containerd() {
    let ctrd = Containerd::start();
    let shared = SharedDir::new();
    let rootfs = rootfs();
    let id = unique_id("rpaas-k6");
    let mount = format!(
        "type=bind,src={},dst=/mnt,options=rbind:rshared",
        shared.path().display()
    );
    ctrd.run_detached(
        &rpaas_run_bin(),
        &id,
        rootfs.path(),
        &[
            "--rootfs-propagation",
            "rshared",
            "--mount",
            &mount,
            "--cap-add",
            "CAP_SYS_ADMIN",
        ],
        &["/bin/sh", "-c", "while :; do sleep 1; done"],
    );
    ctrd.wait_status(&id, "RUNNING");

    // host -> container
    let from_host = shared.path().join("h");
    std::fs::create_dir_all(&from_host).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &from_host,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount tmpfs on the host");
    std::fs::write(from_host.join("from-host"), "host\n").unwrap();
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "/bin/cat",
        "/mnt/h/from-host",
    ]);
    let seen = stderr_of(&out);
    assert!(
        out.status.success() && seen.contains("host"),
        "a mount made on the host did not reach the container: {seen}"
    );

    // container -> host
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        &id,
        "/bin/sh",
        "-c",
        "mkdir -p /mnt/c && mount -t tmpfs tmpfs /mnt/c && echo ctr > /mnt/c/from-ctr",
    ]);
    assert!(
        out.status.success(),
        "mount in the container: {}",
        stderr_of(&out)
    );
    let back = shared.path().join("c/from-ctr");
    assert!(
        back.exists(),
        "a mount made in the container did not reach the host (mountinfo: {})",
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("rpaas-ctrd-shared"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    ctrd.remove(&id);
}
