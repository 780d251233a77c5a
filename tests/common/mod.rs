//! Test support shared by the integration tests: a busybox-static rootfs and
//! OCI bundles built locally (no downloads), and helpers to drive `rpaas-run`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `rpaas-run` binary cargo built for this test run.
pub fn rpaas_run_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rpaas-run"))
}

/// True when running as root (the integration tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Build a busybox-static rootfs in `dir`: /bin/busybox plus one symlink per applet,
/// the usual top-level directories, and /etc/passwd and /etc/group.
pub fn busybox_rootfs(dir: &Path) {
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin", "usr/sbin", "var",
        "run", "home/app",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs dir");
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is not installed (apt-get install busybox-static)"
    );
    std::fs::copy(busybox, dir.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = dir.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).ok();
        }
        let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
    }
    std::fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod tmp");
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("write passwd");
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:1001:app\nnogroup:x:65534:\n",
    )
    .expect("write group");
}

/// A default OCI config.json, close to `runc spec`, running `args` as root.
/// Tests mutate the returned JSON before writing it.
pub fn default_config(args: &[&str]) -> serde_json::Value {
    // 1.0.2: crun 1.8 (a peer in the tests) refuses newer versions.
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "rpaas-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A bundle directory with a busybox rootfs and the given config.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    pub fn new(config: &serde_json::Value) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("rpaas-test-bundle")
            .tempdir()
            .expect("tempdir");
        busybox_rootfs(&dir.path().join("rootfs"));
        let b = Bundle { dir };
        b.write_config(config);
        b
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    pub fn write_config(&self, config: &serde_json::Value) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("write config.json");
    }
}

/// A state root for one test (so tests don't see each other's containers).
/// On drop, even when the test failed, every container left in it is
/// force-deleted, so a failing test leaks no cgroup or process.
pub struct StateRoot {
    dir: tempfile::TempDir,
}

impl StateRoot {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for StateRoot {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let _ = rpaas(self.dir.path(), &["delete", "--force", &id]);
                }
            }
        }
    }
}

pub fn state_root() -> StateRoot {
    StateRoot {
        dir: tempfile::Builder::new()
            .prefix("rpaas-test-root")
            .tempdir_in("/run")
            .expect("tempdir in /run"),
    }
}

/// A container id unique to this process and call site.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Run `rpaas-run --root ROOT args…` and capture its output.
///
/// Output goes through files, not pipes: a container made by `create` or
/// `run -d` inherits the runtime's stdout/stderr (as with runc), so a pipe
/// would only reach EOF when the container exits.
pub fn rpaas(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(rpaas_run_bin());
    cmd.arg("--root").arg(root).args(args);
    run_to_files(&mut cmd)
}

/// Run a command with stdout/stderr in temp files; wait for the command only.
pub fn run_to_files(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().expect("temp stdout");
    let err = tempfile::tempfile().expect("temp stderr");
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .status()
        .expect("spawn");
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut v).expect("read");
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// Like [`rpaas`], panicking with stderr when the command fails.
pub fn rpaas_ok(root: &Path, args: &[&str]) -> String {
    let out = rpaas(root, args);
    assert!(
        out.status.success(),
        "rpaas-run {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
pub mod apps;
