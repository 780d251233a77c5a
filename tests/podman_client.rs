//! Issue 2: podman 4.3 as a real client of rpaas-run.
//!
//! podman drives the runtime exactly as it drives runc (through conmon for
//! create/start/exec, directly for state/kill/delete), so these tests show
//! that rpaas-run speaks runc's dialect well enough for a real client.
//!
//! Each test gets its own podman: storage, run root, tmpdir, network config,
//! volumes and cgroup parent are temp dirs/names with "rpaas" in them, so
//! tests run in parallel and a leftover is easy to find. [`Podman`]'s Drop
//! removes what podman made, also when a test fails.
//!
//! The runtime keeps its states in its default root (/run/rpaas, /run/runc):
//! podman 4.3 does not hand `--runtime-flag root=…` on to the cleanup command
//! conmon runs at exit, so with a private root `run --rm` leaves the state
//! and cgroup behind under runc as under rpaas-run. Container ids are
//! podman's 64-hex ids, so tests can't collide there.
//!
//! Host quirks handled here: the capability bounding set lacks
//! CAP_SYS_RESOURCE, so rlimits above the host's hard limits can't be set
//! (podman asks for more by default): we pass `--ulimit` for nofile and nproc.
//! No CNI/netavark network is configured for the tests: `--network none`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The image every test imports: a busybox-static rootfs made by the test.
const IMAGE: &str = "localhost/rpaas-busybox:test";
/// An upper bound for any one podman command, so a hang fails the test
/// instead of blocking the suite (coreutils `timeout`).
const PODMAN_TIMEOUT_SECS: &str = "180";

/// One isolated podman installation driving one OCI runtime.
struct Podman {
    /// `--root` (graph root): images and container storage.
    store: tempfile::TempDir,
    /// `--runroot` and `--tmpdir` live under here (a tmpfs, like /run/containers).
    run: tempfile::TempDir,
    /// `--cgroup-parent` of the containers (conmon goes under it too).
    cgroup_parent: String,
    runtime: PathBuf,
}

impl Podman {
    /// A podman using `runtime`, with the busybox image imported.
    fn new(runtime: &Path) -> Podman {
        let store = tempfile::Builder::new()
            .prefix("rpaas-podman-store")
            .tempdir_in("/var/tmp")
            .expect("podman store dir");
        let run = tempfile::Builder::new()
            .prefix("rpaas-podman-run")
            .tempdir_in("/run")
            .expect("podman run dir");
        let p = Podman {
            cgroup_parent: format!("/{}", unique_id("rpaas-podman-cg")),
            store,
            run,
            runtime: runtime.to_path_buf(),
        };
        // A podman whose tmpdir is new takes it for a fresh boot and makes its
        // lock file, /dev/shm/libpod_lock, again; two doing that at once fail
        // with "failed to create 2048 locks in /libpod_lock: file exists". The
        // first command of each installation (this import) runs alone.
        static FIRST_COMMAND: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let one_at_a_time = FIRST_COMMAND.lock().unwrap_or_else(|e| e.into_inner());
        p.import_busybox();
        drop(one_at_a_time);
        p
    }

    /// `podman` with the global flags that isolate this installation.
    fn cmd(&self) -> Command {
        let store = self.store.path();
        let run = self.run.path();
        let mut c = Command::new("timeout");
        c.args(["--kill-after=10", PODMAN_TIMEOUT_SECS, "podman"]);
        // conmon writes an empty `oom` file into its working directory when
        // the container is OOM-killed (case_limits does that): keep it in
        // our temp dir, not in the repository.
        c.current_dir(run);
        c.arg("--root").arg(store.join("graph"));
        c.arg("--runroot").arg(run.join("runroot"));
        // podman records tmpdir/static dir in its database on first use and
        // hands the tmpdir to conmon as the exit dir: keep them ours from the start.
        c.arg("--tmpdir").arg(run.join("tmp"));
        c.arg("--network-config-dir").arg(store.join("networks"));
        c.arg("--volumepath").arg(store.join("volumes"));
        c.args(["--storage-driver", "vfs", "--events-backend", "file"]);
        c.args(["--cgroup-manager", "cgroupfs"]);
        c.arg("--runtime").arg(&self.runtime);
        c
    }

    /// Flags every container gets (see the module doc for why).
    fn container_flags(&self) -> Vec<String> {
        vec![
            "--network".into(),
            "none".into(),
            "--ulimit".into(),
            format!("nofile={}", hard_limit(libc::RLIMIT_NOFILE)),
            // podman's default nproc is above what this host lets a process
            // without CAP_SYS_RESOURCE raise it to.
            "--ulimit".into(),
            format!("nproc={}", hard_limit(libc::RLIMIT_NPROC).min(4096)),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
        ]
    }

    fn podman(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        run_to_files(&mut c)
    }

    /// Run podman, panicking with its stderr when it fails; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} (runtime {}) failed ({}): {}",
            self.runtime.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman run <container flags> <extra> IMAGE <cmd>`.
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let flags = self.container_flags();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        args.push(IMAGE);
        args.extend(cmd);
        self.podman(&args)
    }

    /// Like [`Podman::run`], also returning the container's full id (`--cidfile`).
    fn run_id(&self, extra: &[&str], cmd: &[&str]) -> (Output, String) {
        let cidfile = self.run.path().join(unique_id("cid"));
        let cid_arg = cidfile.display().to_string();
        let mut all = vec!["--cidfile", cid_arg.as_str()];
        all.extend(extra);
        let out = self.run(&all, cmd);
        let id = std::fs::read_to_string(&cidfile)
            .unwrap_or_default()
            .trim()
            .to_string();
        let _ = std::fs::remove_file(&cidfile);
        (out, id)
    }

    fn inspect(&self, ctr: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, ctr])
            .trim()
            .to_string()
    }

    /// `podman import` of a tarball of a busybox-static rootfs built here.
    fn import_busybox(&self) {
        let rootfs = self.store.path().join("image-rootfs");
        busybox_rootfs(&rootfs);
        let tarball = self.store.path().join("image.tar");
        let tar = run_to_files(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tarball)
                .arg("."),
        );
        assert!(
            tar.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        self.ok(&["import", &tarball.display().to_string(), IMAGE]);
        std::fs::remove_dir_all(&rootfs).expect("remove image rootfs");
    }

    /// The runtime's default state root (podman passes no `--root`).
    fn runtime_root(&self) -> PathBuf {
        if self.runtime.file_name().is_some_and(|n| n == "runc") {
            PathBuf::from("/run/runc")
        } else {
            // rpaas-run's default `--root`.
            PathBuf::from("/run/rpaas")
        }
    }

    /// Full ids of every container this podman knows.
    fn container_ids(&self) -> Vec<String> {
        let out = self.podman(&["ps", "--all", "--quiet", "--no-trunc"]);
        text(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Which of `ids` the runtime still has a state dir for.
    fn runtime_states(&self, ids: &[String]) -> Vec<String> {
        let root = self.runtime_root();
        ids.iter()
            .filter(|id| root.join(id).exists())
            .cloned()
            .collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let ids = self.container_ids();
        // Containers (and their conmons), images, then everything podman keeps.
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.podman(&["rmi", "--all", "--force"]);
        let _ = self.podman(&["system", "reset", "--force"]);
        // Whatever a failed test left to the runtime itself.
        for id in self.runtime_states(&ids) {
            let _ = run_to_files(
                Command::new(&self.runtime)
                    .arg("--root")
                    .arg(self.runtime_root())
                    .args(["delete", "--force", &id]),
            );
        }
        unmount_under(&[self.store.path(), self.run.path()]);
        remove_cgroup_trees(&self.cgroup_parent);
        // The TempDirs remove the directories themselves.
    }
}

/// The hard limit of `resource` for this process.
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(resource, &mut rl) },
        0,
        "getrlimit"
    );
    rl.rlim_max
}

/// Lazily unmount every mount point under `dirs`, deepest first.
fn unmount_under(dirs: &[&Path]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// rmdir `parent` and its children in every cgroup hierarchy (only empty
/// cgroups can be removed, so a running process is never disturbed).
fn remove_cgroup_trees(parent: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(parent.trim_start_matches('/'));
        if dir.exists() {
            rmdir_tree(&dir);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The tests run as root (as `make test` does); anything else is a failure,
/// not a pass.
fn require_root() -> bool {
    assert!(is_root(), "podman tests need root");
    true
}

// ---- the cases, each run for a given runtime ----

/// `run --rm IMG echo hi` prints hi and exits 0; `exit 3` gives 3.
fn case_run_rm(runtime: &Path) {
    let p = Podman::new(runtime);
    let (out, id1) = p.run_id(&["--rm"], &["echo", "hi"]);
    assert!(
        out.status.success(),
        "run --rm echo hi: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "hi\n");

    let (out, id2) = p.run_id(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exit 3: {}", text(&out.stderr));
    assert!(
        p.container_ids().is_empty(),
        "--rm left {:?}",
        p.container_ids()
    );
    let ids = [id1, id2];
    assert!(
        ids.iter().all(|i| i.len() == 64),
        "container ids from --cidfile: {ids:?}"
    );
    assert!(
        p.runtime_states(&ids).is_empty(),
        "runtime state left: {:?}",
        p.runtime_states(&ids)
    );
}

/// `run -d` + `exec` + `stop -t 1` + `rm -f`, checking podman's view at each step.
fn case_detach_exec_stop(runtime: &Path) {
    let p = Podman::new(runtime);
    let name = unique_id("rpaas-podman-d");
    let (out, id) = p.run_id(&["-d", "--name", &name], &["sleep", "1000"]);
    assert!(out.status.success(), "run -d: {}", text(&out.stderr));
    let ids = [id];
    assert_eq!(
        p.runtime_states(&ids),
        ids,
        "the runtime has no state for the container"
    );
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "running");
    let pid: i32 = p.inspect(&name, "{{.State.Pid}}").parse().expect("pid");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "container pid {pid} not running"
    );

    // exec: the container's own /etc/hostname (podman writes it) is what exec sees.
    let hostname = p.inspect(&name, "{{.Config.Hostname}}");
    let seen = p.ok(&["exec", &name, "cat", "/etc/hostname"]);
    assert_eq!(seen.trim(), hostname);
    let out = p.podman(&["exec", &name, "sh", "-c", "exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exec exit 7: {}",
        text(&out.stderr)
    );

    // sleep as pid 1 ignores SIGTERM: stop falls back to SIGKILL after 1 s.
    p.ok(&["stop", "-t", "1", &name]);
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect(&name, "{{.State.ExitCode}}"), "137");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} survived stop"
    );

    p.ok(&["rm", "-f", &name]);
    assert!(
        p.container_ids().is_empty(),
        "rm -f left {:?}",
        p.container_ids()
    );
    assert!(
        p.runtime_states(&ids).is_empty(),
        "runtime state left: {:?}",
        p.runtime_states(&ids)
    );
}

/// `run -it` under a terminal (util-linux `script` gives podman one): the
/// container's stdio is a pty and it has the window size podman passed on.
fn case_tty(runtime: &Path) {
    let p = Podman::new(runtime);
    let mut podman: Vec<String> = p
        .cmd()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `timeout` moves podman into a process group of its own unless told
    // --foreground; podman must be in the terminal's foreground group, or
    // its tcsetattr (raw mode) stops it with SIGTTOU. Under bash, `script -c`
    // happened to exec timeout as the session leader and hide this; CI has no
    // $SHELL, so script ran dash and podman hung until the timeout.
    podman.insert(0, "timeout".into());
    podman.insert(1, "--foreground".into());
    podman.extend(["run".into(), "--rm".into(), "-it".into()]);
    podman.extend(p.container_flags());
    podman.push(IMAGE.into());
    // script's pty starts at 0x0: give it a size for podman to copy. The
    // short sleep lets conmon drain the pty before the process exits: without
    // it, under load, podman 4.3 once showed none of the output.
    let line = format!(
        "stty rows 37 cols 91; {} sh -c 'tty; stty size; sleep 0.5; exit 5'",
        podman.join(" ")
    );
    // The same shell whatever the caller's $SHELL (CI has none: dash).
    let out = run_to_files(Command::new("script").env("SHELL", "/bin/sh").args([
        "-qec",
        &line,
        "/dev/null",
    ]));
    let shown = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "run -it: {shown} {}",
        text(&out.stderr)
    );
    assert!(shown.contains("/dev/pts/"), "tty output: {shown:?}");
    assert!(shown.contains("37 91"), "stty size output: {shown:?}");
}

/// `--memory 64m` and `--pids-limit 32`: the container sees its limits in its
/// cgroup files, the host's cgroup of the container has them, and they bite.
fn case_limits(runtime: &Path) {
    let p = Podman::new(runtime);
    let name = unique_id("rpaas-podman-lim");
    let (out, id1) = p.run_id(
        &[
            "-d",
            "--name",
            &name,
            "--memory",
            "64m",
            "--pids-limit",
            "32",
        ],
        &["sleep", "1000"],
    );
    assert!(
        out.status.success(),
        "run -d with limits: {}",
        text(&out.stderr)
    );

    let inside = p.ok(&[
        "exec",
        &name,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(
        inside.split_whitespace().collect::<Vec<_>>(),
        ["67108864", "32"]
    );

    // The host side: the cgroup of the container's pid, under our cgroup parent.
    let pid = p.inspect(&name, "{{.State.Pid}}");
    let cgroups =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    let host_file = |ctrl: &str, file: &str| {
        let path = cgroups
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':').skip(1);
                f.next().zip(f.next())
            })
            .find(|(c, _)| c.split(',').any(|c| c == ctrl))
            .map(|(_, path)| path.to_string())
            .unwrap_or_else(|| panic!("no {ctrl} cgroup in {cgroups}"));
        assert!(
            path.starts_with(&p.cgroup_parent),
            "{ctrl} cgroup {path} not under {}",
            p.cgroup_parent
        );
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}{path}/{file}"))
            .expect("read host cgroup file")
    };
    assert_eq!(
        host_file("memory", "memory.limit_in_bytes").trim(),
        "67108864"
    );
    assert_eq!(host_file("pids", "pids.max").trim(), "32");

    // The pids limit bites: forking 40 sleepers fails, and the kernel counts it.
    let out = p.podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        "(i=0; while [ $i -lt 40 ]; do sleep 300 & i=$((i+1)); done) 2>/dev/null; \
         cat /sys/fs/cgroup/pids/pids.current; cut -d' ' -f2 /sys/fs/cgroup/pids/pids.events",
    ]);
    let o = text(&out.stdout);
    let nums: Vec<u64> = o
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(
        nums.len(),
        2,
        "pids.current and pids.events: {o:?} {}",
        text(&out.stderr)
    );
    assert!(nums[0] <= 32, "pids.current {} above the limit", nums[0]);
    assert!(nums[1] >= 1, "no fork was refused by pids.max: {o:?}");
    p.ok(&["rm", "-f", "-t", "0", &name]);

    // The memory limit bites: dd's 100 MiB buffer gets the container OOM-killed.
    let oom = unique_id("rpaas-podman-oom");
    let (out, id2) = p.run_id(
        &["--name", &oom, "--memory", "64m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    // (podman 4.3's .State.OOMKilled stays false on this v1 host under runc
    // too, so the exit code is what is checked: only the OOM killer sends
    // SIGKILL here.)
    assert_eq!(
        out.status.code(),
        Some(137),
        "dd past 64m: {}",
        text(&out.stderr)
    );
    p.ok(&["rm", "-f", &oom]);
    let ids = [id1, id2];
    assert!(
        p.runtime_states(&ids).is_empty(),
        "runtime state left: {:?}",
        p.runtime_states(&ids)
    );
}

fn runc() -> PathBuf {
    PathBuf::from("/usr/sbin/runc")
}

// ---- rpaas-run ----

#[test]
fn podman_run_rm_rpaas() {
    if require_root() {
        case_run_rm(&rpaas_run_bin());
    }
}

#[test]
fn podman_detach_exec_stop_rm_rpaas() {
    if require_root() {
        case_detach_exec_stop(&rpaas_run_bin());
    }
}

#[test]
fn podman_tty_rpaas() {
    if require_root() {
        case_tty(&rpaas_run_bin());
    }
}

#[test]
fn podman_memory_pids_limits_rpaas() {
    if require_root() {
        case_limits(&rpaas_run_bin());
    }
}

// ---- runc, the peer: the same cases must pass under it, so a failure above
// is rpaas-run's and not this harness's or the host's ----

#[test]
fn podman_run_rm_runc_peer() {
    if require_root() {
        case_run_rm(&runc());
    }
}

#[test]
fn podman_detach_exec_stop_rm_runc_peer() {
    if require_root() {
        case_detach_exec_stop(&runc());
    }
}

#[test]
fn podman_tty_runc_peer() {
    if require_root() {
        case_tty(&runc());
    }
}

#[test]
fn podman_memory_pids_limits_runc_peer() {
    if require_root() {
        case_limits(&runc());
    }
}
