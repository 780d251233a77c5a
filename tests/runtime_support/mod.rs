//! Helpers shared by `runtime_features.rs` and `runtime_attacks.rs`: a
//! container that is force-deleted when the test ends (also on panic), and
//! small probes of what the host sees.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// One container under its own state root; `delete --force` on drop so a
/// failing test leaves no process, cgroup or state behind.
pub struct Ctr {
    pub root: tempfile::TempDir,
    pub id: String,
    pub bundle: Bundle,
}

impl Ctr {
    pub fn new(prefix: &str, cfg: &serde_json::Value) -> Ctr {
        Ctr {
            root: tempfile::Builder::new()
                .prefix("rpaas-test-root")
                .tempdir_in("/run")
                .expect("tempdir in /run"),
            id: unique_id(&format!("rpaas-{prefix}")),
            bundle: Bundle::new(cfg),
        }
    }
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    pub fn bundle_arg(&self) -> String {
        self.bundle
            .path()
            .to_str()
            .expect("utf-8 bundle path")
            .to_string()
    }
    /// `rpaas-run --root R <args…>` (the id is not added).
    pub fn cmd(&self, args: &[&str]) -> Output {
        rpaas(self.root(), args)
    }
    /// `rpaas-run run --bundle B [extra…] ID`: stdout, stderr and the exit code.
    pub fn run(&self, extra: &[&str]) -> Output {
        let b = self.bundle_arg();
        let mut args = vec!["run", "--bundle", b.as_str()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        rpaas(self.root(), &args)
    }
    /// Like [`Ctr::run`], panicking with stderr unless it exits 0; returns stdout.
    pub fn run_ok(&self, extra: &[&str]) -> String {
        let out = self.run(extra);
        assert!(
            out.status.success(),
            "run {} failed ({}): {}{}",
            self.id,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// create + start; returns init's host pid.
    pub fn start(&self, extra: &[&str]) -> i32 {
        let b = self.bundle_arg();
        let mut args = vec!["create", "--bundle", b.as_str()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        rpaas_ok(self.root(), &args);
        rpaas_ok(self.root(), &["start", &self.id]);
        self.pid()
    }
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&rpaas_ok(self.root(), &["state", &self.id])).expect("state json")
    }
    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().expect("pid") as i32
    }
    /// `exec ID sh -c SCRIPT`: stdout (panics on failure).
    pub fn sh(&self, script: &str) -> String {
        rpaas_ok(self.root(), &["exec", &self.id, "sh", "-c", script])
    }
    /// Poll (up to ~20 s, a hang guard, not a timing assertion) until `f` holds.
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        wait_until(what, &mut f)
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = rpaas(self.root(), &["delete", "--force", &self.id]);
    }
}

/// Poll until `f` holds; panics after ~20 s (a hang guard only).
pub fn wait_until(what: &str, f: &mut dyn FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("gave up waiting for {what}");
}

/// The host directory of a container process's cgroup in one v1 controller
/// (from /proc/<pid>/cgroup), e.g. "memory" → /sys/fs/cgroup/memory/rpaas/<id>.
pub fn v1_cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctrls.split(',').any(|c| c == controller) {
            let mount = std::fs::read_dir("/sys/fs/cgroup")
                .expect("cgroup root")
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().split(',').any(|c| c == controller))
                        .unwrap_or(false)
                })
                .expect("v1 hierarchy mounted");
            return mount.join(path.trim_start_matches('/'));
        }
    }
    panic!("pid {pid} has no {controller} cgroup:\n{text}");
}

/// A field of /proc/<pid>/status, e.g. "State" or "Uid".
pub fn proc_status(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// A host temp dir named with "rpaas" (removed on drop).
pub fn host_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rpaas-{prefix}"))
        .tempdir()
        .expect("tempdir")
}

/// sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The value of a `CapXxx:` line of /proc/self/status printed by a container.
pub fn cap_line(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    u64::from_str_radix(line.trim(), 16).expect("hex caps")
}

/// Make the child's fds `targets[i]` copies of `sources[i]` (inheritable).
pub fn pass_fds(cmd: &mut Command, pairs: Vec<(i32, i32)>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only dup2/fcntl (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, (src, _)) in pairs.iter().enumerate() {
                if libc::dup2(*src, 200 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (_, dst)) in pairs.iter().enumerate() {
                if libc::dup2(200 + i as i32, *dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(200 + i as i32);
            }
            Ok(())
        });
    }
}

/// The fds of a host process: number → what it points to.
pub fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/pid/fd")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            Some((n, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect();
    v.sort();
    v
}
