//! `rpaas-run login [--read-only | --read-write] ID [-- CMD…]`: a session in a
//! running container (runtime/src/login.rs), on the caller's terminal
//! (raw mode, window size and SIGWINCH passed on, the terminal restored at
//! the end), on a pty whose master goes to `--console-socket` (what
//! `rpaas::Host::login` uses), or on plain stdio (`--no-tty`). Every login
//! appends an audit record to `<data-root>/audit/logins.jsonl`: one line
//! when it starts (`exitCode` null: a session whose runtime is killed keeps
//! that line) and one when it ends, with the same `session`.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use nix::unistd::Pid;
use rpaas_runtime::login::{LoginOptions, Mode};
use rpaas_runtime::Container;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// See the container, change nothing (the default).
    #[arg(long, conflicts_with = "read_write")]
    pub read_only: bool,
    /// Root with the container's capabilities (operators).
    #[arg(long)]
    pub read_write: bool,
    /// No pty: the session uses this process's stdin, stdout and stderr.
    #[arg(long, conflicts_with = "console_socket")]
    pub no_tty: bool,
    /// Unix socket that receives the pty master (the caller relays).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// The terminal's size for --console-socket, ROWSxCOLS.
    #[arg(long)]
    pub size: Option<String>,
    /// KEY=VALUE, repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Who logs in, for the audit log (default: $SUDO_USER, $USER or the uid).
    #[arg(long)]
    pub who: Option<String>,
    /// The host's data root: the audit log is DATA/audit/logins.jsonl.
    #[arg(long, default_value = "/var/lib/rpaas")]
    pub data_root: PathBuf,
    /// The audit record's session id (default: made here).
    #[arg(long, hide = true)]
    pub session_id: Option<String>,
    /// Container (instance) id.
    pub id: String,
    /// The command (default: /bin/sh).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(root: &Path, a: LoginArgs) -> anyhow::Result<i32> {
    let mode = if a.read_write {
        Mode::ReadWrite
    } else {
        Mode::ReadOnly
    };
    let who = a.who.clone().unwrap_or_else(|| {
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()))
    });
    let started = SystemTime::now();
    let session = a.session_id.clone().unwrap_or_else(|| {
        let t = started.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!(
            "{}.{:09}-{}",
            t.as_secs(),
            t.subsec_nanos(),
            std::process::id()
        )
    });
    let audit = Audit {
        path: a.data_root.join("audit/logins.jsonl"),
        record: serde_json::json!({
            "session": session,
            "time": rpaas_runtime::state::now_rfc3339(),
            "instance": a.id,
            "mode": mode.as_str(),
            "who": who,
            "command": if a.args.is_empty() { vec!["/bin/sh".to_string()] } else { a.args.clone() },
            "exitCode": null,
            "durationMs": null,
        }),
    };
    audit.append(None, None)?;
    let clock = Instant::now();
    let result = login(root, &a, mode);
    let ms = clock.elapsed().as_millis() as u64;
    match &result {
        Ok(code) => audit.append(Some(*code), Some((ms, None)))?,
        Err(e) => audit.append(None, Some((ms, Some(format!("{e:#}")))))?,
    }
    result
}

fn login(root: &Path, a: &LoginArgs, mode: Mode) -> anyhow::Result<i32> {
    let c = Container::load(root, &a.id)?;
    let stdin_tty = {
        // SAFETY: isatty on fd 0.
        unsafe { libc::isatty(0) == 1 }
    };
    let relay = a.console_socket.is_none() && !a.no_tty;
    let (console, ours) = if let Some(p) = &a.console_socket {
        let s = UnixStream::connect(p)
            .with_context(|| format!("--console-socket {}: connect", p.display()))?;
        (Some(s), None)
    } else if relay {
        let (x, y) = UnixStream::pair().context("make a socket pair")?;
        (Some(x), Some(y))
    } else {
        (None, None)
    };
    let size = match &a.size {
        Some(s) => Some(parse_size(s)?),
        None if stdin_tty => window_size(0),
        None => None,
    };
    let opts = LoginOptions {
        mode,
        args: a.args.clone(),
        env: a.env.clone(),
        console,
        size,
    };
    let s = rpaas_runtime::login::start(&c, &opts)?;
    drop(opts);
    if let Some(ours) = ours {
        let master = rpaas_runtime::login::recv_fd(ours.as_raw_fd())?
            .ok_or_else(|| anyhow::anyhow!("login: no pty master came back"))?;
        return relay_terminal(master, s.pid, stdin_tty);
    }
    Ok(rpaas_runtime::exec::wait_code(s.pid)?)
}

fn parse_size(s: &str) -> anyhow::Result<(u16, u16)> {
    let bad = || anyhow::anyhow!("--size {s:?}: expected ROWSxCOLS, e.g. 24x80");
    let (r, c) = s.split_once('x').ok_or_else(bad)?;
    Ok((r.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?))
}

struct Audit {
    path: PathBuf,
    record: serde_json::Value,
}

impl Audit {
    /// One line, one write(2) with O_APPEND: lines of concurrent logins never mix.
    fn append(&self, code: Option<i32>, end: Option<(u64, Option<String>)>) -> anyhow::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let mut r = self.record.clone();
        if let Some((ms, error)) = end {
            r["exitCode"] = serde_json::json!(code);
            r["durationMs"] = serde_json::json!(ms);
            r["end"] = serde_json::json!(rpaas_runtime::state::now_rfc3339());
            if let Some(e) = error {
                r["error"] = serde_json::json!(e);
            }
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("audit log: create {}", dir.display()))?;
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .with_context(|| format!("audit log: open {}", self.path.display()))?;
        f.write_all(&line)
            .with_context(|| format!("audit log: append to {}", self.path.display()))?;
        Ok(())
    }
}

fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The terminal as it was, put back on drop (also when the session was killed).
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        if !tty {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Copy stdin to the pty and the pty to stdout until the session ends. Ctrl-C
/// and Ctrl-\ are plain bytes in raw mode: the session's line discipline
/// turns them into its signals. SIGTERM, SIGHUP, SIGINT and SIGQUIT sent to
/// rpaas-run itself end the session (SIGKILL to it: its processes follow).
fn relay_terminal(master: OwnedFd, pid: Pid, stdin_tty: bool) -> anyhow::Result<i32> {
    let mask = {
        let mut m = nix::sys::signal::SigSet::empty();
        for s in [
            nix::sys::signal::SIGWINCH,
            nix::sys::signal::SIGCHLD,
            nix::sys::signal::SIGTERM,
            nix::sys::signal::SIGHUP,
            nix::sys::signal::SIGINT,
            nix::sys::signal::SIGQUIT,
        ] {
            m.add(s);
        }
        m
    };
    mask.thread_block().context("block signals")?;
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .context("signalfd")?;
    let raw = RawMode::enter(stdin_tty);
    let m = master.as_raw_fd();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    let mut code = None;
    let mut stdout = std::io::stdout();
    'relay: loop {
        if code.is_none() {
            if let Some(c) = try_wait(pid) {
                code = Some(c);
                drain(m, &mut stdout);
                break;
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: m,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on three pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if n < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            break;
        }
        if fds[2].revents != 0 {
            while let Ok(Some(si)) = sfd.read_signal() {
                match si.ssi_signo as i32 {
                    libc::SIGWINCH => {
                        if let Some((r, c)) = window_size(0) {
                            let ws = libc::winsize {
                                ws_row: r,
                                ws_col: c,
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            };
                            // SAFETY: TIOCSWINSZ on the pty master we hold.
                            unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
                        }
                    }
                    libc::SIGCHLD => {}
                    _ => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                        break 'relay;
                    }
                }
            }
        }
        if fds[1].revents != 0 {
            match rd(m, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => break,
                Ok(k) => {
                    let _ = stdout.write_all(&buf[..k]);
                    let _ = stdout.flush();
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => break,
            }
        }
        if fds[0].revents != 0 {
            match rd(0, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // The end of a non-terminal input: EOF for the session.
                    let _ = write_all(m, &[4]);
                }
                Ok(k) => {
                    if write_all(m, &buf[..k]).is_err() {
                        break;
                    }
                }
            }
        }
    }
    let code = match code {
        Some(c) => c,
        None => rpaas_runtime::exec::wait_code(pid)?,
    };
    drop(raw);
    let _ = mask.thread_unblock();
    Ok(code)
}

fn try_wait(pid: Pid) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, c)) => Some(c),
        Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
        _ => None,
    }
}

/// What the session wrote before it ended, without blocking.
fn drain(m: i32, out: &mut std::io::Stdout) {
    // SAFETY: plain fcntl on the master we hold.
    unsafe { libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = [0u8; 8192];
    while let Ok(k) = rd(m, &mut buf) {
        if k == 0 {
            break;
        }
        let _ = out.write_all(&buf[..k]);
    }
    let _ = out.flush();
}

fn write_all(fd: i32, mut b: &[u8]) -> nix::Result<()> {
    while !b.is_empty() {
        // SAFETY: fd is the pty master we hold open.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match nix::unistd::write(bfd, b) {
            Ok(k) => b = &b[k..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn rd(fd: i32, buf: &mut [u8]) -> nix::Result<usize> {
    // SAFETY: read into a buffer we own, of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    nix::errno::Errno::result(n).map(|n| n as usize)
}
