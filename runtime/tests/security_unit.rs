//! Root tests of `rpaas_runtime::security`: each applies a setting in a
//! forked child (as the container init will), and the child reports what the
//! kernel then says (/proc/self/status, getrlimit, errno, fds) through a pipe.
//! Forking is what makes the settings process-wide and keeps them away from
//! the test harness; the child only runs the code under test plus small
//! reads, then `_exit`s (glibc's fork makes malloc safe in the child).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use rpaas_runtime::security::*;

/// What the child wrote and how it ended.
struct Child {
    out: String,
    status: WaitStatus,
}

/// Tests here fork while other test threads may hold pipe ends: a child
/// forked by one test inherits the other test's pipes and keeps them open,
/// so neither side ever sees EOF (seen once as a hang of two tests). Every
/// test takes this lock first, so only one test's children exist at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fork; the child runs `f` with the pipe's write fd and writes its result
/// there. The pipe fd is passed so tests that close fds can keep it.
fn in_child(f: impl FnOnce(RawFd) -> String) -> Child {
    let (r, w) = nix::unistd::pipe().unwrap();
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(r);
            let wfd = w.into_raw_fd();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(wfd)))
                .unwrap_or_else(|_| "PANIC in child".to_string());
            let bytes = out.as_bytes();
            let mut done = 0;
            while done < bytes.len() {
                let n =
                    unsafe { libc::write(wfd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
                if n <= 0 {
                    break;
                }
                done += n as usize;
            }
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut out = String::new();
            std::fs::File::from(r).read_to_string(&mut out).unwrap();
            let status = waitpid(child, None).unwrap();
            Child { out, status }
        }
    }
}

/// The `Cap*:` lines of /proc/self/status as (name, mask).
fn cap_lines(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap())
        })
        .collect()
}

fn cap(status: &str, name: &str) -> u64 {
    cap_lines(status)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} missing in {status}"))
        .1
}

fn self_status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap()
}

fn caps_spec(json: &str) -> CapSets {
    parse_capabilities(&serde_json::from_str(json).unwrap()).unwrap()
}

const KILL: u64 = 1 << 5;
const NET_BIND_SERVICE: u64 = 1 << 10;
const SYS_RESOURCE: u64 = 1 << 24;

#[test]
fn capabilities_only_cap_kill() {
    let _serial = serial();
    let sets =
        caps_spec(r#"{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}"#);
    let c = in_child(|_| match apply_capabilities(&sets) {
        Ok(()) => self_status(),
        Err(e) => format!("ERR {}", e.chain()),
    });
    assert_eq!(c.status, WaitStatus::Exited(c.status.pid().unwrap(), 0));
    for (set, want) in [
        ("CapEff", KILL),
        ("CapPrm", KILL),
        ("CapBnd", KILL),
        ("CapInh", 0),
        ("CapAmb", 0),
    ] {
        assert_eq!(cap(&c.out, set), want, "{set} in {}", c.out);
    }
}

#[test]
fn capabilities_after_setuid_reach_the_exec_through_ambient_only() {
    let _serial = serial();
    let sets = caps_spec(
        r#"{"bounding":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "effective":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "permitted":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "inheritable":["CAP_NET_BIND_SERVICE"],
            "ambient":["CAP_NET_BIND_SERVICE"]}"#,
    );
    let c = in_child(|w| {
        let run = || -> Result<(), String> {
            keep_caps_across_setuid().map_err(|e| e.chain())?;
            let id = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setresgid(id, id, id).map_err(|e| e.to_string())?;
            let id = nix::unistd::Uid::from_raw(65534);
            nix::unistd::setresuid(id, id, id).map_err(|e| e.to_string())?;
            clear_keep_caps().map_err(|e| e.chain())?;
            apply_capabilities(&sets).map_err(|e| e.chain())?;
            // Let the exec'd program print its own status into the pipe.
            if unsafe { libc::dup2(w, 1) } < 0 {
                return Err("dup2".into());
            }
            let err = nix::unistd::execv(c"/bin/cat", &[c"cat", c"/proc/self/status"]);
            Err(format!("execv: {err:?}"))
        };
        match run() {
            Ok(()) => String::new(),
            Err(e) => format!("ERR {e}"),
        }
    });
    assert!(!c.out.contains("ERR"), "{}", c.out);
    assert!(c.out.contains("Uid:\t65534"), "{}", c.out);
    // A non-root execve keeps only the ambient set (+ bounding as it was).
    assert_eq!(cap(&c.out, "CapEff"), NET_BIND_SERVICE, "{}", c.out);
    assert_eq!(cap(&c.out, "CapPrm"), NET_BIND_SERVICE, "{}", c.out);
    assert_eq!(cap(&c.out, "CapAmb"), NET_BIND_SERVICE, "{}", c.out);
    assert_eq!(cap(&c.out, "CapInh"), NET_BIND_SERVICE, "{}", c.out);
    assert_eq!(cap(&c.out, "CapBnd"), KILL | NET_BIND_SERVICE, "{}", c.out);
}

#[test]
fn no_inheritable_capabilities_unless_asked() {
    let _serial = serial();
    // CVE-2022-29162: an empty inheritable set must stay empty after exec.
    let sets = caps_spec(
        r#"{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"],
            "inheritable":[]}"#,
    );
    let c = in_child(|_| {
        // Start from a polluted inheritable set, as a careless parent might leave it.
        let _ = ::caps::raise(
            None,
            ::caps::CapSet::Inheritable,
            ::caps::Capability::CAP_KILL,
        );
        match apply_capabilities(&sets) {
            Ok(()) => self_status(),
            Err(e) => format!("ERR {}", e.chain()),
        }
    });
    assert_eq!(cap(&c.out, "CapInh"), 0, "{}", c.out);
    assert_eq!(cap(&c.out, "CapAmb"), 0, "{}", c.out);
}

#[test]
fn capabilities_the_host_cannot_give_are_skipped() {
    let _serial = serial();
    // This host's bounding set lacks CAP_SYS_RESOURCE: asking for it must not
    // fail the container, only leave it out (elsewhere it is granted).
    let host_bnd = cap(&self_status(), "CapBnd");
    let sets = caps_spec(
        r#"{"bounding":["CAP_KILL","CAP_SYS_RESOURCE"],
            "effective":["CAP_KILL","CAP_SYS_RESOURCE"],
            "permitted":["CAP_KILL","CAP_SYS_RESOURCE"]}"#,
    );
    let c = in_child(|_| match apply_capabilities(&sets) {
        Ok(()) => self_status(),
        Err(e) => format!("ERR {}", e.chain()),
    });
    assert!(!c.out.starts_with("ERR"), "{}", c.out);
    let want = (KILL | SYS_RESOURCE) & host_bnd;
    assert_eq!(cap(&c.out, "CapEff"), want, "{}", c.out);
    assert_eq!(cap(&c.out, "CapBnd"), want, "{}", c.out);
}

fn rlimits_spec(json: &str) -> Vec<Rlimit> {
    parse_rlimits(&serde_json::from_str::<Vec<_>>(json).unwrap()).unwrap()
}

#[test]
fn rlimits_are_applied() {
    let _serial = serial();
    let r = rlimits_spec(
        r#"[{"type":"RLIMIT_NOFILE","soft":100,"hard":200},
            {"type":"RLIMIT_CORE","soft":0,"hard":0},
            {"type":"RLIMIT_NPROC","soft":5000,"hard":6000}]"#,
    );
    let c = in_child(|_| {
        use nix::sys::resource::{getrlimit, Resource};
        match apply_rlimits(&r) {
            Ok(()) => format!(
                "{:?} {:?} {:?}",
                getrlimit(Resource::RLIMIT_NOFILE).unwrap(),
                getrlimit(Resource::RLIMIT_CORE).unwrap(),
                getrlimit(Resource::RLIMIT_NPROC).unwrap()
            ),
            Err(e) => format!("ERR {}", e.chain()),
        }
    });
    assert_eq!(c.out, "(100, 200) (0, 0) (5000, 6000)");
}

#[test]
fn raising_a_hard_rlimit_without_cap_sys_resource_names_the_limit() {
    let _serial = serial();
    let low = rlimits_spec(r#"[{"type":"RLIMIT_NOFILE","soft":100,"hard":200}]"#);
    let high = rlimits_spec(
        r#"[{"type":"RLIMIT_CORE","soft":0,"hard":0},
            {"type":"RLIMIT_NOFILE","soft":100,"hard":1000}]"#,
    );
    let c = in_child(|_| {
        // Make the test independent of whether the host grants CAP_SYS_RESOURCE.
        let _ = ::caps::drop(
            None,
            ::caps::CapSet::Effective,
            ::caps::Capability::CAP_SYS_RESOURCE,
        );
        if let Err(e) = apply_rlimits(&low) {
            return format!("ERR low {}", e.chain());
        }
        match apply_rlimits(&high) {
            Ok(()) => "unexpectedly raised".to_string(),
            Err(e) => e.chain(),
        }
    });
    assert!(
        c.out.contains("process.rlimits[1] RLIMIT_NOFILE"),
        "{}",
        c.out
    );
    assert!(c.out.contains("CAP_SYS_RESOURCE"), "{}", c.out);
    assert!(c.out.contains("EPERM"), "{}", c.out);
}

fn seccomp_spec(json: &str) -> SeccompFilter {
    compile_seccomp(&serde_json::from_str(json).unwrap()).unwrap()
}

#[test]
fn seccomp_errno_rule_makes_mkdir_fail_with_that_errno() {
    let _serial = serial();
    let dir = tempfile::Builder::new()
        .prefix("rpaas-seccomp")
        .tempdir()
        .unwrap();
    let target = dir.path().join("rpaas-denied");
    // EXDEV is nothing mkdir would return on its own here.
    let f = seccomp_spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat","rpaas_unknown_syscall"],
                         "action":"SCMP_ACT_ERRNO","errnoRet":18}]}"#,
    );
    let c = in_child(|_| {
        if let Err(e) = set_no_new_privileges().and_then(|()| load_seccomp(&f)) {
            return format!("ERR {}", e.chain());
        }
        let mkdir = std::fs::create_dir(&target).map_err(|e| e.raw_os_error());
        let status = self_status();
        let line = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap_or("")
                .to_string()
        };
        format!(
            "{mkdir:?} pid_ok={} {} {}",
            nix::unistd::getpid().as_raw() > 0,
            line("NoNewPrivs:"),
            line("Seccomp:")
        )
    });
    assert_eq!(
        c.out,
        "Err(Some(18)) pid_ok=true NoNewPrivs:\t1 Seccomp:\t2"
    );
    assert!(!target.exists());
    // The parent is untouched by the child's filter.
    std::fs::create_dir(&target).unwrap();
}

#[test]
fn seccomp_kill_action_kills_with_sigsys() {
    let _serial = serial();
    let f = seccomp_spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
    );
    let c = in_child(|_| {
        if let Err(e) = set_no_new_privileges().and_then(|()| load_seccomp(&f)) {
            return format!("ERR {}", e.chain());
        }
        format!("survived getppid={}", nix::unistd::getppid())
    });
    assert!(c.out.is_empty(), "{}", c.out);
    assert!(
        matches!(
            c.status,
            WaitStatus::Signaled(_, nix::sys::signal::SIGSYS, _)
        ),
        "{:?}",
        c.status
    );
}

#[test]
fn seccomp_arg_conditions_are_honoured() {
    let _serial = serial();
    // Deny personality() only for one argument value; others pass.
    let f = seccomp_spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],
            "action":"SCMP_ACT_ERRNO","errnoRet":22,
            "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let c = in_child(|_| {
        if let Err(e) = set_no_new_privileges().and_then(|()| load_seccomp(&f)) {
            return format!("ERR {}", e.chain());
        }
        let query = unsafe { libc::personality(0xffff_ffff) };
        nix::errno::Errno::clear();
        let denied = unsafe { libc::personality(8) };
        let errno = nix::errno::Errno::last_raw();
        format!("query_ok={} denied={denied} errno={errno}", query >= 0)
    });
    assert_eq!(c.out, "query_ok=true denied=-1 errno=22");
}

#[test]
fn seccomp_without_nnp_or_cap_sys_admin_explains_itself() {
    let _serial = serial();
    let f = seccomp_spec(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
    let c = in_child(|_| {
        let _ = ::caps::drop(
            None,
            ::caps::CapSet::Effective,
            ::caps::Capability::CAP_SYS_ADMIN,
        );
        match load_seccomp(&f) {
            Ok(()) => "loaded".to_string(),
            Err(e) => e.chain(),
        }
    });
    assert!(c.out.contains("CAP_SYS_ADMIN"), "{}", c.out);
    assert!(c.out.contains("EACCES"), "{}", c.out);
}

#[test]
fn seccomp_notify_profile_hands_back_a_listener() {
    let _serial = serial();
    let f = seccomp_spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/rpaas-test.sock",
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    );
    assert!(f.needs_listener());
    let c = in_child(|_| {
        if let Err(e) = set_no_new_privileges() {
            return format!("ERR {}", e.chain());
        }
        let plain = load_seccomp(&f)
            .map_err(|e| e.chain())
            .err()
            .unwrap_or_default();
        match load_seccomp_notify(&f) {
            Ok(fd) => {
                let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                format!("{plain}|{}", link.unwrap().display())
            }
            Err(e) => format!("ERR {}", e.chain()),
        }
    });
    let (plain, link) = c.out.split_once('|').unwrap_or_else(|| panic!("{}", c.out));
    assert!(plain.contains("load_seccomp_notify"), "{plain}");
    assert_eq!(link, "anon_inode:seccomp notify");
}

/// Open fds of the calling process, probed with F_GETFD (no fd of its own).
fn open_fds() -> BTreeSet<RawFd> {
    (0..4096)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

fn open_dev_null(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect()
}

#[test]
fn close_fds_leaves_only_stdio_and_kept_fds() {
    let _serial = serial();
    let c = in_child(|w| {
        let fds = open_dev_null(6);
        let keep = fds[3].as_raw_fd();
        // Also a high fd, far above the others.
        unsafe { libc::dup2(fds[0].as_raw_fd(), 1000) };
        let before = open_fds();
        std::mem::forget(fds);
        match close_fds_from(3, &[keep, w]) {
            Ok(()) => format!("{before:?}|{:?}|{keep}|{w}", open_fds()),
            Err(e) => format!("ERR {}", e.chain()),
        }
    });
    let parts: Vec<&str> = c.out.split('|').collect();
    assert_eq!(parts.len(), 4, "{}", c.out);
    let keep: RawFd = parts[2].parse().unwrap();
    let w: RawFd = parts[3].parse().unwrap();
    assert!(parts[0].contains("1000"), "{}", c.out);
    let after: BTreeSet<RawFd> = parts[1]
        .trim_matches(|c| c == '{' || c == '}')
        .split(", ")
        .map(|s| s.parse().unwrap())
        .collect();
    let stdio: BTreeSet<RawFd> = after.iter().copied().filter(|&f| f < 3).collect();
    let mut want = stdio;
    want.extend([keep, w]);
    assert_eq!(after, want, "{}", c.out);
}

#[test]
fn cloexec_fds_leak_nothing_into_an_exec() {
    let _serial = serial();
    let c = in_child(|w| {
        let fds = open_dev_null(1);
        // Inheritable fds (no FD_CLOEXEC) as a careless runtime would leave them.
        let leaky: Vec<RawFd> = (0..3)
            .map(|_| unsafe { libc::dup(fds[0].as_raw_fd()) })
            .collect();
        // A preserved fd (inheritable on purpose) and a sync fd (O_CLOEXEC).
        let preserved = unsafe { libc::dup(fds[0].as_raw_fd()) };
        // High, so that ls's own directory fd cannot take its number.
        let sync = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_DUPFD_CLOEXEC, 40) };
        std::mem::forget(fds);
        // The report pipe reaches the exec as its stdout, not as itself.
        unsafe { libc::fcntl(w, libc::F_SETFD, libc::FD_CLOEXEC) };
        if let Err(e) = cloexec_fds_from(3, &[preserved, sync, w]) {
            return format!("ERR {}", e.chain());
        }
        // Everything still works until execve (the init's sync fd, say).
        let all_open = leaky
            .iter()
            .chain([&preserved, &sync])
            .all(|f| open_fds().contains(f));
        let msg = format!("{preserved} {sync} {all_open} {leaky:?}\n");
        unsafe { libc::write(w, msg.as_ptr().cast(), msg.len()) };
        unsafe { libc::dup2(w, 1) };
        let err = nix::unistd::execv(c"/bin/busybox", &[c"ls", c"/proc/self/fd"]);
        format!("ERR execv {err:?}")
    });
    let mut lines = c.out.lines();
    let head: Vec<&str> = lines.next().unwrap().splitn(4, ' ').collect();
    assert_eq!(head[2], "true", "{}", c.out);
    let preserved: RawFd = head[0].parse().unwrap();
    let sync: RawFd = head[1].parse().unwrap();
    let listed: BTreeSet<RawFd> = lines
        .flat_map(|l| l.split_whitespace())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(listed.contains(&preserved), "{}", c.out);
    assert!(!listed.contains(&sync), "{}", c.out);
    // What ls saw beyond stdio and the preserved fd: at most its own directory
    // fd (which takes the lowest free number, so one of the closed ones).
    let extra: Vec<RawFd> = listed
        .iter()
        .copied()
        .filter(|f| *f > 2 && *f != preserved)
        .collect();
    assert!(extra.len() <= 1, "leaked fds {extra:?} in {}", c.out);
}

#[test]
fn dumpable_nnp_and_oom_score_adj() {
    let _serial = serial();
    let c = in_child(|_| {
        let r = (|| -> rpaas_runtime::Result<String> {
            set_dumpable(false)?;
            let off = nix::sys::prctl::get_dumpable().unwrap();
            set_dumpable(true)?;
            let on = nix::sys::prctl::get_dumpable().unwrap();
            set_no_new_privileges()?;
            set_oom_score_adj(None, 500)?;
            let oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
            Ok(format!(
                "{off} {on} {} {}",
                nix::sys::prctl::get_no_new_privs().unwrap(),
                oom.trim()
            ))
        })();
        r.unwrap_or_else(|e| format!("ERR {}", e.chain()))
    });
    assert_eq!(c.out, "false true true 500");
}

/// A process that became uid 65534, set dumpable to `dumpable`, and waits
/// until the returned write end is dropped.
fn nobody_process(dumpable: bool) -> (nix::unistd::Pid, OwnedFd) {
    let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
    let (hold_r, hold_w) = nix::unistd::pipe().unwrap();
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let id = nix::unistd::Uid::from_raw(65534);
            let ok = nix::unistd::setresuid(id, id, id).is_ok() && set_dumpable(dumpable).is_ok();
            unsafe { libc::write(ready_w.as_raw_fd(), [ok as u8].as_ptr().cast(), 1) };
            let mut b = [0u8; 1];
            unsafe { libc::read(hold_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            let mut b = [0u8; 1];
            std::fs::File::from(ready_r).read_exact(&mut b).unwrap();
            assert_eq!(b[0], 1, "setup of the uid-65534 process failed");
            (child, hold_w)
        }
    }
}

#[test]
fn non_dumpable_process_hides_its_exe_and_fds_from_same_uid_processes() {
    let _serial = serial();
    // What a process already in the container (same uid, no capabilities)
    // could do to our init while it joins: open /proc/<init>/exe or fd/.
    let mut seen = vec![];
    for dumpable in [true, false] {
        let (pid, hold) = nobody_process(dumpable);
        let c = in_child(|_| {
            let id = nix::unistd::Uid::from_raw(65534);
            if let Err(e) = nix::unistd::setresuid(id, id, id) {
                return format!("ERR setresuid {e}");
            }
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map(drop);
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(drop);
            format!(
                "{:?} {:?}",
                exe.map_err(|e| e.raw_os_error()),
                fds.map_err(|e| e.raw_os_error())
            )
        });
        drop(hold);
        waitpid(pid, None).unwrap();
        seen.push(c.out);
    }
    assert_eq!(seen[0], "Ok(()) Ok(())", "control: dumpable is readable");
    assert_eq!(
        seen[1], "Err(Some(13)) Err(Some(13))",
        "non-dumpable: EACCES"
    );
}

#[test]
fn oom_score_adj_of_another_process() {
    let _serial = serial();
    // A child that just waits for its pipe to close.
    let (r, w) = nix::unistd::pipe().unwrap();
    let pid = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(w);
            let mut b = [0u8; 1];
            unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(r);
    let res = set_oom_score_adj(Some(pid.as_raw()), 321);
    let got = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"));
    drop(w);
    waitpid(pid, None).unwrap();
    res.unwrap();
    assert_eq!(got.unwrap().trim(), "321");
}

#[test]
fn sysctl_applies_inside_new_ipc_and_net_namespaces_only() {
    let _serial = serial();
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want_shmmni = if host_shmmni.trim() == "1234" {
        "1235"
    } else {
        "1234"
    };
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    let c = in_child(|_| {
        use nix::sched::{unshare, CloneFlags};
        if let Err(e) = unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET) {
            return format!("ERR unshare {e}");
        }
        let ns = NsFlags {
            ipc: true,
            net: true,
            ..NsFlags::default()
        };
        let r = (|| -> rpaas_runtime::Result<String> {
            validate_sysctl("kernel.shmmni", want_shmmni, &ns)?;
            apply_sysctl("kernel.shmmni", want_shmmni)?;
            validate_sysctl("net.ipv4.ip_forward", want_fwd, &ns)?;
            apply_sysctl("net.ipv4.ip_forward", want_fwd)?;
            let missing = apply_sysctl("net.ipv4.rpaas_no_such_key", "1")
                .map(|_| "written".to_string())
                .unwrap_or_else(|e| e.chain());
            Ok(format!(
                "{} {} {missing}",
                std::fs::read_to_string("/proc/sys/kernel/shmmni")
                    .unwrap()
                    .trim(),
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                    .unwrap()
                    .trim(),
            ))
        })();
        r.unwrap_or_else(|e| format!("ERR {}", e.chain()))
    });
    assert!(
        c.out.starts_with(&format!("{want_shmmni} {want_fwd} ")),
        "{}",
        c.out
    );
    assert!(
        c.out.contains("linux.sysctl.net.ipv4.rpaas_no_such_key"),
        "{}",
        c.out
    );
    assert!(c.out.contains("ENOENT"), "{}", c.out);
    // The host's values did not move.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(),
        host_shmmni
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
}

/// Exec through the dmz in a forked child with stdout and stderr on the
/// report pipe; returns what the program (or the dmz) printed.
fn exec_via_dmz(program: &str, args: &[&str], env: &[&str]) -> Child {
    exec_via_dmz_reporting(program, args, env, false).0
}

/// As [`exec_via_dmz`]; with `report`, also what arrived on a report socket.
fn exec_via_dmz_reporting(
    program: &str,
    args: &[&str],
    env: &[&str],
    report: bool,
) -> (Child, Vec<u8>) {
    let dmz = Dmz::new().unwrap();
    let cs = |v: &[&str]| -> Vec<std::ffi::CString> {
        v.iter()
            .map(|a| std::ffi::CString::new(*a).unwrap())
            .collect()
    };
    let (prog, args, env) = (std::ffi::CString::new(program).unwrap(), cs(args), cs(env));
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let theirs_fd = theirs.as_raw_fd();
    let child = in_child(|w| {
        unsafe {
            libc::dup2(w, 1);
            libc::dup2(w, 2);
        }
        let report = report.then_some(theirs_fd);
        format!("ERR {}", dmz.exec(&prog, &args, &env, report).chain())
    });
    drop(theirs);
    ours.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = ours.recv(&mut buf).unwrap_or(0);
    buf.truncate(n);
    (child, buf)
}

#[test]
fn dmz_runs_the_program_with_its_argv_and_env() {
    let _serial = serial();
    let c = exec_via_dmz(
        "/bin/sh",
        &[
            "custom-argv0",
            "-c",
            "echo \"$0 $1 $RPAAS_X\"; readlink /proc/$$/exe; head -c 12 /proc/$$/cmdline",
            "zero",
            "one",
        ],
        &["RPAAS_X=y", "PATH=/usr/bin:/bin"],
    );
    assert!(
        matches!(c.status, WaitStatus::Exited(_, 0)),
        "{:?} {}",
        c.status,
        c.out
    );
    let mut lines = c.out.lines();
    assert_eq!(lines.next(), Some("zero one y"), "{}", c.out);
    // The dmz is gone once the program runs: the exe is the program's.
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(lines.next(), sh.to_str(), "{}", c.out);
    // argv[0] is the one asked for, not the program's path.
    assert_eq!(lines.next(), Some("custom-argv0"), "{}", c.out);
}

#[test]
fn dmz_reports_a_program_that_cannot_run() {
    let _serial = serial();
    let c = exec_via_dmz("/rpaas-no-such/prog", &["prog"], &[]);
    assert!(
        matches!(c.status, WaitStatus::Exited(_, 127)),
        "{:?} {}",
        c.status,
        c.out
    );
    assert!(
        c.out
            .trim()
            .starts_with("rpaas-run: execve /rpaas-no-such/prog: ENOENT"),
        "{}",
        c.out
    );
    let (c, report) = exec_via_dmz_reporting("/etc/passwd", &["passwd"], &[], true);
    assert!(
        matches!(c.status, WaitStatus::Exited(_, 126)),
        "{:?} {}",
        c.status,
        c.out
    );
    assert!(c.out.contains("EACCES"), "{}", c.out);
    // What `rpaas-run exec` reads on its sync socket.
    let msg: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(
        msg["Failed"].as_str().unwrap_or(""),
        "execve /etc/passwd: EACCES (permission denied, or a noexec mount)",
        "{msg}"
    );
}

#[test]
fn dmz_closes_the_report_socket_at_a_successful_exec() {
    let _serial = serial();
    let (c, report) = exec_via_dmz_reporting(
        "/bin/sh",
        &["sh", "-c", "ls -l /proc/$$/fd; true"],
        &["PATH=/usr/bin:/bin"],
        true,
    );
    assert!(
        matches!(c.status, WaitStatus::Exited(_, 0)),
        "{:?} {}",
        c.status,
        c.out
    );
    assert!(report.is_empty(), "{report:?}");
    // The program holds no socket: the report fd closed at its execve.
    assert!(c.out.contains("pipe:"), "{}", c.out);
    assert!(!c.out.contains("socket:"), "{}", c.out);
}
