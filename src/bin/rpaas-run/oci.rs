//! The OCI verbs in runc's dialect (what podman/conmon and containerd call),
//! plus `gc` and `wait`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};
use rpaas_runtime::{Container, CreateOptions, ExecOptions, Status};

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Path to the bundle (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the init's pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is made).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Keeper mode: a tiny monitor stays as init's parent and records its exit.
    #[arg(long)]
    pub keeper: bool,
    /// Keeper mode: rotate the container log past this many bytes.
    #[arg(long, default_value_t = 0)]
    pub log_size_max: u64,
    /// Keeper mode: log files kept, the live one included (0: 5).
    #[arg(long, default_value_t = 0)]
    pub log_max_files: u32,
    /// Keeper mode: json-file (Docker's lines) or k8s-file (the CRI format).
    #[arg(long, default_value = "json-file")]
    pub log_driver: rpaas_runtime::keeper::LogFormat,
    /// Container id.
    pub id: String,
}

// defer: a subcommand's arguments are built only when it is the one run.
// Building all of them (and copying the global flags into each) was half of
// rpaas-run's heap allocations at every start-up.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum OciCommand {
    /// Create a container: init waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to the container.
    Kill {
        /// Send it to every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container (and its cgroup and state).
    Delete {
        /// Kill it first if it is running; no error if it does not exist.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start.
        #[arg(short, long)]
        detach: bool,
    },
    /// Run a process inside a running container.
    Exec(ExecArgs),
    /// Log into a running container: read-only (default) or read-write, audited.
    Login(crate::login::LoginArgs),
    /// List the processes of a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Arguments for ps(1) in table format.
        #[arg(trailing_var_arg = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change resource limits of a running container.
    Update {
        /// JSON LinuxResources file, or - for stdin.
        #[arg(short, long)]
        resources: String,
        id: String,
    },
    /// Print resource usage (once with --stats, else every --interval).
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print what this runtime supports (runtime-spec features.json).
    Features,
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Remove what killed creates, crashes and reboots left behind.
    Gc {
        /// Also remove stopped containers that have an exit record.
        #[arg(long)]
        all: bool,
    },
    /// Wait for a container to stop and print its exit record.
    Wait { id: String },
    /// Checkpoint a running container with CRIU (runc's flags).
    Checkpoint(crate::checkpoint::CheckpointArgs),
    /// Restore a container from a CRIU checkpoint (runc's flags).
    Restore(crate::checkpoint::RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// process.json describing the process.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE, repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra capability, repeatable.
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(g: &Global, cmd: OciCommand) -> anyhow::Result<i32> {
    if g.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: rpaas manages cgroupfs directly (use --cgroup-manager cgroupfs)");
    }
    let root = g.root.as_path();
    match cmd {
        OciCommand::Create(a) => {
            rpaas_runtime::create(&create_options(root, &a, false))?;
            Ok(0)
        }
        OciCommand::Start { id } => {
            Container::load(root, &id)?.start()?;
            Ok(0)
        }
        OciCommand::State { id } => {
            let c = Container::load(root, &id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
            Ok(0)
        }
        OciCommand::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            kill(&Container::load(root, &id)?, sig, all)?;
            Ok(0)
        }
        OciCommand::Delete { force, id } => match Container::delete_id(root, &id, force) {
            Ok(()) => Ok(0),
            Err(rpaas_runtime::Error::NotFound { .. }) if force => Ok(0),
            Err(e) => Err(e.into()),
        },
        OciCommand::Run { create, detach } => run_container(root, &create, detach),
        OciCommand::Exec(a) => exec(root, a),
        OciCommand::Login(a) => crate::login::run(root, a),
        OciCommand::Checkpoint(a) => crate::checkpoint::checkpoint(root, a),
        OciCommand::Restore(a) => crate::checkpoint::restore(root, a),
        OciCommand::Ps {
            format,
            id,
            ps_args,
        } => ps(root, &format, &id, &ps_args),
        OciCommand::List { format, quiet } => list(root, &format, quiet),
        OciCommand::Pause { id } => {
            Container::load(root, &id)?.pause()?;
            Ok(0)
        }
        OciCommand::Resume { id } => {
            Container::load(root, &id)?.resume()?;
            Ok(0)
        }
        OciCommand::Update { resources, id } => {
            let bytes = if resources == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                v
            } else {
                std::fs::read(&resources).with_context(|| format!("read {resources}"))?
            };
            let res: LinuxResources = rpaas_runtime::spec::parse_resources(&bytes)?;
            Container::load(root, &id)?.update(&res)?;
            Ok(0)
        }
        OciCommand::Events {
            stats,
            interval,
            id,
        } => events(root, &id, stats, &interval),
        OciCommand::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        OciCommand::Spec { bundle } => {
            if g.rootless.as_deref().is_some_and(|v| v != "false") {
                bail!("spec --rootless: rootless containers are not supported");
            }
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{}: already exists", path.display());
            }
            std::fs::write(&path, serde_json::to_vec_pretty(&default_spec())?)
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
        OciCommand::Gc { all } => {
            let report = rpaas_runtime::gc::gc(root, all)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.errors.is_empty() { 0 } else { 1 })
        }
        OciCommand::Wait { id } => {
            let c = Container::load(root, &id)?;
            let rec = c.wait(None)?;
            if rec.is_none() && c.exit_status_lost() {
                bail!("container {id}: exit status unknown: keeper died");
            }
            // Like `podman wait`: the record is printed, the command itself succeeds.
            println!("{}", serde_json::to_string(&rec)?);
            Ok(0)
        }
    }
}

fn create_options(root: &Path, a: &CreateArgs, detach_logs: bool) -> CreateOptions {
    CreateOptions {
        root: root.to_path_buf(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        keeper: a.keeper,
        log_to_file: a.keeper && detach_logs,
        log_max_size: a.log_size_max,
        log_max_files: a.log_max_files,
        log_format: a.log_driver,
    }
}

/// The pid `run` forwards signals to.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn run_container(root: &Path, a: &CreateArgs, detach: bool) -> anyhow::Result<i32> {
    let st = rpaas_runtime::create(&create_options(root, a, detach))?;
    let mut c = Container::load(root, &st.id)?;
    if let Err(e) = c.start() {
        let _ = Container::load(root, &st.id).map(|c| c.delete(true));
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let init = st
        .init
        .map(|p| p.pid)
        .ok_or_else(|| anyhow!("container {}: no init", st.id))?;
    FORWARD_TO.store(init, Ordering::Relaxed);
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: installing a handler that only calls kill(2).
        unsafe { libc::signal(sig as i32, forward as *const () as libc::sighandler_t) };
    }
    let code = if a.keeper {
        c.wait(None)?.map(|r| r.exit_code).unwrap_or(255)
    } else {
        let code = rpaas_runtime::exec::wait_code(nix::unistd::Pid::from_raw(init))?;
        let rec = rpaas_runtime::ExitRecord {
            exit_code: code,
            exit_signal: (code > 128).then_some(code - 128),
            oom_killed: false,
            finished_at: rpaas_runtime::state::now_rfc3339(),
        };
        let _ = c.dir.write_exit(&rec);
        code
    };
    Container::load(root, &st.id)?.delete(true)?;
    Ok(code)
}

fn exec(root: &Path, a: ExecArgs) -> anyhow::Result<i32> {
    let c = Container::load(root, &a.id)?;
    let process = match &a.process {
        Some(p) => rpaas_runtime::spec::load_process(p)?,
        None => process_from_args(&c, &a)?,
    };
    let opts = ExecOptions {
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    };
    Ok(rpaas_runtime::exec(&c, &opts)?)
}

/// `exec ARGS…`: the container's process with these overrides. Inheritable
/// and ambient capabilities are dropped unless asked (CVE-2022-29162).
fn process_from_args(c: &Container, a: &ExecArgs) -> anyhow::Result<Process> {
    if a.args.is_empty() {
        bail!("exec: give a command, or --process FILE");
    }
    let spec = c.spec()?;
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| anyhow!("container {}: config has no process", a.id))?;
    p.set_args(Some(a.args.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        let (uid, gid) = rpaas_runtime::process::parse_user_spec(u)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
        user.set_additional_gids(None);
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(caps) = p.capabilities().clone() {
        let mut caps = caps;
        caps.set_inheritable(None);
        caps.set_ambient(None);
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability = name
                .parse()
                .map_err(|_| anyhow!("--cap {name}: unknown capability"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ] {
                let _ = set;
            }
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `kill`: a standard signal through [`Container::kill`], a real-time one
/// (which nix's `Signal` cannot hold) through the same pidfd path here.
///
/// A container that is not running is reported with runc's words, "container
/// not running": containerd's shim recognizes only runc's wordings ("container
/// not running", "no such process", "does not exist") as "the process already
/// finished"; any other text is an unknown error to it, and the kubelet's
/// StopPodSandbox fails when a container exited just before.
fn kill(c: &Container, signo: i32, all: bool) -> anyhow::Result<()> {
    if !all && c.status() == Status::Stopped {
        bail!("container {}: container not running", c.id());
    }
    let result = match Signal::try_from(signo) {
        Ok(sig) => c.kill(sig, all).map_err(anyhow::Error::from),
        Err(_) => kill_rt(c, signo, all),
    };
    // It may have stopped between the check and the signal.
    if result.is_err() && !all && c.status() == Status::Stopped {
        bail!("container {}: container not running", c.id());
    }
    result
}

/// Send real-time signal `signo` to init (through a pidfd, so never to a
/// reused pid) or, with `all`, to every process in the cgroup.
fn kill_rt(c: &Container, signo: i32, all: bool) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    if all {
        let cg = c
            .cgroup()
            .ok_or_else(|| anyhow!("container {}: has no cgroup", c.id()))?;
        for pid in cg.pids()? {
            // SAFETY: kill(2) with a pid read from the container's cgroup.
            unsafe { libc::kill(pid, signo) };
        }
        return Ok(());
    }
    let init = c
        .live_init()
        .ok_or_else(|| anyhow!("container {}: container not running", c.id()))?;
    // SAFETY: plain syscall; on success we own the returned fd.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, init.pid, 0) };
    if raw < 0 {
        bail!("container {}: container not running", c.id());
    }
    // SAFETY: `raw` is a pidfd just opened and owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    // The pidfd pins the process: checked after opening it, it is init.
    if !init.is_alive() {
        bail!("container {}: container not running", c.id());
    }
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signo,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("container {}: kill signal {signo}: {e}", c.id());
    }
    Ok(())
}

/// A signal as runc takes it: a number (1..=SIGRTMAX), a name with or without
/// "SIG" in any case (TERM, SIGkill), or a real-time one as RTMIN, RTMIN+n,
/// RTMAX-n (podman stops systemd containers with SIGRTMIN+3).
fn parse_signal(s: &str) -> anyhow::Result<i32> {
    let unknown = || anyhow!("unknown signal {s:?}");
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if let Ok(n) = s.parse::<i32>() {
        let standard = Signal::try_from(n).is_ok();
        return if standard || (rtmin..=rtmax).contains(&n) {
            Ok(n)
        } else {
            Err(anyhow!(
                "unknown signal {s:?}: signals are 1..={rtmax} (SIGRTMIN is {rtmin})"
            ))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    for (base, at, dir) in [("RTMIN", rtmin, 1), ("RTMAX", rtmax, -1)] {
        if let Some(rest) = name.strip_prefix(base) {
            let n = if rest.is_empty() {
                at
            } else {
                let off = match (dir, rest.as_bytes()[0]) {
                    (1, b'+') | (-1, b'-') => rest[1..].parse::<i32>().map_err(|_| unknown())?,
                    _ => return Err(unknown()),
                };
                at + dir * off
            };
            return if (rtmin..=rtmax).contains(&n) {
                Ok(n)
            } else {
                Err(anyhow!(
                    "signal {s:?} is outside SIGRTMIN..SIGRTMAX ({rtmin}..={rtmax})"
                ))
            };
        }
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| unknown())
}

fn ps(root: &Path, format: &str, id: &str, ps_args: &[String]) -> anyhow::Result<i32> {
    let c = Container::load(root, id)?;
    let pids = c.processes()?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or(1);
    println!("{header}");
    for line in lines {
        if let Some(pid) = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&pid) {
                println!("{line}");
            }
        }
    }
    Ok(0)
}

fn list(root: &Path, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let all = Container::list(root)?;
    if quiet {
        for c in &all {
            println!("{}", c.id());
        }
        return Ok(0);
    }
    if format == "json" {
        let v: Vec<serde_json::Value> = all.iter().map(|c| c.oci_state()).collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for c in &all {
        let s = c.oci_state();
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
            c.id(),
            s["pid"],
            s["status"].as_str().unwrap_or_default(),
            c.state.bundle.display(),
            c.state.created,
            if c.state.owner.is_empty() {
                "root"
            } else {
                &c.state.owner
            }
        );
    }
    Ok(0)
}

fn events(root: &Path, id: &str, once: bool, interval: &str) -> anyhow::Result<i32> {
    let every = parse_duration(interval)?;
    loop {
        let c = Container::load(root, id)?;
        if c.status() == Status::Stopped {
            bail!("container {id}: is stopped");
        }
        let cg = c
            .cgroup()
            .ok_or_else(|| anyhow!("container {id}: has no cgroup"))?;
        let stats = cg.stats()?;
        println!(
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": stats})
        );
        if once {
            return Ok(0);
        }
        std::thread::sleep(every);
    }
}

fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("--interval {s}: not a duration like 5s"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "" | "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => bail!("--interval {s}: unknown unit {unit}"),
    })
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "relatime",
            "norelatime", "strictatime", "nostrictatime", "bind", "rbind", "private", "rprivate", "shared",
            "rshared", "slave", "rslave", "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "memoryPolicy": {"modes": rpaas_runtime::mempolicy::MODES, "flags": rpaas_runtime::mempolicy::FLAGS},
            "netDevices": {"enabled": true}
        },
        "annotations": {"io.github.rpaas.keeper": "create --keeper"}
    })
}

/// `spec`: a default config close to runc's, running `sh`.
pub fn default_spec() -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "rpaas",
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
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}
