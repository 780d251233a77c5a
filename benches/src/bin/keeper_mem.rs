//! keeper_mem (issue 3): memory per container of rpaas-run's keeper beside
//! podman's conmon, each monitoring 20 running `sleep` containers.
//!
//! RSS and PSS come from /proc/<pid>/smaps_rollup. PSS splits pages shared
//! between processes (the binary, libraries) among them, so it is the fair
//! per-container cost when 20 monitors run side by side.
//!
//! The keepers: `rpaas-run run -d --keeper` (the pid is `keeperPid` in
//! `rpaas-run state`). The conmons: an isolated podman (its own storage, run
//! root, tmpdir and cgroup parent, all named rpaas-*; `--network none`;
//! `--ulimit` within the host's hard limits, as the podman tests do) running
//! the same busybox image; the pid is `.State.ConmonPid`. podman drives runc
//! by default (RPAAS_BENCH_PODMAN_RUNTIME to change it): conmon's memory does
//! not depend on the runtime. Everything is removed at the end.
//!
//! Run as root: `cargo build --release --bin rpaas-run &&
//! cargo run --release -p rpaas-benches --bin keeper_mem`.

#[path = "../runtime_support.rs"]
mod runtime_support;

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use runtime_support::*;

const N: usize = 20;
const IMAGE: &str = "localhost/rpaas-busybox:bench";

/// Rss and Pss of `pid` in KiB.
fn rss_pss(pid: i32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} in {path}"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// An isolated podman installation (the podman tests' setup), removed on drop.
struct Podman {
    store: tempfile::TempDir,
    run: tempfile::TempDir,
    cgroup_parent: String,
    runtime: String,
}

impl Podman {
    fn new(runtime: String) -> anyhow::Result<Podman> {
        Ok(Podman {
            store: tempfile::Builder::new()
                .prefix("rpaas-bench-podman-store")
                .tempdir_in("/var/tmp")?,
            run: tempfile::Builder::new()
                .prefix("rpaas-bench-podman-run")
                .tempdir_in("/run")?,
            cgroup_parent: format!("/rpaas-bench-podman-{}", std::process::id()),
            runtime,
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let (s, r) = (self.store.path(), self.run.path());
        let mut c = Command::new("podman");
        c.arg("--root").arg(s.join("graph"));
        c.arg("--runroot").arg(r.join("runroot"));
        c.arg("--tmpdir").arg(r.join("tmp"));
        c.arg("--network-config-dir").arg(s.join("networks"));
        c.arg("--volumepath").arg(s.join("volumes"));
        c.args(["--storage-driver", "vfs", "--events-backend", "file"]);
        c.args(["--cgroup-manager", "cgroupfs", "--runtime", &self.runtime]);
        c.args(args);
        // Files, not pipes: a detached container would hold a pipe open.
        c.stdin(Stdio::null());
        c
    }

    /// Run podman; stdout on success, stderr in the error.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out_f = tempfile::tempfile()?;
        let err_f = tempfile::tempfile()?;
        let status = self
            .cmd(args)
            .stdout(out_f.try_clone()?)
            .stderr(err_f.try_clone()?)
            .status()
            .context("spawn podman")?;
        let read = |mut f: std::fs::File| -> anyhow::Result<String> {
            use std::io::{Read, Seek};
            let mut s = String::new();
            f.rewind()?;
            f.read_to_string(&mut s)?;
            Ok(s)
        };
        if !status.success() {
            bail!("podman {args:?}: {status}: {}", read(err_f)?.trim());
        }
        read(out_f)
    }

    fn import(&self) -> anyhow::Result<()> {
        let rootfs = self.store.path().join("image-rootfs");
        busybox_rootfs(&rootfs)?;
        let tarball = self.store.path().join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()?;
        if !st.success() {
            bail!("tar of the image rootfs failed: {st}");
        }
        self.ok(&["import", &tarball.to_string_lossy(), IMAGE])?;
        std::fs::remove_dir_all(&rootfs)?;
        Ok(())
    }

    /// `podman run -d … sleep 1000`; returns conmon's pid.
    fn start_sleeper(&self, name: &str) -> anyhow::Result<i32> {
        let nofile = format!("nofile={}", hard_limit(libc::RLIMIT_NOFILE));
        let nproc = format!("nproc={}", hard_limit(libc::RLIMIT_NPROC).min(4096));
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--ulimit",
            &nofile,
            "--ulimit",
            &nproc,
            "--cgroup-parent",
            &self.cgroup_parent,
            IMAGE,
            "sleep",
            "1000",
        ])?;
        let pid = self.ok(&["inspect", "--format", "{{.State.ConmonPid}}", name])?;
        pid.trim()
            .parse()
            .with_context(|| format!("conmon pid {pid:?}"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.ok(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.ok(&["rmi", "--all", "--force"]);
        let _ = self.ok(&["system", "reset", "--force"]);
        unmount_under(&[self.store.path(), self.run.path()]);
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(resource, &mut rl) };
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
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

/// rmdir `parent` (and the empty cgroups under it) in every hierarchy.
fn remove_cgroup_tree(parent: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = h.path().join(parent.trim_start_matches('/'));
        if d.exists() {
            rmdir_tree(&d);
        }
    }
}

/// Private_Dirty KiB of `pid` per mapping (file path, or [heap], [stack],
/// [anon]), largest first: where a monitor's own memory goes.
fn private_dirty_by_mapping(pid: i32) -> anyhow::Result<Vec<(u64, String)>> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // address perms offset dev inode [path]
            current = f.nth(4).unwrap_or("[anon]").to_string();
        } else if first == "Private_Dirty:" {
            *by.entry(current.clone()).or_default() +=
                f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut v: Vec<(u64, String)> = by
        .into_iter()
        .map(|(k, v)| (v, k))
        .filter(|(v, _)| *v > 0)
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    Ok(v)
}

/// 20 keeper-mode containers; the keepers' (RSS, PSS) in KiB.
fn keepers(rt: &Runtime, bundle: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    let b = bundle.to_string_lossy();
    let ids: Vec<String> = (0..N).map(|i| format!("rpaas-bench-keeper-{i}")).collect();
    for id in &ids {
        rt.run(&["run", "--detach", "--keeper", "--bundle", &b, id])?;
    }
    let mut pids = Vec::new();
    for id in &ids {
        pids.push(keeper_pid(rt, id)?);
    }
    let mem = pids
        .iter()
        .map(|&p| rss_pss(p))
        .collect::<anyhow::Result<Vec<_>>>();
    if let Some(&p) = pids.first() {
        let parts = private_dirty_by_mapping(p)?;
        let top: Vec<String> = parts
            .iter()
            .take(6)
            .map(|(kb, m)| format!("{m} {kb}"))
            .collect();
        println!(
            "one keeper's Private_Dirty KiB by mapping (\"/\" is the binary): {}",
            top.join(", ")
        );
    }
    for id in &ids {
        rt.run(&["delete", "--force", id])?;
    }
    mem
}

/// A temp file for a command's stdout and a handle to read it back.
fn tempfile_stdout() -> anyhow::Result<(std::fs::File, std::fs::File)> {
    let f = tempfile::tempfile()?;
    Ok((f.try_clone()?, f))
}

/// `keeperPid` from `rpaas-run state ID`.
fn keeper_pid(rt: &Runtime, id: &str) -> anyhow::Result<i32> {
    use std::io::{Read, Seek};
    let (w, mut r) = tempfile_stdout()?;
    let st = rt.cmd(&["state", id])?.stdout(w).status()?;
    if !st.success() {
        bail!("rpaas-run state {id}: {st}");
    }
    let mut s = String::new();
    r.rewind()?;
    r.read_to_string(&mut s)?;
    let v: serde_json::Value =
        serde_json::from_str(&s).with_context(|| format!("state json {s:?}"))?;
    v["keeperPid"]
        .as_i64()
        .map(|p| p as i32)
        .with_context(|| format!("no keeperPid in the state of {id}: {s}"))
}

fn conmons(runtime: String) -> anyhow::Result<Vec<(u64, u64)>> {
    let p = Podman::new(runtime)?;
    p.import()?;
    let mut pids = Vec::new();
    for i in 0..N {
        pids.push(p.start_sleeper(&format!("rpaas-bench-conmon-{i}"))?);
    }
    pids.iter().map(|&pid| rss_pss(pid)).collect()
}

fn report(name: &str, mem: &[(u64, u64)]) -> (u64, u64) {
    let rss: Vec<u64> = mem.iter().map(|m| m.0).collect();
    let pss: Vec<u64> = mem.iter().map(|m| m.1).collect();
    let (r, p) = (median_u64(&rss), median_u64(&pss));
    println!(
        "{name:<8} {:>3} monitors: median RSS {r:>6} KiB, median PSS {p:>6} KiB",
        mem.len()
    );
    (r, p)
}

fn main() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("keeper_mem needs root");
    }
    set_subreaper()?;
    let scratch = Scratch::new()?;
    let bundles = Bundles::new(scratch.path())?;
    let b_sleep = bundles.bundle("sleep", &["/bin/sleep", "1000"])?;
    let rt = Runtime::new("rpaas-run", find_rpaas_run()?, scratch.path())?;
    let podman_rt = std::env::var("RPAAS_BENCH_PODMAN_RUNTIME").unwrap_or_else(|_| "runc".into());

    let k = keepers(&rt, &b_sleep)?;
    let (kr, kp) = report("keeper", &k);
    let (cr, cp) = match (which("conmon"), which("podman")) {
        (Some(_), Some(_)) => report("conmon", &conmons(podman_rt)?),
        _ => {
            println!("conmon or podman missing: nothing to compare with");
            return Ok(());
        }
    };
    println!(
        "keeper/conmon: RSS {:.2}x, PSS {:.2}x",
        kr as f64 / cr as f64,
        kp as f64 / cp as f64
    );
    let met = if kp <= cp { "MET" } else { "NOT MET" };
    println!("target keeper PSS <= conmon PSS: {met}");
    Ok(())
}
