//! Logging into an instance (issue 16): through a real terminal (tmux), in
//! real keeper instances of a deployed app. Root only.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::apps::{Lan, Roots, IMAGE};
use common::rpaas_run_bin;
use rpaas::login::{LoginMode, LoginOptions, READ_ONLY_UID};
use rpaas::{AppSpec, Host};

/// The app: writes its log (0600, its own), starts an httpd worker in the
/// background and sleeps as pid 1; a config file only its user can read.
fn deploy(roots: &Roots, lan: &Lan, name: &str, n: u32) -> Host {
    let h = roots.host(Some(lan.network()));
    let conf = roots.image_dir.path().join(format!("{name}.conf"));
    std::fs::write(&conf, "secret=42\n").unwrap();
    let empty = roots.image_dir.path().join(format!("{name}.log"));
    std::fs::write(&empty, "").unwrap();
    let spec = serde_json::json!({
        "name": name, "image": IMAGE, "instances": n,
        "command": ["sh", "-c", "echo app-booted >> /home/app/app.log; httpd -p 8080 -h /www; exec sleep 1000000"],
        "files": [{"source": conf, "dest": "/etc/app.conf", "mode": "0600", "owner": "1000:1000"},
                  {"source": empty, "dest": "/home/app/app.log", "mode": "0600", "owner": "1000:1000"}],
    });
    let spec = AppSpec::from_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
    h.deploy(&spec).expect("deploy");
    h
}

fn worker_pid(h: &Host, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = h.exec(id, None, &["pidof", "httpd"]).unwrap();
        if out.code == 0 || Instant::now() > deadline {
            return out.stdout.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A detached tmux session on a private server: a real terminal.
struct Tmux {
    sock: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tmux.sock");
        let ok = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "s",
                "-x",
                "100",
                "-y",
                "30",
            ])
            .arg(cmd)
            .status()
            .expect("tmux (apt-get install tmux)");
        assert!(ok.success());
        let t = Tmux { sock, _dir: dir };
        t.tmux(&["set-option", "-g", "history-limit", "20000"]);
        t
    }
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "s", "-l", text]);
        self.tmux(&["send-keys", "-t", "s", "Enter"]);
    }
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-20000", "-t", "s"])
    }
    /// The value printed as `KEY=<value>` (the typed command shows `KEY=$?`).
    fn value(&self, key: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            for (i, _) in s.match_indices(&format!("{key}=")) {
                let rest = &s[i + key.len() + 1..];
                let v: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                if !v.is_empty() && !v.starts_with('$') {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "no {key}= on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Run `cmd` in the session; its exit status.
    fn run(&self, key: &str, cmd: &str) -> i32 {
        self.line(&format!("{cmd}; echo {key}=$?"));
        let v = self.value(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}: {v:?}\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn login_cmd(roots: &Roots, mode: &str, id: &str) -> String {
    format!(
        "{} --root {} login {mode} --data-root {} --who tester {id}; echo EXIT=$?; sleep 60",
        rpaas_run_bin().display(),
        roots.state.path().display(),
        roots.data.path().display()
    )
}

/// Processes running as the read-only session's uid, anywhere on the host.
fn session_processes() -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.lines().any(|l| {
            l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&READ_ONLY_UID.to_string())
        }) {
            v.push(pid);
        }
    }
    v
}

fn mnt_ns(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Whether any process on the host is in mount namespace `ns`.
fn ns_in_use(ns: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .parse::<i32>()
            .ok()
            .and_then(mnt_ns)
            .as_deref()
            == Some(ns)
    })
}

/// The tests look for the session's processes host-wide: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn read_only_session_changes_nothing_and_reads_everything() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(61);
    let h = deploy(&roots, &lan, "ro", 1);
    let worker = worker_pid(&h, "ro-1");
    assert!(!worker.is_empty());
    let t = Tmux::start(&login_cmd(&roots, "--read-only", "ro-1"));
    assert_eq!(t.run("ID", "id -u >/dev/null"), 0, "{}", t.screen());
    let must_fail = [
        ("TOUCH", "touch /www/new".to_string()),
        ("RM", "rm -f /www/index.html".into()),
        (
            "MV",
            "echo hacked > /tmp/x && mv -f /tmp/x /etc/app.conf".into(),
        ),
        ("SYSCTL", "echo 1 > /proc/sys/net/ipv4/ip_forward".into()),
        ("KILL1", "kill 1".into()),
        ("KILLW", format!("kill -9 {worker}")),
        ("MOUNT", "mount -t tmpfs none /mnt".into()),
        ("IPADDR", "ip addr add 10.9.9.9/32 dev lo".into()),
        ("CHMOD", "chmod 777 /www".into()),
        ("PROCROOT", "echo x > /proc/1/root/www/index.html".into()),
        ("SETUID", "su -c true app".into()),
    ];
    for (key, cmd) in &must_fail {
        assert_ne!(t.run(key, cmd), 0, "{cmd} worked in a read-only session");
    }
    // Reading: the app's own 0600 log and config, its processes, its hostname.
    assert_eq!(
        t.run("LOG", "grep -q app-booted /home/app/app.log"),
        0,
        "{}",
        t.screen()
    );
    assert_eq!(t.run("CONF", "grep -q secret=42 /etc/app.conf"), 0);
    assert_eq!(
        t.run("PS", &format!("ps | grep -q '^ *{worker} '")),
        0,
        "{}",
        t.screen()
    );
    assert_eq!(
        t.run(
            "HOST",
            "test \"$(hostname)\" = \"$(cat /proc/sys/kernel/hostname)\""
        ),
        0
    );
    // A scratch /tmp of its own, which the app never sees.
    assert_eq!(
        t.run(
            "TMP",
            "echo mine > /tmp/scratch && cat /tmp/scratch >/dev/null"
        ),
        0
    );
    let ns = session_processes()
        .into_iter()
        .find_map(mnt_ns)
        .expect("the session runs as its uid");
    t.line("exit 3");
    assert_eq!(t.value("EXIT"), "3");
    wait_until("the session's processes are gone", || {
        session_processes().is_empty()
    });
    assert!(!ns_in_use(&ns), "the session's mount namespace outlived it");

    // The app is unharmed.
    assert_eq!(worker_pid(&h, "ro-1"), worker);
    let out = h
        .exec(
            "ro-1",
            None,
            &[
                "sh",
                "-c",
                "cat /etc/app.conf; ls /www; ls /tmp; stat -c %a /www",
            ],
        )
        .unwrap();
    assert!(out.stdout.starts_with("secret=42\nindex.html\n"), "{out:?}");
    assert!(
        !out.stdout.contains("scratch") && !out.stdout.contains("new"),
        "{out:?}"
    );
    assert!(out.stdout.trim_end().ends_with("755"), "{out:?}");
    let logins = h.logins().unwrap();
    let last = logins.last().expect("an audit record");
    assert_eq!(
        (
            last.instance.as_str(),
            last.mode.as_str(),
            last.who.as_str(),
            last.exit_code
        ),
        ("ro-1", "read-only", "tester", Some(3))
    );
    assert!(last.duration_ms.is_some());
    h.remove("ro").unwrap();
}

#[test]
fn read_write_session_on_a_terminal() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(62);
    let h = deploy(&roots, &lan, "rw", 1);
    let worker = worker_pid(&h, "rw-1");
    let t = Tmux::start(&login_cmd(&roots, "--read-write", "rw-1"));
    assert_eq!(t.run("ROOT", "test $(id -u) = 0"), 0, "{}", t.screen());
    let must_work = [
        ("TOUCH", "touch /www/new".to_string()),
        (
            "MV",
            "echo changed > /tmp/x && mv -f /tmp/x /etc/app.conf".into(),
        ),
        ("CHMOD", "chmod 700 /www".into()),
        ("RM", "rm /www/index.html".into()),
        ("KILL1", "kill 1".into()),
        ("KILLW", format!("kill -9 {worker}")),
    ];
    for (key, cmd) in &must_work {
        assert_eq!(
            t.run(key, cmd),
            0,
            "{cmd} failed in a read-write session\n{}",
            t.screen()
        );
    }
    // The window size reaches the session, and follows a resize.
    assert_eq!(t.value_of("SIZE1", "stty size"), "30 100");
    t.tmux(&["resize-window", "-t", "s", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.value_of("SIZE2", "stty size"), "40 120");
    // Ctrl-C ends the foreground command, not the session nor rpaas-run.
    t.line("sleep 100");
    std::thread::sleep(Duration::from_millis(500));
    t.tmux(&["send-keys", "-t", "s", "C-c"]);
    t.line("echo AFTER=$?");
    assert_eq!(t.value("AFTER"), "130", "{}", t.screen());
    t.line("exit 7");
    assert_eq!(t.value("EXIT"), "7");
    let out = h
        .exec(
            "rw-1",
            Some("0"),
            &["sh", "-c", "cat /etc/app.conf; ls /www"],
        )
        .unwrap();
    assert_eq!(out.stdout, "changed\nnew\n", "{out:?}");
    h.remove("rw").unwrap();
}

impl Tmux {
    /// `cmd`'s output line, printed as `KEY=<line with spaces as _>`.
    fn value_of(&self, key: &str, cmd: &str) -> String {
        self.line(&format!("echo {key}=$({cmd} | tr ' ' _)"));
        self.value(key).replace('_', " ")
    }
}

#[test]
fn sessions_killed_or_stopped_under_leave_nothing_and_are_audited() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(63);
    let h = deploy(&roots, &lan, "kl", 2);
    // Through the library, on a pty: resize, then killed from outside.
    let s = h
        .login(
            "kl-1",
            LoginMode::ReadOnly,
            LoginOptions {
                tty: true,
                command: vec!["sh".into()],
                who: "alice".into(),
                size: Some((25, 90)),
                ..Default::default()
            },
        )
        .expect("login");
    let master = s.master().expect("a pty").try_clone_to_owned().unwrap();
    let mut term = std::fs::File::from(master);
    use std::io::{Read, Write};
    s.resize(31, 111).unwrap();
    term.write_all(b"sleep 1000 & stty size; echo R=$?\n")
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("31 111") {
        let mut buf = [0u8; 4096];
        let n = term.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        assert!(Instant::now() < deadline, "{seen}");
    }
    wait_until("the session runs", || session_processes().len() >= 2);
    let ns = mnt_ns(session_processes()[0]).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let code = s.wait().expect("wait");
    assert_eq!(code, 137);
    wait_until("no process of the killed session", || {
        session_processes().is_empty()
    });
    assert!(!ns_in_use(&ns));

    // Without a tty; the instance stopped under the session.
    let s = h
        .login(
            "kl-2",
            LoginMode::ReadOnly,
            LoginOptions {
                command: vec!["sh".into(), "-c".into(), "sleep 1000 & sleep 1000".into()],
                who: "bob".into(),
                ..Default::default()
            },
        )
        .expect("login");
    wait_until("the session runs", || session_processes().len() >= 2);
    let ns = mnt_ns(session_processes()[0]).unwrap();
    h.stop("kl-2", Duration::from_millis(200)).unwrap();
    let code = s.wait().expect("wait");
    assert_ne!(code, 0);
    wait_until("no process of the session of a stopped instance", || {
        session_processes().is_empty()
    });
    assert!(!ns_in_use(&ns));

    // A login that cannot start is refused, and audited too.
    let e = h
        .login("kl-2", LoginMode::ReadWrite, LoginOptions::default())
        .and_then(|s| s.wait())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stopped") || e.contains("not running"), "{e}");

    let logins = h.logins().unwrap();
    let got: Vec<(&str, &str, Option<i32>)> = logins
        .iter()
        .map(|r| (r.instance.as_str(), r.who.as_str(), r.exit_code))
        .collect();
    assert_eq!(got.len(), 3, "{logins:?}");
    assert_eq!(got[0], ("kl-1", "alice", Some(137)));
    assert_eq!((got[1].0, got[1].1), ("kl-2", "bob"));
    assert_eq!((got[2].0, got[2].2), ("kl-2", None));
    assert!(logins[2].error.is_some(), "{logins:?}");
    // The CLI shows them.
    let out = Command::new(rpaas_run_bin())
        .arg("--root")
        .arg(roots.state.path())
        .arg("--image-root")
        .arg(roots.data.path().join("images"))
        .args(["app", "logins", "--json"])
        .output()
        .unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(listed.len(), 3);
    h.remove("kl").unwrap();
}

#[test]
fn hostile_container_cannot_make_a_login_act_on_the_host() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(64);
    let h = deploy(&roots, &lan, "ho", 1);
    // A host program that would leave a mark if a login ran it.
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let prog = dir.path().join("evil");
    std::fs::write(&prog, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = h
        .exec(
            "ho-1",
            Some("0"),
            &["sh", "-c", &format!("ln -sf {} /bin/sh", prog.display())],
        )
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    for mode in [LoginMode::ReadOnly, LoginMode::ReadWrite] {
        let r = h
            .login("ho-1", mode, LoginOptions::default())
            .and_then(|s| s.wait());
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|c| *c != 0),
            "{mode:?}: {r:?}"
        );
        assert!(!mark.exists(), "{mode:?}: a login ran a host program");
    }
    // /proc replaced by a symlink to a host path.
    let init = h.load("ho-1").unwrap().live_init().expect("running").pid;
    let st = Command::new("nsenter")
        .args(["-t", &init.to_string(), "-m", "/bin/busybox", "sh", "-c"])
        .arg(format!(
            "umount -l /proc && rmdir /proc && /bin/busybox ln -s {} /proc",
            dir.path().display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    for mode in [LoginMode::ReadOnly, LoginMode::ReadWrite] {
        let s = h.login(
            "ho-1",
            mode,
            LoginOptions {
                command: vec!["/bin/busybox".into(), "touch".into(), "/proc/mark".into()],
                ..Default::default()
            },
        );
        let _ = s.and_then(|s| s.wait());
        assert!(
            !mark.exists(),
            "{mode:?}: a login wrote through /proc to the host"
        );
    }
    assert!(session_processes().is_empty());
    h.remove("ho").unwrap();
}

#[test]
fn copy_in_and_out_stay_inside_the_instance() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(65);
    let h = deploy(&roots, &lan, "cp", 1);
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("in.conf");
    std::fs::write(&src, "copied in\n").unwrap();
    h.copy_in(
        "cp-1",
        &src,
        Path::new("/etc/extra/in.conf"),
        0o640,
        (1000, 1000),
    )
    .expect("copy in");
    let out = h
        .exec(
            "cp-1",
            Some("0"),
            &["stat", "-c", "%a %u %g", "/etc/extra/in.conf"],
        )
        .unwrap();
    assert_eq!(out.stdout, "640 1000 1000\n", "{out:?}");
    let back = host.path().join("out.conf");
    h.copy_out("cp-1", Path::new("/etc/app.conf"), &back)
        .expect("copy out");
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "secret=42\n");
    // Symlinks the app made, pointing at host paths, resolve inside its root.
    let secret = host.path().join("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    let hostdir = host.path().join("hostdir");
    std::fs::create_dir(&hostdir).unwrap();
    let cmd = format!(
        "ln -s {} /www/leak && ln -s {} /www/dir && ln -s ../../../../../../{} /www/up",
        secret.display(),
        hostdir.display(),
        secret.display()
    );
    assert_eq!(
        h.exec("cp-1", Some("0"), &["sh", "-c", &cmd]).unwrap().code,
        0
    );
    for link in ["/www/leak", "/www/up"] {
        let got = h.copy_out("cp-1", Path::new(link), &host.path().join("got"));
        assert!(got.is_err(), "{link}: {got:?}");
        assert!(
            std::fs::read_to_string(host.path().join("got")).unwrap_or_default() != "host only\n"
        );
    }
    let _ = h.copy_in("cp-1", &src, Path::new("/www/dir/planted"), 0o644, (0, 0));
    assert!(
        std::fs::read_dir(&hostdir).unwrap().next().is_none(),
        "copy_in wrote on the host through a symlink"
    );
    let e = h
        .copy_out("cp-1", Path::new("/no/such"), &host.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such") || e.contains("no/such"), "{e}");
    h.remove("cp").unwrap();
}

#[test]
fn terminal_is_restored_when_the_session_is_killed() {
    let _one = serial();
    let roots = Roots::new();
    let lan = Lan::new(66);
    let h = deploy(&roots, &lan, "tr", 1);
    let cmd = format!(
        "{} --root {} login --data-root {} tr-1; echo EXIT=$?; echo MODE=$(stty -a | grep -o -- '-*icanon'); sleep 60",
        rpaas_run_bin().display(),
        roots.state.path().display(),
        roots.data.path().display()
    );
    let t = Tmux::start(&cmd);
    assert_eq!(t.run("UP", "true"), 0, "{}", t.screen());
    for pid in session_processes() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(t.value("EXIT"), "137", "{}", t.screen());
    assert_eq!(t.value("MODE"), "icanon", "the terminal was left raw");
    wait_until("no process of the session", || {
        session_processes().is_empty()
    });
    let last = h.logins().unwrap().pop().unwrap();
    assert_eq!(last.exit_code, Some(137));
}
