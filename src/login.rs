//! Logging into an instance (`Host::login`) and copying files to and from
//! its writable layer (`Host::copy_in`, `Host::copy_out`).
//!
//! A login spawns `rpaas-run login` (runtime/src/login.rs does the namespace
//! work in that single-threaded process; the caller is never forked). With a
//! tty, the pty master comes back over a console socket and the caller
//! relays it; without, the session's stdio are pipes. The audit log is
//! `<dataRoot>/audit/logins.jsonl`: `rpaas-run login` appends a line when the
//! session starts and one when it ends; when that process itself is killed,
//! [`LoginSession::wait`] appends the end line.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rpaas_images::fsroot::{CleanPath, Root};
use rpaas_images::inject::{FileSpec, Source};

use crate::error::{Error, Result};
use crate::host::Host;

pub use rpaas_runtime::login::READ_ONLY_UID;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// Sees everything, changes nothing (developers).
    ReadOnly,
    /// Root with the container's capabilities (operators).
    ReadWrite,
}

impl LoginMode {
    fn flag(self) -> &'static str {
        match self {
            LoginMode::ReadOnly => "--read-only",
            LoginMode::ReadWrite => "--read-write",
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            LoginMode::ReadOnly => "read-only",
            LoginMode::ReadWrite => "read-write",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// A pty (its master in [`LoginSession::master`]), else pipes.
    pub tty: bool,
    /// The command; empty: the container's /bin/sh.
    pub command: Vec<String>,
    /// KEY=VALUE added to the container's environment.
    pub env: Vec<String>,
    /// Who logs in, as the agent knows them (the audit log's `who`).
    pub who: String,
    /// The terminal's size (rows, cols) with `tty`.
    pub size: Option<(u16, u16)>,
}

/// A running session. Dropping it without [`LoginSession::wait`] kills it.
#[derive(Debug)]
pub struct LoginSession {
    child: Child,
    master: Option<OwnedFd>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    instance: String,
    log: tempfile::NamedTempFile,
    audit: PathBuf,
    record: serde_json::Value,
    started: Instant,
    waited: bool,
}

impl LoginSession {
    /// The pid of the `rpaas-run login` process that holds the session:
    /// killing it ends the session and every process of it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pty master (with `tty`): write keys, read the screen.
    pub fn master(&self) -> Option<BorrowedFd<'_>> {
        self.master.as_ref().map(|m| m.as_fd())
    }

    /// Pass a new window size on (the session gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let Some(m) = &self.master else {
            return Err(Error::Spec {
                field: "login.tty".into(),
                reason: "the session has no terminal to resize".into(),
            });
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on the pty master we hold.
        if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Error::io(
                "resize the terminal of",
                &self.instance,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// End the session now (its processes go with it).
    pub fn kill(&mut self) -> Result<()> {
        let _ = self.child.kill();
        Ok(())
    }

    /// Wait for the session's end: its exit code (128+N when killed by N).
    /// A login that could not start is an `Err` naming why.
    pub fn wait(mut self) -> Result<i32> {
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io("wait for the login to", &self.instance, e))?;
        self.waited = true;
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            // rpaas-run itself was killed: its end line was never written.
            self.append_end(
                128 + sig,
                &format!("rpaas-run login killed by signal {sig}"),
            );
            return Ok(128 + sig);
        }
        let code = status.code().unwrap_or(-1);
        if code != 0 {
            if let Some(e) = crate::host::logged_error(self.log.path()) {
                return Err(Error::Helper {
                    id: self.instance.clone(),
                    verb: "login".into(),
                    source: Box::new(e),
                });
            }
        }
        Ok(code)
    }

    fn append_end(&self, code: i32, why: &str) {
        let mut r = self.record.clone();
        r["exitCode"] = serde_json::json!(code);
        r["durationMs"] = serde_json::json!(self.started.elapsed().as_millis() as u64);
        r["end"] = serde_json::json!(rpaas_runtime::state::now_rfc3339());
        r["error"] = serde_json::json!(why);
        let _ = append_line(&self.audit, &r);
    }
}

impl Drop for LoginSession {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.wait_inner();
        }
    }
}

fn append_line(path: &Path, v: &serde_json::Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut line = serde_json::to_vec(v)?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(&line)
}

/// The runtime's last error line in its JSON log.
/// One audit record as `rpaas-run app logins` shows it: the last line of
/// each session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRecord {
    pub session: String,
    pub time: String,
    pub instance: String,
    pub mode: String,
    pub who: String,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Host {
    /// The audit log of logins.
    pub fn login_audit_path(&self) -> PathBuf {
        self.config().data_root.join("audit/logins.jsonl")
    }

    /// Every login so far, oldest first (one per session; a session whose
    /// end was never recorded has no exit code).
    pub fn logins(&self) -> Result<Vec<LoginRecord>> {
        let path = self.login_audit_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut out: Vec<LoginRecord> = Vec::new();
        for line in text.lines() {
            let Ok(r) = serde_json::from_str::<LoginRecord>(line) else {
                continue;
            };
            match out.iter_mut().find(|x| x.session == r.session) {
                Some(x) => *x = r,
                None => out.push(r),
            }
        }
        Ok(out)
    }

    /// Log into a running instance (see the module doc and runtime/src/login.rs).
    pub fn login(
        &self,
        instance: &str,
        mode: LoginMode,
        opts: LoginOptions,
    ) -> Result<LoginSession> {
        rpaas_runtime::state::validate_id(instance)?;
        let state_root = &self.config().state_root;
        let log = crate::host::helper_log(state_root)?;
        let audit = self.login_audit_path();
        let session = format!(
            "{}-{}",
            rpaas_runtime::state::now_rfc3339(),
            log.path()
                .file_name()
                .map(|n| {
                    let n = n.to_string_lossy();
                    n.trim_start_matches(crate::host::LOG_PREFIX).to_string()
                })
                .unwrap_or_default()
        );
        let who = if opts.who.is_empty() {
            "agent".to_string()
        } else {
            opts.who.clone()
        };
        let mut cmd = Command::new(&self.inner.runtime);
        cmd.arg("--root")
            .arg(state_root)
            .arg("--log-format")
            .arg("json")
            .arg("--log")
            .arg(log.path())
            .arg("login")
            .arg(mode.flag())
            .arg("--data-root")
            .arg(&self.config().data_root)
            .arg("--who")
            .arg(&who)
            .arg("--session-id")
            .arg(&session);
        for e in &opts.env {
            cmd.arg("--env").arg(e);
        }
        let sock_dir;
        let listener = if opts.tty {
            sock_dir = tempfile::Builder::new()
                .prefix("#login.")
                .tempdir_in(state_root)
                .map_err(|e| Error::io("create a console socket dir in", state_root, e))?;
            let path = sock_dir.path().join("c");
            let l = UnixListener::bind(&path)
                .map_err(|e| Error::io("bind console socket", &path, e))?;
            cmd.arg("--console-socket").arg(&path);
            if let Some((r, c)) = opts.size {
                cmd.arg("--size").arg(format!("{r}x{c}"));
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            Some(l)
        } else {
            cmd.arg("--no-tty")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            None
        };
        cmd.arg(instance);
        if !opts.command.is_empty() {
            cmd.arg("--").args(&opts.command);
        }
        let command = if opts.command.is_empty() {
            vec!["/bin/sh".to_string()]
        } else {
            opts.command.clone()
        };
        let record = serde_json::json!({
            "session": session, "time": rpaas_runtime::state::now_rfc3339(),
            "instance": instance, "mode": mode.as_str(), "who": who, "command": command,
            "exitCode": null, "durationMs": null,
        });
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            path: self.inner.runtime.clone(),
            source,
        })?;
        let mut s = LoginSession {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            master: None,
            instance: instance.to_string(),
            log,
            audit,
            record,
            started: Instant::now(),
            waited: false,
        };
        if let Some(l) = listener {
            s.master = Some(accept_master(&l, &mut s)?);
        }
        Ok(s)
    }

    /// Copy a host file into a running instance's writable layer at `dest`
    /// (resolved inside the instance's root: a symlink never leads out),
    /// with `mode` and owner `uid:gid`; replaces `dest` atomically.
    pub fn copy_in(
        &self,
        instance: &str,
        source: &Path,
        dest: &Path,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<()> {
        let root = self.instance_root(instance)?;
        let file = FileSpec {
            dest: dest.to_path_buf(),
            source: Source::HostFile(source.to_path_buf()),
            mode,
            uid: owner.0,
            gid: owner.1,
        };
        rpaas_images::inject::inject_at(&root, &file)?;
        Ok(())
    }

    /// Copy the file `path` of an instance (resolved inside its root) to
    /// the host file `dest` (created or truncated, mode 0600).
    pub fn copy_out(&self, instance: &str, path: &Path, dest: &Path) -> Result<u64> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = self.instance_root(instance)?;
        let rel = CleanPath::new(path)
            .map_err(|reason| Error::Spec {
                field: "copy_out path".into(),
                reason,
            })?
            .ok_or_else(|| Error::Spec {
                field: "copy_out path".into(),
                reason: format!("{}: not a file", path.display()),
            })?;
        let mut src = root.open_file(&rel)?;
        let meta = src.metadata().map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::Spec {
                field: "copy_out path".into(),
                reason: format!("{}: not a regular file", path.display()),
            });
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| Error::io("create", dest, e))?;
        std::io::copy(&mut src, &mut out).map_err(|e| Error::io("copy to", dest, e))
    }

    fn instance_root(&self, instance: &str) -> Result<Root> {
        let c = self.load(instance)?;
        let rootfs = c.state.rootfs.clone();
        if c.status() == rpaas_runtime::Status::Stopped {
            return Err(Error::Runtime(rpaas_runtime::Error::State {
                id: instance.to_string(),
                reason: "cannot copy: the instance is stopped".into(),
            }));
        }
        Ok(Root::open(&rootfs)?)
    }
}

/// Wait for `rpaas-run login` to send the pty master (or to fail).
fn accept_master(l: &UnixListener, s: &mut LoginSession) -> Result<OwnedFd> {
    l.set_nonblocking(true)
        .map_err(|e| Error::io("console socket of", &s.instance, e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match l.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)
                    .map_err(|e| Error::io("console socket of", &s.instance, e))?;
                if let Some(fd) = rpaas_runtime::login::recv_fd(conn.as_raw_fd())? {
                    return Ok(fd);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io("console socket of", &s.instance, e)),
        }
        if let Ok(Some(_)) = s.child.try_wait() {
            s.waited = true;
            let e = crate::host::logged_error(s.log.path()).unwrap_or_else(|| {
                rpaas_runtime::Error::Other(
                    "rpaas-run login exited before the session started".into(),
                )
            });
            return Err(Error::Helper {
                id: s.instance.clone(),
                verb: "login".into(),
                source: Box::new(e),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Helper {
                id: s.instance.clone(),
                verb: "login".into(),
                source: Box::new(rpaas_runtime::Error::Other(
                    "no pty master within 30 s".into(),
                )),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
