//! Attacks from inside a container (issue 2, "Security"), each named after
//! what it defends. Every test runs the attack for real against a container
//! made by `rpaas-run` and checks the host afterwards.
//! Run: `cargo test --test runtime_attacks`.

mod common;
mod runtime_support;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use runtime_support::*;
use serde_json::json;

/// Host directories opened as fds 3..=10 of the runtime (a careless caller
/// leaking them is what CVE-2024-21626 exploited through process.cwd).
fn leak_host_dirs(cmd: &mut Command) -> Vec<std::fs::File> {
    let dirs: Vec<std::fs::File> = [
        "/",
        "/etc",
        "/root",
        "/run",
        "/tmp",
        "/usr",
        "/var",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(|d| std::fs::File::open(d).expect("open host dir"))
    .collect();
    let pairs = dirs
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_raw_fd(), 3 + i as i32))
        .collect();
    pass_fds(cmd, pairs);
    dirs
}

fn cgroup_dirs(id: &str) -> Vec<String> {
    std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
        .map(|e| e.path().join(format!("rpaas-{id}")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn cve_2024_21626_cwd_through_a_leaked_fd_fails_cleanly() {
    for n in 3..=10 {
        let mut cfg = default_config(&["sh", "-c", "ls; echo escaped"]);
        cfg["process"]["cwd"] = format!("/proc/self/fd/{n}").into();
        let c = Ctr::new("cwd-leak", &cfg);
        let mut cmd = Command::new(rpaas_run_bin());
        cmd.arg("--root")
            .arg(c.root())
            .args(["run", "--bundle"])
            .arg(c.bundle.path())
            .arg(&c.id);
        let _dirs = leak_host_dirs(&mut cmd);
        let out = run_to_files(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "cwd /proc/self/fd/{n} ran: {stdout}");
        assert!(!stdout.contains("escaped"), "{stdout}");
        assert!(
            err.contains("process.cwd"),
            "fd {n}: the error names the field: {err}"
        );
        assert!(!c.root().join(&c.id).exists(), "no container left");
        assert!(cgroup_dirs(&c.id).is_empty(), "no cgroup left");
    }
}

/// `exec --cwd /proc/self/fd/N` from a caller that leaks host directories:
/// the exec'd process would start in a host directory.
#[test]
fn cve_2024_21626_exec_cwd_through_a_leaked_fd_fails_cleanly() {
    let c = Ctr::new("exec-cwd", &default_config(&["sleep", "1000"]));
    c.start(&[]);
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let mut cmd = Command::new(rpaas_run_bin());
        cmd.arg("--root").arg(c.root()).args([
            "exec",
            "--cwd",
            &cwd,
            &c.id,
            "sh",
            "-c",
            "ls; echo escaped",
        ]);
        let _dirs = leak_host_dirs(&mut cmd);
        let out = run_to_files(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "exec with cwd {cwd} ran: {stdout}");
        assert!(!stdout.contains("escaped"), "{stdout}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("process.cwd"), "{err}");
    }
    let ps: Vec<i64> =
        serde_json::from_str(&rpaas_ok(c.root(), &["ps", "--format", "json", &c.id])).unwrap();
    assert_eq!(ps.len(), 1, "only init runs: {ps:?}");
}

/// What the host sees of a process's fds: only stdio, nothing of the
/// runtime and nothing the caller leaked (fds 3..=10 are host directories).
#[test]
fn no_host_fd_reaches_the_container() {
    let c = Ctr::new("fds", &default_config(&["sleep", "1000"]));
    let mut cmd = Command::new(rpaas_run_bin());
    cmd.arg("--root")
        .arg(c.root())
        .args(["create", "--bundle"])
        .arg(c.bundle.path())
        .arg(&c.id);
    let _dirs = leak_host_dirs(&mut cmd);
    let out = run_to_files(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rpaas_ok(c.root(), &["start", &c.id]);
    let pid = c.pid();
    c.wait_until("init runs sleep", || {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("busybox"))
    });
    let nums: Vec<i32> = fds_of(pid).iter().map(|f| f.0).collect();
    assert_eq!(nums, [0, 1, 2], "init: {:?}", fds_of(pid));

    let dir = host_dir("fds");
    let pid_file = dir.path().join("exec.pid");
    let mut cmd = Command::new(rpaas_run_bin());
    cmd.arg("--root")
        .arg(c.root())
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args([&c.id, "sleep", "999"]);
    let _dirs = leak_host_dirs(&mut cmd);
    let out = run_to_files(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let epid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.wait_until("exec runs sleep", || {
        std::fs::read_link(format!("/proc/{epid}/exe")).is_ok_and(|p| p.ends_with("busybox"))
    });
    let nums: Vec<i32> = fds_of(epid).iter().map(|f| f.0).collect();
    assert_eq!(nums, [0, 1, 2], "exec'd process: {:?}", fds_of(epid));

    // And from inside: the container's own view of a fresh process.
    // (no pipeline: the shell would hold pipe fds while ls looks; "; true"
    // keeps sh from exec'ing ls, whose own directory fd would show)
    let inside = c.sh("ls /proc/$$/fd; true");
    assert_eq!(
        inside.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "inside"
    );
}

/// Copy the shared libraries a dynamic binary needs into the rootfs (the
/// busybox rootfs has none), so the runtime binary can run inside.
fn copy_libs(bin: &Path, rootfs: &Path) {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new);
        if let Some(p) = path {
            let dest = rootfs.join(p.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(p, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", p.display()));
        }
    }
}

/// The attacker, pid 1 of the container: every process whose exe is not
/// busybox is a runtime that entered; open its /proc/<pid>/exe, keep it,
/// and try to reopen it for writing through /proc/self/fd (the
/// CVE-2019-5736 exploit) while it runs and after it is gone.
const ATTACKER: &str = r#"
held=" "
while [ ! -e /tmp/stop ]; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$held" in *" $p "*) continue;; esac
    exe=$(readlink $d/exe) || continue
    case "$exe" in */busybox) continue;; esac
    held="$held$p "
    (
      exec 3<"$d/exe" || { echo "open-refused $p" >> /tmp/seen; exit; }
      echo "opened $p $exe" >> /tmp/seen
      sha256sum /proc/self/fd/3 >> /tmp/sha
      n=0
      while [ $n -lt 10 ]; do
        if (echo pwned >> /proc/self/fd/3) 2>>/tmp/errs; then echo "WROTE $p" >> /tmp/seen; fi
        [ -e /tmp/exited ] && n=$((n+1))
        sleep 0.05
      done
      echo "done $p" >> /tmp/seen
    ) &
  done
done
"#;

#[test]
fn cve_2019_5736_runtime_binary_cannot_be_overwritten_from_inside() {
    // A private copy of the runtime does the exec: no other test runs this
    // file (another user would make writes fail with ETXTBSY and hide a
    // regression), and a successful attack could not damage the shared build.
    let copy_dir = host_dir("exe-copy");
    let bin = copy_dir.path().join("rpaas-run");
    std::fs::copy(rpaas_run_bin(), &bin).unwrap();
    let before = sha256_file(&bin);
    let c = Ctr::new("exe", &default_config(&["sh", "-c", ATTACKER]));
    let rootfs = c.bundle.rootfs();
    copy_libs(&bin, &rootfs);
    let script = |name: &str, text: &str| {
        std::fs::write(rootfs.join("bin").join(name), text).unwrap();
        std::fs::set_permissions(
            rootfs.join("bin").join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    };
    // The classic entry: a file in the image whose interpreter is
    // /proc/self/exe. Were the runtime the exe of the process that execs it,
    // this would run `rpaas-run --root /bin/evil update --resources -`
    // inside, which blocks reading stdin: the attacker would get all the time
    // it needs. The interpreter it does get is the sealed rpaas-dmz, which
    // fails to exec "--root" and exits.
    script("evil", "#!/proc/self/exe --root\n");
    // And one that loops through the dmz for ever (dmz -> evil-loop -> dmz),
    // so that the attacker surely holds the dmz and tries to write it.
    script("evil-loop", "#!/proc/self/exe /bin/evil-loop\n");
    c.start(&[]);
    let seen = || std::fs::read_to_string(rootfs.join("tmp/seen")).unwrap_or_default();

    let out = tempfile::tempfile().unwrap();
    let mut exec = Command::new(&bin)
        .arg("--root")
        .arg(c.root())
        .args([
            "exec",
            &c.id,
            "/bin/evil",
            "update",
            "--resources",
            "-",
            "rpaas-none",
        ])
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out.try_clone().unwrap())
        .spawn()
        .unwrap();
    c.wait_until("the classic entry to end or be caught", || {
        seen().contains("opened") || exec.try_wait().unwrap().is_some()
    });
    drop(exec.stdin.take());
    let _ = exec.wait();

    let status = Command::new(&bin)
        .arg("--root")
        .arg(c.root())
        .args(["exec", "--detach", &c.id, "/bin/evil-loop"])
        .status()
        .unwrap();
    assert!(status.success(), "exec --detach /bin/evil-loop: {status}");
    c.wait_until("the attacker to hold the dmz", || {
        seen().contains("memfd:rpaas-dmz")
    });
    std::fs::write(rootfs.join("tmp/exited"), "").unwrap();
    c.wait_until("the attacker to finish", || seen().contains("done"));
    std::fs::write(rootfs.join("tmp/stop"), "").unwrap();

    let seen = seen();
    let errs = std::fs::read_to_string(rootfs.join("tmp/errs")).unwrap_or_default();
    println!("attacker saw:\n{seen}write errors:\n{errs}");
    let held = std::fs::read_to_string(rootfs.join("tmp/sha")).unwrap_or_default();
    assert!(
        !held.contains(&before),
        "the attacker held the runtime binary itself: {held}"
    );
    assert!(
        !seen.contains("WROTE"),
        "an exe of a container process was written from inside:\n{seen}"
    );
    assert!(
        errs.lines().count() >= 10,
        "the attack really tried: {errs}"
    );
    assert_eq!(sha256_file(&bin), before, "{} changed", bin.display());
}

/// Init waiting for `start` still is the runtime (pre-execve, holding the
/// state fifo): it must be non-dumpable. The probe is what a CVE-2019-5736
/// attacker does first, readlink /proc/<pid>/exe, from a root process
/// without CAP_SYS_PTRACE but with every capability init has: the kernel
/// refuses it only for a non-dumpable process. Control: the same process
/// after `start` (execve makes it dumpable) is readable by the same probe.
#[test]
fn init_is_not_dumpable_while_it_waits_for_start() {
    let probe = |pid: i32| {
        let out = Command::new("setpriv")
            .args(["--bounding-set", "-sys_ptrace", "--", "readlink"])
            .arg(format!("/proc/{pid}/exe"))
            .stderr(Stdio::null())
            .output()
            .expect("setpriv");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let c = Ctr::new("dumpable", &default_config(&["sleep", "1000"]));
    let b = c.bundle_arg();
    rpaas_ok(c.root(), &["create", "--bundle", &b, &c.id]);
    let pid = c.pid();
    assert_eq!(probe(pid), "", "init of a created container is dumpable");
    rpaas_ok(c.root(), &["start", &c.id]);
    c.wait_until("init execs sleep", || probe(pid) == "/bin/busybox");
}

/// An image whose /dev/null is not the device (symlink to a file it owns,
/// or a plain file), with no /dev tmpfs: masks must still be the real
/// /dev/null, never something the container controls.
#[test]
fn masked_paths_are_the_real_dev_null() {
    // /proc/kcore is in the default maskedPaths; this host's kernel may lack it.
    let kcore = Path::new("/proc/kcore").exists();
    if !kcore {
        println!(
            "NOTE: no /proc/kcore on this kernel: checking /proc/timer_list and /proc/keys only"
        );
    }
    for planted in ["symlink", "file"] {
        let mut cfg = default_config(&[
            "sh",
            "-c",
            "for f in /proc/timer_list /proc/keys /proc/kcore; do [ -e $f ] || continue; \
               echo $f $(cat $f | wc -c) $(stat -c '%t:%T' $f); echo overwrite > $f; done",
        ]);
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev");
        let c = Ctr::new("devnull", &cfg);
        let r = c.bundle.rootfs();
        std::fs::write(r.join("etc/rpaas-target"), "planted-content\n").unwrap();
        match planted {
            "symlink" => {
                std::os::unix::fs::symlink("/etc/rpaas-target", r.join("dev/null")).unwrap()
            }
            _ => std::fs::write(r.join("dev/null"), "planted-content\n").unwrap(),
        }
        let out = c.run_ok(&[]);
        let mut want = vec!["/proc/timer_list 0 1:3", "/proc/keys 0 1:3"];
        if kcore {
            want.push("/proc/kcore 0 1:3");
        }
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            want,
            "{planted}: masked by the real /dev/null"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/rpaas-target")).unwrap(),
            "planted-content\n"
        );
        if planted == "file" {
            assert_eq!(
                std::fs::read_to_string(r.join("dev/null")).unwrap(),
                "planted-content\n"
            );
        }
    }
}

/// CVE-2022-29162: `exec` without --cap must not hand the container's
/// inheritable (and so ambient) capabilities to the new process.
#[test]
fn cve_2022_29162_exec_gets_no_inheritable_caps() {
    let mut cfg = default_config(&["sleep", "1000"]);
    cfg["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"]
    });
    let c = Ctr::new("inh", &cfg);
    c.start(&[]);
    let init = c.sh("grep -E '^Cap(Inh|Amb):' /proc/1/status");
    assert_ne!(
        cap_line(&init, "CapInh"),
        0,
        "the config's inheritable set is in effect for init: {init}"
    );
    let mine = c.sh("grep -E '^Cap(Inh|Amb|Prm):' /proc/self/status");
    assert_eq!(cap_line(&mine, "CapInh"), 0, "{mine}");
    assert_eq!(cap_line(&mine, "CapAmb"), 0, "{mine}");
    // A non-root exec would otherwise keep the ambient caps across execve.
    let user = rpaas_ok(
        c.root(),
        &[
            "exec",
            "--user",
            "1000:1000",
            &c.id,
            "grep",
            "-E",
            "^Cap(Inh|Amb|Prm|Eff):",
            "/proc/self/status",
        ],
    );
    for key in ["CapInh", "CapAmb", "CapPrm", "CapEff"] {
        assert_eq!(cap_line(&user, key), 0, "{key}: {user}");
    }
}

/// Symlinks planted in the image as mount destinations, pointing at host
/// paths (absolute, and relative with many ".."): the mounts must land
/// inside the rootfs, and the host directories stay untouched.
#[test]
fn symlinked_mount_destination_stays_in_the_rootfs() {
    let canary_a = host_dir("canary-a");
    let canary_b = host_dir("canary-b");
    let canary_c = host_dir("canary-c");
    for d in [&canary_a, &canary_b, &canary_c] {
        std::fs::write(d.path().join("canary"), "host\n").unwrap();
    }
    let src = host_dir("mnt-src");
    std::fs::write(src.path().join("s-file"), "bound\n").unwrap();
    let a = canary_a.path().display().to_string();
    let b = canary_b.path().display().to_string();
    let host_untouched = || {
        for d in [&canary_a, &canary_b, &canary_c] {
            let names: Vec<String> = std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, ["canary"], "{} was touched", d.path().display());
        }
        let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !host_mounts.contains("rpaas-canary"),
            "a mount reached the host:\n{host_mounts}"
        );
    };

    let mut cfg = default_config(&[
        "sh",
        "-c",
        "echo pwned > /evil/pwned && echo wrote-evil; ls /evil2; ls /evil; \
         grep -c rpaas-canary /proc/self/mountinfo",
    ]);
    cfg["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        json!({"destination": "/evil2", "type": "bind", "source": src.path(), "options": ["bind"]}),
    ]);
    let c = Ctr::new("symlink", &cfg);
    let r = c.bundle.rootfs();
    // The image has directories at the same paths, so the links resolve inside it.
    for p in [&a, &b] {
        std::fs::create_dir_all(r.join(p.trim_start_matches('/'))).unwrap();
    }
    std::os::unix::fs::symlink(&a, r.join("evil")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../../..{b}"), r.join("evil2")).unwrap();
    let out = c.run_ok(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "wrote-evil",
        "the tmpfs is where /evil leads inside: {out}"
    );
    assert_eq!(
        lines[1], "s-file",
        "the bind is where /evil2 leads inside: {out}"
    );
    assert_eq!(lines[2], "pwned", "{out}");
    assert_eq!(
        lines[3], "2",
        "both mounts are in the container's tree: {out}"
    );
    host_untouched();

    // A link to a host path the image does not have: refused with the
    // field named, or made inside the rootfs; never the host's directory.
    let mut cfg = default_config(&["sh", "-c", "echo pwned > /evil3/pwned; ls /evil3"]);
    cfg["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/evil3", "type": "bind", "source": src.path(), "options": ["bind"]}),
    );
    let c = Ctr::new("symlink-dangling", &cfg);
    std::os::unix::fs::symlink(canary_c.path(), c.bundle.rootfs().join("evil3")).unwrap();
    let out = c.run(&[]);
    if out.status.success() {
        assert!(String::from_utf8_lossy(&out.stdout).contains("s-file"));
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mounts[7].destination"), "{err}");
    }
    host_untouched();
}
