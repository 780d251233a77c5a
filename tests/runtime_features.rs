//! One integration test per feature of issue 2 (Rootfs, Process,
//! Namespaces, cgroups, the CLI verbs): each runs a real container on a
//! busybox rootfs and checks what the process sees, so that it fails when the
//! runtime ignores the setting. Run: `cargo test --test runtime_features`.

mod common;
mod runtime_support;

use std::path::Path;
use std::process::Command;

use common::*;
use runtime_support::*;
use serde_json::{json, Value};

fn sh_config(script: &str) -> Value {
    default_config(&["sh", "-c", script])
}

fn push_mount(cfg: &mut Value, m: Value) {
    cfg["mounts"].as_array_mut().expect("mounts").push(m);
}

/// A tmpfs mounted on the host, unmounted on drop.
struct HostMount(std::path::PathBuf);

impl HostMount {
    fn tmpfs(at: &Path) -> HostMount {
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount tmpfs on the host");
        HostMount(at.to_path_buf())
    }
    /// `at` bound onto itself and made shared: this host's "/" is private, so
    /// without this no propagation would show inside a container.
    fn shared(at: &Path) -> HostMount {
        use nix::mount::MsFlags;
        nix::mount::mount(Some(at), at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .expect("bind on the host");
        let m = HostMount(at.to_path_buf());
        nix::mount::mount(
            None::<&str>,
            at,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .expect("make shared");
        m
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Optional fields (shared:N, master:N) of the mountinfo line for `mountpoint`.
fn propagation_of(mountinfo: &str, mountpoint: &str) -> String {
    let line = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(mountpoint))
        .unwrap_or_else(|| panic!("{mountpoint} not in mountinfo:\n{mountinfo}"));
    line.split(" - ")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(6)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn mounts_bind_rbind_ro_flags_tmpfs_file_and_propagation() {
    let src = host_dir("mnt-src");
    let _shared = HostMount::shared(src.path());
    std::fs::write(src.path().join("hello"), "from-host\n").unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    let _sub = HostMount::tmpfs(&src.path().join("sub"));
    std::fs::write(src.path().join("sub/inner"), "submount\n").unwrap();
    let s = src.path().to_str().unwrap();

    let mut cfg = sh_config(
        "cat /mnt/ro/hello; touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused; \
         cat /mnt/rbind/sub/inner 2>/dev/null || echo rbind-missing; \
         echo bind-sub-entries $(ls /mnt/bind/sub | wc -l); \
         stat -c 'tmp-mode %a' /mnt/tmp; grep ' /mnt/tmp ' /proc/mounts; \
         cp /bin/busybox /mnt/tmp/bb && { /mnt/tmp/bb true 2>/dev/null && echo exec-allowed || echo exec-refused; }; \
         cat /etc/rpaas-file; stat -c 'file-type %F' /etc/rpaas-file; \
         cat /proc/self/mountinfo",
    );
    for m in [
        json!({"destination": "/mnt/ro", "type": "bind", "source": s, "options": ["bind", "ro"]}),
        json!({"destination": "/mnt/rbind", "type": "bind", "source": s, "options": ["rbind"]}),
        json!({"destination": "/mnt/bind", "type": "bind", "source": s, "options": ["bind"]}),
        json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "noexec", "size=8m", "mode=1770"]}),
        json!({"destination": "/etc/rpaas-file", "type": "bind", "source": format!("{s}/hello"), "options": ["bind", "ro"]}),
        json!({"destination": "/mnt/shared", "type": "bind", "source": s, "options": ["rbind", "rshared"]}),
        json!({"destination": "/mnt/private", "type": "bind", "source": s, "options": ["rbind", "rprivate"]}),
    ] {
        push_mount(&mut cfg, m);
    }
    let c = Ctr::new("mounts", &cfg);
    let out = c.run_ok(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-host", "{out}");
    assert_eq!(
        lines[1], "ro-refused",
        "a ro bind mount is read-only:\n{out}"
    );
    assert_eq!(lines[2], "submount", "rbind carries the submount:\n{out}");
    assert_eq!(
        lines[3], "bind-sub-entries 0",
        "a plain bind does not:\n{out}"
    );
    assert_eq!(lines[4], "tmp-mode 1770", "{out}");
    let opts = lines[5].split_whitespace().nth(3).unwrap_or_default();
    for want in ["nosuid", "nodev", "noexec", "size=8192k", "mode=1770"] {
        assert!(
            opts.split(',').any(|o| o == want),
            "/mnt/tmp lacks {want}: {}",
            lines[5]
        );
    }
    assert_eq!(lines[6], "exec-refused", "noexec tmpfs:\n{out}");
    assert_eq!(lines[7], "from-host", "file bind mount:\n{out}");
    assert_eq!(lines[8], "file-type regular file", "{out}");
    assert!(
        propagation_of(&out, "/mnt/shared").contains("shared:"),
        "rshared:\n{out}"
    );
    assert!(
        propagation_of(&out, "/mnt/bind").contains("master:"),
        "a slave by default:\n{out}"
    );
    let private = propagation_of(&out, "/mnt/private");
    assert!(
        !private.contains("shared:") && !private.contains("master:"),
        "rprivate: {private:?}"
    );
    assert!(
        !std::path::Path::new(&format!("{s}/x")).exists(),
        "the ro mount was written through"
    );
}

#[test]
fn rootfs_propagation_is_applied_to_the_root() {
    for (prop, check) in [
        (
            "rprivate",
            &(|o: &str| !o.contains("shared:") && !o.contains("master:")) as &dyn Fn(&str) -> bool,
        ),
        ("rslave", &|o: &str| {
            o.contains("master:") && !o.contains("shared:")
        }),
        ("rshared", &|o: &str| o.contains("shared:")),
    ] {
        let mut cfg = sh_config("cat /proc/self/mountinfo");
        cfg["linux"]["rootfsPropagation"] = prop.into();
        let c = Ctr::new("rprop", &cfg);
        let _shared = HostMount::shared(c.bundle.path());
        let out = c.run_ok(&[]);
        let fields = propagation_of(&out, "/");
        assert!(check(&fields), "rootfsPropagation {prop}: / has {fields:?}");
    }
}

#[test]
fn readonly_root() {
    let mut cfg = sh_config("touch /rpaas-x 2>/dev/null && echo root-writable || echo root-refused; grep -E '^[^ ]+ / ' /proc/mounts");
    cfg["root"]["readonly"] = true.into();
    let c = Ctr::new("roroot", &cfg);
    let out = c.run_ok(&[]);
    assert!(out.starts_with("root-refused\n"), "{out}");
    let opts = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default();
    assert!(opts.split(',').any(|o| o == "ro"), "{out}");
    assert!(!c.bundle.rootfs().join("rpaas-x").exists());
}

#[test]
fn masked_and_readonly_paths() {
    let mut cfg = sh_config(
        "echo secret-bytes $(cat /etc/rpaas-secret | wc -c); echo secretdir-entries $(ls /etc/rpaas-secretdir | wc -l); \
         touch /etc/rpaas-rodir/x 2>/dev/null && echo rodir-writable || echo rodir-refused; \
         touch /etc/rpaas-ok && echo etc-writable; grep ' /proc/sys ' /proc/mounts",
    );
    cfg["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([json!("/etc/rpaas-secret"), json!("/etc/rpaas-secretdir")]);
    cfg["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc/rpaas-rodir"));
    let c = Ctr::new("masked", &cfg);
    let r = c.bundle.rootfs();
    std::fs::write(r.join("etc/rpaas-secret"), "top-secret\n").unwrap();
    std::fs::create_dir(r.join("etc/rpaas-secretdir")).unwrap();
    std::fs::write(r.join("etc/rpaas-secretdir/a"), "a").unwrap();
    std::fs::create_dir(r.join("etc/rpaas-rodir")).unwrap();
    let out = c.run_ok(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "secret-bytes 0", "{out}");
    assert_eq!(lines[1], "secretdir-entries 0", "{out}");
    assert_eq!(lines[2], "rodir-refused", "{out}");
    assert_eq!(
        lines[3], "etc-writable",
        "only the listed path is read-only:\n{out}"
    );
    let opts = lines[4].split_whitespace().nth(3).unwrap_or_default();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "/proc/sys (default readonlyPaths): {out}"
    );
}

#[test]
fn listed_devices_and_dev_symlinks() {
    let mut cfg = sh_config(
        "stat -c '%t %T %a %u %g %F' /dev/rpaas-null /dev/null; echo hi > /dev/rpaas-null && echo wrote-ok; \
         for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done",
    );
    cfg["linux"]["devices"] = json!([
        {"path": "/dev/rpaas-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 1000, "gid": 1001}
    ]);
    // The owner may write it (mode 620), as it would not with the defaults.
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let c = Ctr::new("devices", &cfg);
    let out = c.run_ok(&[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "1 3 620 1000 1001 character special file",
        "{out}"
    );
    assert_eq!(
        lines[1], "1 3 666 0 0 character special file",
        "default /dev/null:\n{out}"
    );
    assert_eq!(
        lines[2], "wrote-ok",
        "the owner writes it, the devices cgroup allows 1:3:\n{out}"
    );
    assert_eq!(
        &lines[3..8],
        [
            "fd /proc/self/fd",
            "stdin /proc/self/fd/0",
            "stdout /proc/self/fd/1",
            "stderr /proc/self/fd/2",
            "ptmx pts/ptmx"
        ],
        "{out}"
    );
}

/// An ext4 image on a loop device, mounted on the host; undone on drop.
struct LoopMount {
    dev: String,
    mnt: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopMount {
    fn new() -> LoopMount {
        let dir = host_dir("pin");
        let img = dir.path().join("rpaas-pin.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfs.ext4");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let m = LoopMount {
            dev,
            mnt,
            _dir: dir,
        };
        nix::mount::mount(
            Some(m.dev.as_str()),
            &m.mnt,
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount the loop device");
        m
    }
    /// Unmount on the host; true if the filesystem is then really gone (the
    /// device can be opened O_EXCL), false if a mount namespace still holds it.
    fn unmount_and_check_released(&self) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::empty());
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(&self.dev)
            .is_ok()
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// pivot_root detaches the host's mounts from the container's namespace;
/// `--no-pivot` (MS_MOVE + chroot) leaves them stacked under the rootfs.
/// Seen from the host: a filesystem mounted before the container started
/// and unmounted on the host afterwards is released only in the first case.
#[test]
fn no_pivot_moves_the_root_instead_of_pivoting() {
    for (extra, released) in [(&[][..], true), (&["--no-pivot"][..], false)] {
        let pin = LoopMount::new();
        let c = Ctr::new("pivot", &default_config(&["sleep", "1000"]));
        c.start(extra);
        assert!(
            c.sh("head -1 /etc/group").starts_with("root:x:0:"),
            "{extra:?}: the container sees its rootfs"
        );
        let mut freed = pin.unmount_and_check_released();
        if released && !freed {
            // Another test's container may be between clone and pivot_root right now.
            c.wait_until("the loop filesystem to be released", || {
                pin.unmount_and_check_released()
            });
            freed = true;
        }
        assert_eq!(
            freed, released,
            "{extra:?}: host mounts still held by the container"
        );
        drop(c);
    }
}

#[test]
fn hostname_and_domainname() {
    let mut cfg = sh_config("hostname; cat /proc/sys/kernel/domainname");
    cfg["hostname"] = "rpaas-host-a".into();
    cfg["domainname"] = "rpaas.example".into();
    let c = Ctr::new("uts", &cfg);
    assert_eq!(c.run_ok(&[]), "rpaas-host-a\nrpaas.example\n");
}

#[test]
fn env_cwd_user_groups_umask() {
    let mut cfg = sh_config("pwd; id -u; id -g; id -G; umask; echo $FOO; echo $HOME; cd /tmp && touch f-$$ && stat -c %a f-$$");
    cfg["process"]["cwd"] = "/home/app/rpaas-work".into();
    cfg["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("FOO=bar baz".into());
    cfg["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [1001, 2000], "umask": 0o27});
    let c = Ctr::new("user", &cfg);
    let out = c.run_ok(&[]);
    assert_eq!(
        out,
        "/home/app/rpaas-work\n1000\n1000\n1000 1001 2000\n0027\nbar baz\n/home/app\n640\n"
    );
}

fn limits_row(limits: &str, name: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {limits}"));
    let f: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (f[0].to_string(), f[1].to_string())
}

#[test]
fn rlimits_nofile_and_nproc() {
    let mut cfg = sh_config("cat /proc/self/limits");
    cfg["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88}
    ]);
    let c = Ctr::new("rlimits", &cfg);
    let out = c.run_ok(&[]);
    assert_eq!(
        limits_row(&out, "Max open files"),
        ("123".into(), "456".into()),
        "{out}"
    );
    assert_eq!(
        limits_row(&out, "Max processes"),
        ("77".into(), "88".into()),
        "{out}"
    );
}

const CHOWN: u64 = 1 << 0;
const KILL: u64 = 1 << 5;
const NET_BIND: u64 = 1 << 10;
const NET_RAW: u64 = 1 << 13;

/// All five sets, as a non-root user (so the kernel keeps exactly what the
/// runtime set: permitted and effective after execve are the ambient set),
/// compared with runc on the same bundle.
#[test]
fn five_capability_sets_and_no_new_privileges_off() {
    let mut cfg = sh_config("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status");
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    cfg["process"]["noNewPrivileges"] = false.into();
    cfg["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "effective": ["CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_NET_RAW"]
    });
    let c = Ctr::new("caps", &cfg);
    let out = c.run_ok(&[]);
    assert_eq!(
        cap_line(&out, "CapBnd"),
        CHOWN | KILL | NET_BIND | NET_RAW,
        "{out}"
    );
    assert_eq!(cap_line(&out, "CapInh"), KILL | NET_RAW, "{out}");
    assert_eq!(cap_line(&out, "CapAmb"), NET_RAW, "{out}");
    assert_eq!(cap_line(&out, "CapPrm"), NET_RAW, "{out}");
    assert_eq!(cap_line(&out, "CapEff"), NET_RAW, "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");

    assert_eq!(out, runc_output(c.bundle.path()), "same view as runc");

    // As root with noNewPrivileges, execve keeps permitted (and effective)
    // to what the runtime set, within bounding | inheritable.
    let mut cfg = sh_config("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status");
    cfg["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"],
        "inheritable": ["CAP_CHOWN"]
    });
    let c = Ctr::new("caps-root", &cfg);
    let out = c.run_ok(&[]);
    assert_eq!(cap_line(&out, "CapBnd"), CHOWN | KILL, "{out}");
    assert_eq!(cap_line(&out, "CapInh"), CHOWN, "{out}");
    assert_eq!(cap_line(&out, "CapPrm"), KILL, "{out}");
    assert_eq!(cap_line(&out, "CapEff"), KILL, "{out}");
    assert_eq!(cap_line(&out, "CapAmb"), 0, "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(out, runc_output(c.bundle.path()), "same view as runc");
}

/// stdout of `runc run` on the same bundle (a peer, for comparison).
fn runc_output(bundle: &Path) -> String {
    let peer_root = host_dir("runc-root");
    let peer = run_to_files(
        Command::new("runc")
            .arg("--root")
            .arg(peer_root.path())
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(unique_id("rpaas-runc")),
    );
    assert!(
        peer.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&peer.stderr)
    );
    String::from_utf8_lossy(&peer.stdout).into_owned()
}

#[test]
fn oom_score_adj() {
    let mut cfg = sh_config("cat /proc/self/oom_score_adj");
    cfg["process"]["oomScoreAdj"] = 345.into();
    let c = Ctr::new("oom", &cfg);
    assert_eq!(c.run_ok(&[]).trim(), "345");
}

#[test]
fn sysctls_in_ipc_and_net_namespaces() {
    let mut cfg = sh_config("cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/tcp_keepalive_time");
    cfg["linux"]["sysctl"] = json!({"kernel.shmmni": "1234", "net.ipv4.tcp_keepalive_time": "321"});
    let c = Ctr::new("sysctl", &cfg);
    assert_eq!(c.run_ok(&[]), "1234\n321\n");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time").unwrap();
    assert_ne!(host.trim(), "321", "the host's value is untouched");

    // A net.* key without an own network namespace would change the host's.
    let mut cfg = sh_config("true");
    cfg["linux"]["sysctl"] = json!({"net.ipv4.tcp_keepalive_time": "321"});
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    let c = Ctr::new("sysctl-bad", &cfg);
    let out = c.run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("linux.sysctl.net.ipv4.tcp_keepalive_time"),
        "{err}"
    );
    assert!(
        !c.root().join(&c.id).exists(),
        "nothing left of the refused container"
    );
}

#[test]
fn seccomp_errno_rule_makes_mkdir_fail() {
    let mut cfg = sh_config(
        "mkdir /tmp/rpaas-d 2>&1 && echo mkdir-ok; touch /tmp/rpaas-f && echo touch-ok; grep '^Seccomp:' /proc/self/status",
    );
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let c = Ctr::new("seccomp", &cfg);
    let out = c.run_ok(&[]);
    assert!(
        out.contains("Operation not permitted") && !out.contains("mkdir-ok"),
        "{out}"
    );
    assert!(
        out.contains("touch-ok"),
        "other syscalls are allowed: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!c.bundle.rootfs().join("tmp/rpaas-d").exists());
}

// ---------------------------------------------------------------- hooks

fn hook(dir: &Path, name: &str) -> Value {
    let d = dir.display();
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {d}/{name}.json; echo {name} >> {d}/order")],
           "env": ["PATH=/usr/bin:/bin"]})
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", p.display()))
}

#[test]
fn hooks_get_the_state_on_stdin_in_order() {
    let h = host_dir("hooks");
    // The hooks directory is also mounted at /hooks: startContainer runs inside the container.
    std::fs::set_permissions(
        h.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut cfg = default_config(&["sleep", "1000"]);
    push_mount(
        &mut cfg,
        json!({"destination": "/hooks", "type": "bind", "source": h.path(), "options": ["bind"]}),
    );
    let inside = Path::new("/hooks");
    cfg["hooks"] = json!({
        "prestart": [hook(h.path(), "prestart")],
        "createRuntime": [hook(h.path(), "createRuntime")],
        "createContainer": [hook(h.path(), "createContainer")],
        "startContainer": [hook(inside, "startContainer")],
        "poststart": [hook(h.path(), "poststart")],
        "poststop": [hook(h.path(), "poststop")]
    });
    let c = Ctr::new("hooks", &cfg);
    let b = c.bundle_arg();
    rpaas_ok(c.root(), &["create", "--bundle", &b, &c.id]);
    let pid = c.pid() as i64;
    let order = || std::fs::read_to_string(h.path().join("order")).unwrap_or_default();
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    for name in ["prestart", "createRuntime", "createContainer"] {
        let s = read_json(&h.path().join(format!("{name}.json")));
        assert_eq!(s["id"], c.id.as_str(), "{name}: {s}");
        assert_eq!(s["pid"], pid, "{name}: {s}");
        assert!(
            s["bundle"]
                .as_str()
                .is_some_and(|b| b.contains("rpaas-test-bundle")),
            "{name}: {s}"
        );
    }
    rpaas_ok(c.root(), &["start", &c.id]);
    c.wait_until("startContainer and poststart", || {
        order().lines().count() == 5
    });
    let lines: Vec<String> = order().lines().map(String::from).collect();
    assert!(
        lines.contains(&"startContainer".into()) && lines.contains(&"poststart".into()),
        "{lines:?}"
    );
    assert_eq!(
        read_json(&h.path().join("startContainer.json"))["id"],
        c.id.as_str()
    );
    assert_eq!(read_json(&h.path().join("poststart.json"))["pid"], pid);
    rpaas_ok(c.root(), &["kill", &c.id, "KILL"]);
    c.wait_until("stopped", || c.state()["status"] == "stopped");
    rpaas_ok(c.root(), &["delete", &c.id]);
    assert_eq!(order().lines().last(), Some("poststop"));
    assert_eq!(
        read_json(&h.path().join("poststop.json"))["id"],
        c.id.as_str()
    );
}

#[test]
fn hook_timeout_is_enforced_and_named() {
    let mut cfg = default_config(&["true"]);
    cfg["hooks"] = json!({"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 300"], "timeout": 1}
    ]});
    let c = Ctr::new("hooktimeout", &cfg);
    let out = c.run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prestart") && err.contains("timed out"),
        "{err}"
    );
    assert!(
        !c.root().join(&c.id).exists(),
        "the failed create is undone"
    );
}

// ---------------------------------------------------------------- namespaces

#[test]
fn user_namespace_maps_root_to_a_host_uid() {
    use std::os::unix::fs::MetadataExt;
    let mut cfg = default_config(&["sleep", "1000"]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let c = Ctr::new("userns", &cfg);
    // The mapped root must be able to walk into the bundle (tempdirs are 0700).
    std::fs::set_permissions(
        c.bundle.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pid = c.start(&[]);
    let uid = proc_status(pid, "Uid");
    assert_eq!(
        uid.split_whitespace().next(),
        Some("100000"),
        "host view of the container's root: {uid}"
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().next(),
        Some("100000")
    );
    let out = c.sh("id -u; id -g; cat /proc/self/uid_map");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f, ["0", "0", "0", "100000", "65536"], "{out}");
    // What the container's root makes belongs to the mapped uid on the host.
    c.sh("touch /tmp/rpaas-owned");
    let meta = std::fs::metadata(c.bundle.rootfs().join("tmp/rpaas-owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100000, 100000));
}

/// `ip netns add` a namespace; deleted on drop.
struct NetNs(String);

impl NetNs {
    fn add(name: &str) -> NetNs {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip netns add")
            .success();
        assert!(ok, "ip netns add {name}");
        NetNs(name.to_string())
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn join_a_network_namespace_by_path() {
    use std::os::unix::fs::MetadataExt;
    let ns = NetNs::add(&format!("rpaas-join-{}", std::process::id()));
    let ok = Command::new("ip")
        .args([
            "-n",
            &ns.0,
            "link",
            "add",
            "rpaas-jv0",
            "type",
            "veth",
            "peer",
            "name",
            "rpaas-jv1",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut cfg = sh_config("readlink /proc/self/ns/net; cat /proc/net/dev");
    for n in cfg["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = ns.path().into();
        }
    }
    let c = Ctr::new("joinnet", &cfg);
    let out = c.run_ok(&[]);
    let ino = std::fs::metadata(ns.path()).unwrap().ino();
    assert!(out.starts_with(&format!("net:[{ino}]\n")), "{out}");
    assert!(
        out.contains("rpaas-jv0") && out.contains("rpaas-jv1"),
        "the links made in it: {out}"
    );
}

#[test]
fn time_namespace_with_offsets() {
    assert!(
        Path::new("/proc/self/ns/time").exists(),
        "needs a kernel with time namespaces (5.6+)"
    );
    let mut cfg = sh_config("cat /proc/uptime; readlink /proc/self/ns/time");
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    cfg["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400 * 1000, "nanosecs": 0}});
    let c = Ctr::new("timens", &cfg);
    let out = c.run_ok(&[]);
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(uptime > 86400.0 * 1000.0, "boottime offset applied: {out}");
    let host = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(
        out.lines().nth(1).unwrap(),
        host.to_str().unwrap(),
        "own time namespace"
    );
}

// ---------------------------------------------------------------- terminal and fds

/// Receive one fd over SCM_RIGHTS from a connected console socket.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this fd.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd in the console socket message");
}

/// Read from the pty master until `want` appears (poll: a hang guard of 20 s).
fn read_until(master: &std::fs::File, want: &str) -> String {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut text = String::new();
    let mut f = master;
    while !text.contains(want) {
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, 20_000u16).expect("poll pty");
        assert!(n > 0, "no {want:?} from the terminal; got {text:?}");
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    text
}

#[test]
fn terminal_through_console_socket() {
    use std::io::Write;
    let dir = host_dir("console");
    let sock_path = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut cfg = default_config(&["sh"]);
    cfg["process"]["terminal"] = true.into();
    let c = Ctr::new("tty", &cfg);
    let b = c.bundle_arg();
    rpaas_ok(
        c.root(),
        &[
            "create",
            "--bundle",
            &b,
            "--console-socket",
            sock_path.to_str().unwrap(),
            &c.id,
        ],
    );
    let (conn, _) = listener.accept().unwrap();
    let master = std::fs::File::from(recv_fd(&conn));
    rpaas_ok(c.root(), &["start", &c.id]);
    // Exit only once the answer is read: output still queued when the slave
    // side hangs up can be lost to an EIO on the master.
    (&master)
        .write_all(b"echo answer-$((6*7)); test -c /dev/console && echo console-is-a-tty-$(tty | cut -c1-8)-$((1+1))done\n")
        .unwrap();
    // (computed by the shell: the terminal's echo of the input must not match)
    let text = read_until(&master, "-2done");
    assert!(text.contains("answer-42"), "{text:?}");
    assert!(text.contains("console-is-a-tty-/dev/pts-2done"), "{text:?}");

    // exec --tty: a second terminal, for the exec'd shell only.
    let exec_sock = dir.path().join("exec.sock");
    let exec_listener = std::os::unix::net::UnixListener::bind(&exec_sock).unwrap();
    let mut exec = Command::new(rpaas_run_bin())
        .arg("--root")
        .arg(c.root())
        .args([
            "exec",
            "--tty",
            "--console-socket",
            exec_sock.to_str().unwrap(),
            &c.id,
            "sh",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(tempfile::tempfile().unwrap())
        .stderr(tempfile::tempfile().unwrap())
        .spawn()
        .unwrap();
    let (conn, _) = exec_listener.accept().unwrap();
    let exec_master = std::fs::File::from(recv_fd(&conn));
    (&exec_master)
        .write_all(b"echo exec-tty-$(tty | cut -c1-8)-$((2+2))done\n")
        .unwrap();
    let text = read_until(&exec_master, "-4done");
    assert!(text.contains("exec-tty-/dev/pts-4done"), "{text:?}");
    (&exec_master).write_all(b"exit 5\n").unwrap();
    assert_eq!(
        exec.wait().unwrap().code(),
        Some(5),
        "exec returns the shell's code"
    );

    (&master).write_all(b"exit 3\n").unwrap();
    c.wait_until("the shell exits", || c.state()["status"] == "stopped");
}

#[test]
fn preserve_fds_passes_exactly_those() {
    use std::os::fd::AsRawFd;
    let dir = host_dir("preserve");
    let out_path = dir.path().join("out");
    let file = std::fs::File::create(&out_path).unwrap();
    let hostdir = std::fs::File::open("/etc").unwrap();
    let c = Ctr::new("preserve", &sh_config("echo via-fd3 >&3; exec sleep 1000"));
    let mut cmd = Command::new(rpaas_run_bin());
    cmd.arg("--root")
        .arg(c.root())
        .args(["create", "--preserve-fds", "1", "--bundle"])
        .arg(c.bundle.path())
        .arg(&c.id);
    // fd 3 is preserved; fd 4 (a host directory) must not reach the container.
    pass_fds(
        &mut cmd,
        vec![(file.as_raw_fd(), 3), (hostdir.as_raw_fd(), 4)],
    );
    let out = run_to_files(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rpaas_ok(c.root(), &["start", &c.id]);
    let pid = c.pid();
    c.wait_until("the echo", || {
        std::fs::read_to_string(&out_path).unwrap_or_default() == "via-fd3\n"
    });
    c.wait_until("sleep runs", || {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("busybox"))
            && proc_status(pid, "State").starts_with('S')
    });
    let fds = fds_of(pid);
    let nums: Vec<i32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(nums, [0, 1, 2, 3], "{fds:?}");
    assert_eq!(fds[3].1, out_path.display().to_string());
}

// ---------------------------------------------------------------- cgroups and verbs

#[test]
fn update_resources_changes_limits_live() {
    let mut cfg = default_config(&["sleep", "1000"]);
    cfg["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    cfg["linux"]["resources"]["pids"] = json!({"limit": 50});
    let c = Ctr::new("update", &cfg);
    let pid = c.start(&[]);
    let mem = v1_cgroup_dir(pid, "memory").join("memory.limit_in_bytes");
    let pids = v1_cgroup_dir(pid, "pids").join("pids.max");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(read(&mem), (64u64 << 20).to_string());
    assert_eq!(read(&pids), "50");
    let dir = host_dir("update");
    let res = dir.path().join("resources.json");
    std::fs::write(
        &res,
        json!({"memory": {"limit": 96 << 20}, "pids": {"limit": 42}}).to_string(),
    )
    .unwrap();
    rpaas_ok(
        c.root(),
        &["update", "--resources", res.to_str().unwrap(), &c.id],
    );
    assert_eq!(read(&mem), (96u64 << 20).to_string());
    assert_eq!(read(&pids), "42");
}

#[test]
fn events_stats_report_memory_cpu_pids() {
    let c = Ctr::new(
        "events",
        &default_config(&["sh", "-c", "sleep 1000 & sleep 1000"]),
    );
    c.start(&[]);
    c.wait_until("two processes", || {
        c.sh("true").is_empty() && proc_count(&c) >= 2
    });
    let out = rpaas_ok(c.root(), &["events", "--stats", &c.id]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], c.id.as_str());
    let data = &v["data"];
    assert!(data["pids"]["current"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(data["cpu"]["usage"]["total"].as_u64().is_some(), "{v}");
}

fn proc_count(c: &Ctr) -> usize {
    let ps: Vec<i64> =
        serde_json::from_str(&rpaas_ok(c.root(), &["ps", "--format", "json", &c.id])).unwrap();
    ps.len()
}

/// Without a pid namespace, killing init leaves its children running:
/// `kill --all` reaches every process of the cgroup.
#[test]
fn kill_all_reaches_every_process() {
    let mut cfg = default_config(&["sh", "-c", "sleep 1001 & sleep 1002 & wait"]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let c = Ctr::new("killall", &cfg);
    c.start(&[]);
    c.wait_until("three processes", || proc_count(&c) == 3);
    rpaas_ok(c.root(), &["kill", "--all", &c.id, "KILL"]);
    c.wait_until("no process left", || proc_count(&c) == 0);
    assert_eq!(c.state()["status"], "stopped");
}

#[test]
fn ps_table_list_json_features_spec() {
    let c = Ctr::new("verbs", &default_config(&["sleep", "1000"]));
    let pid = c.start(&[]);
    let table = rpaas_ok(c.root(), &["ps", "--format", "table", &c.id]);
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap().split_whitespace().any(|h| h == "PID"),
        "{table}"
    );
    assert!(lines.any(|l| l.contains("sleep 1000") && l.split_whitespace().any(|f| f == pid.to_string())), "{table}");

    let list: Value =
        serde_json::from_str(&rpaas_ok(c.root(), &["list", "--format", "json"])).unwrap();
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .expect("listed");
    assert_eq!(mine["status"], "running");
    assert_eq!(mine["pid"], pid as i64);

    let f: Value = serde_json::from_str(&rpaas_ok(c.root(), &["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.3.0");
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(f["hooks"].as_array().unwrap().iter().any(|x| x == h), "{h}");
    }
    for ns in ["user", "time", "cgroup"] {
        assert!(
            f["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == ns),
            "{ns}"
        );
    }

    let dir = host_dir("spec");
    rpaas_ok(
        c.root(),
        &["spec", "--bundle", dir.path().to_str().unwrap()],
    );
    let spec = read_json(&dir.path().join("config.json"));
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    let again = rpaas(
        c.root(),
        &["spec", "--bundle", dir.path().to_str().unwrap()],
    );
    assert!(!again.status.success(), "spec does not overwrite");
    assert!(String::from_utf8_lossy(&again.stderr).contains("config.json"));
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let c = Ctr::new("pause", &default_config(&["sleep", "1000"]));
    let pid = c.start(&[]);
    let freezer = v1_cgroup_dir(pid, "freezer").join("freezer.state");
    let read = || {
        std::fs::read_to_string(&freezer)
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read(), "THAWED");
    rpaas_ok(c.root(), &["pause", &c.id]);
    assert_eq!(read(), "FROZEN");
    assert_eq!(c.state()["status"], "paused");
    let st = proc_status(pid, "State");
    assert!(st.starts_with('D'), "a frozen task: {st}");
    rpaas_ok(c.root(), &["resume", &c.id]);
    assert_eq!(read(), "THAWED");
    assert!(proc_status(pid, "State").starts_with('S'), "sleeping again");
    assert_eq!(c.state()["status"], "running");
}

/// A program that exists and is executable but cannot be exec'd (here: no
/// `#!` line, not ELF; also a script whose interpreter is missing): `exec`
/// fails with the path and the reason, foreground and detached alike, and
/// `run` returns 126/127 with the reason on the container's stderr.
#[test]
fn exec_of_a_program_the_kernel_refuses_names_it_and_fails() {
    let c = Ctr::new("noexec", &default_config(&["sleep", "1000"]));
    let rootfs = c.bundle.rootfs();
    for (name, text) in [
        ("not-a-program", "just text\n"),
        ("no-interp", "#!/rpaas-none/interp\n"),
    ] {
        std::fs::write(rootfs.join("bin").join(name), text).unwrap();
        std::fs::set_permissions(
            rootfs.join("bin").join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    c.start(&[]);
    for (args, want) in [
        (vec!["exec", &c.id, "/bin/not-a-program"], "ENOEXEC"),
        (
            vec!["exec", "--detach", &c.id, "/bin/not-a-program"],
            "ENOEXEC",
        ),
        (vec!["exec", &c.id, "/bin/no-interp"], "ENOENT"),
    ] {
        let out = rpaas(c.root(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {err}");
        assert!(
            err.contains(&c.id) && err.contains("execve /bin/") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // Nothing of the failed execs is left in the container.
    let ps: Vec<i64> =
        serde_json::from_str(&rpaas_ok(c.root(), &["ps", "--format", "json", &c.id])).unwrap();
    assert_eq!(ps.len(), 1, "only init runs: {ps:?}");

    let r = Ctr::new("noexec-run", &default_config(&["/bin/not-a-program"]));
    std::fs::write(r.bundle.rootfs().join("bin/not-a-program"), "text\n").unwrap();
    std::fs::set_permissions(
        r.bundle.rootfs().join("bin/not-a-program"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let b = r.bundle_arg();
    let out = rpaas(r.root(), &["run", "--bundle", &b, &r.id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains("execve /bin/not-a-program: ENOEXEC"), "{err}");
}
