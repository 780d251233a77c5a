//! Shared by the runtime benches (`rpaas-benches` main and `keeper_mem`):
//! a busybox-static bundle built here (no downloads), the OCI runtimes under
//! test, per-runtime state roots cleaned up on drop, and the process
//! bookkeeping that makes CPU time measurable (subreaper + children rusage).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// A busybox-static rootfs: /bin/busybox, one symlink per applet, the usual dirs.
pub fn busybox_rootfs(dir: &Path) -> anyhow::Result<()> {
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin", "usr/sbin", "var",
        "run",
    ] {
        std::fs::create_dir_all(dir.join(d)).with_context(|| format!("mkdir {d} in rootfs"))?;
    }
    let busybox = Path::new("/bin/busybox");
    std::fs::copy(busybox, dir.join("bin/busybox"))
        .context("copy /bin/busybox (apt-get install busybox-static)")?;
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("busybox --list-full")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = dir.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // An applet listed twice is fine: the first link wins.
        let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// A config.json close to `runc spec` running `args`; "1.0.2" because crun
/// 1.8 refuses newer versions. `rootfs` is absolute so several bundles can
/// share one rootfs.
pub fn config(args: &[&str], rootfs: &Path) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "rpaas-bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
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
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// One busybox rootfs and a bundle dir per command run on it.
pub struct Bundles {
    dir: tempfile::TempDir,
}

impl Bundles {
    /// Under `base` (a dir with "rpaas" in its name is made there).
    pub fn new(base: &Path) -> anyhow::Result<Bundles> {
        let dir = tempfile::Builder::new()
            .prefix("rpaas-bench-bundle")
            .tempdir_in(base)
            .context("bundle temp dir")?;
        busybox_rootfs(&dir.path().join("rootfs"))?;
        Ok(Bundles { dir })
    }

    /// A bundle named `name` whose process runs `args`.
    pub fn bundle(&self, name: &str, args: &[&str]) -> anyhow::Result<PathBuf> {
        let b = self.dir.path().join(name);
        std::fs::create_dir_all(&b)?;
        let cfg = config(args, &self.dir.path().join("rootfs"));
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&cfg)?)?;
        Ok(b)
    }
}

/// `name` on $PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The release `rpaas-run`: $RPAAS_RUN, else the installable build of
/// `make build` (`target/dist/rpaas-run`), else `target/release/rpaas-run`.
pub fn find_rpaas_run() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RPAAS_RUN") {
        return Ok(PathBuf::from(p));
    }
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dist = top.join("target/dist/rpaas-run");
    if dist.is_file() {
        return Ok(dist);
    }
    let p = top.join("target/release/rpaas-run");
    if !p.is_file() {
        bail!(
            "{} not found: run `make build` or set RPAAS_RUN",
            dist.display()
        );
    }
    Ok(p)
}

/// crun 1.8 refuses this hybrid host unless hugetlb is a v1 hierarchy.
/// Ok(true) when this call mounted it (the caller unmounts it at the end).
pub fn ensure_hugetlb_v1() -> anyhow::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounted = info.lines().any(|l| {
        let mut halves = l.split(" - ");
        let _ = halves.next();
        let fs = halves.next().unwrap_or("");
        fs.starts_with("cgroup ") && fs.split([' ', ',']).any(|o| o == "hugetlb")
    });
    if mounted {
        return Ok(false);
    }
    std::fs::create_dir_all("/sys/fs/cgroup/hugetlb").context("mkdir /sys/fs/cgroup/hugetlb")?;
    let out = Command::new("mount")
        .args([
            "-t",
            "cgroup",
            "-o",
            "hugetlb",
            "hugetlb",
            "/sys/fs/cgroup/hugetlb",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "mount -t cgroup -o hugetlb on /sys/fs/cgroup/hugetlb: {} (a cgroup2 child uses hugetlb?)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(true)
}

/// A private tmpfs for state roots and bundles, lazily unmounted (with
/// anything mounted under it) on drop. The runtimes' state belongs on a tmpfs
/// (/run is one on a normal host; on this one /run is ext4, where rpaas-run's
/// fdatasync of each state write would be measured as disk latency).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("rpaas-bench-tmpfs-")
            .tempdir_in("/run")
            .context("scratch dir in /run")?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "rpaas-bench"])
            .arg(dir.path())
            .status()?;
        if !st.success() {
            bail!("mount tmpfs on {}: {st}", dir.path().display());
        }
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: umount2 with a valid C path; MNT_DETACH takes submounts too.
        if let Ok(c) = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// An OCI runtime under test with its own state root.
pub struct Runtime {
    pub name: String,
    pub bin: PathBuf,
    pub root: tempfile::TempDir,
    /// The runtimes' stderr (and the containers'): read when a command fails.
    errors: File,
}

impl Runtime {
    /// `bin` with a fresh state root under `base`.
    pub fn new(name: &str, bin: PathBuf, base: &Path) -> anyhow::Result<Runtime> {
        let root = tempfile::Builder::new()
            .prefix(&format!("rpaas-bench-root-{name}-"))
            .tempdir_in(base)
            .with_context(|| format!("state root in {}", base.display()))?;
        Ok(Runtime {
            name: name.to_string(),
            bin,
            root,
            errors: tempfile::tempfile()?,
        })
    }

    /// `<bin> --root <root> args…`, stdio to /dev/null and the error file:
    /// never a pipe, which a detached container would hold open.
    pub fn cmd(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.errors.try_clone()?);
        Ok(c)
    }

    /// Run a command to completion; an error carries the runtime's stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let status = self
            .cmd(args)?
            .status()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        if !status.success() {
            let mut f = self.errors.try_clone()?;
            let mut text = String::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_string(&mut text)?;
            let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            bail!("{} {args:?}: {status}: {tail}", self.name);
        }
        Ok(())
    }

    /// Container ids that still have a state dir in this root.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.leftovers() {
            let _ = self.run(&["delete", "--force", &id]);
        }
        reap_all(Duration::from_secs(2));
    }
}

/// Become the subreaper of everything we start, so detached containers
/// (and keepers) are reparented to us and their CPU time can be counted.
pub fn set_subreaper() -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!(
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// User+system CPU of all reaped children so far.
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Reap every child that has exited; wait up to `patience` for children
/// that are still exiting. Returns how many live children remain.
pub fn reap_all(patience: Duration) -> usize {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child, non-blocking.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r < 0 {
            return 0; // ECHILD: nobody left
        }
        if std::time::Instant::now() >= deadline {
            return live_children();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Our live children, from /proc/self/task/*/children.
pub fn live_children() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|c| c.split_whitespace().count())
        .sum()
}

/// Wait for `pid` (our child or reparented to us) to exit.
pub fn wait_pid(pid: i32) -> anyhow::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on one pid we know.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            bail!("waitpid {pid}: {e}");
        }
    }
}

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
