//! `create`: the steps, in order, each recorded in state.json before it is
//! done so that `delete --force` and `gc` can undo a create killed anywhere.
//!
//! 1. validate the bundle (nothing exists yet if it is bad)
//! 2. make `<root>/<id>/` (atomic mkdir: the id is taken), write state "creating"
//! 3. record + create the cgroup, apply resources
//! 4. make the start fifo
//! 5. (keeper mode) fork the keeper, which does 6–8 and stays as init's parent
//! 6. clone init into its namespaces; put it in the cgroup; let it set up
//! 7. run createRuntime/prestart hooks when init asks
//! 8. write state "created" with init's pid + start time, the pid file; release init

mod clone;
pub(crate) mod init;
pub(crate) mod sync;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::cgroups::Cgroup;
use crate::state::{self, Dir, Phase, ProcessId, State, Step};
use crate::{failpoint, hooks, keeper, namespaces, process, security, spec};
use crate::{Error, Result};

use self::clone::{clone_child, Forked};
use self::sync::{ChildMsg, ParentMsg};

/// Everything `create` (and `run`) is told.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Fork a keeper that stays the parent of init and records its exit.
    pub keeper: bool,
    /// Keeper mode: capture stdout/stderr into `<root>/<id>/log` (detached runs).
    pub log_to_file: bool,
    /// Rotate the log file past this size (bytes; 0 = default 10 MiB).
    pub log_max_size: u64,
    /// Log files kept, the live one included (0 = default 5).
    pub log_max_files: u32,
    pub log_format: keeper::LogFormat,
}

/// What a successful create leaves: the state on disk.
///
/// Forks: refused (an error naming the thread count) unless this process
/// has a single thread.
pub fn create(opts: &CreateOptions) -> Result<State> {
    // First, before this process opens any fd of its own: the fds to pass
    // must be the caller's, or init would inherit the runtime's (the lock).
    check_preserved_fds(opts.preserve_fds)?;
    check_single_threaded("create")?;
    state::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::io("open bundle", &opts.bundle, e))?;
    let config_bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| Error::io("read", bundle.join("config.json"), e))?;
    let spec = spec::parse_config(&config_bytes)?;
    spec::validate(&spec)?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    let linux = spec.linux().as_ref();
    let proc_spec = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing"))?;
    let process = process::Plan::from_spec(
        proc_spec,
        linux.and_then(|l| l.seccomp().as_ref()),
        "process",
    )?;
    let ns = namespaces::Plan::from_spec(linux.and_then(|l| l.namespaces().as_ref()));
    validate_sysctls(&spec)?;
    // runtime-spec 1.3 fields, checked before anything is made.
    crate::mempolicy::plan(&spec)?;
    crate::netdev::plan(&spec, &ns)?;
    if process.terminal && opts.console_socket.is_none() {
        return Err(Error::spec(
            "process.terminal",
            "true, but no --console-socket was given",
        ));
    }

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.root)
        .map_err(|e| Error::io("create state root", &opts.root, e))?;
    // The dir appears with its lock held (gc never sees it unowned).
    let (dir, lock) = Dir::claim(&opts.root, &opts.id)?;
    above_preserved(lock.raw_fd(), opts.preserve_fds, "the container lock")?;
    let mut st = State {
        log_to_file: opts.keeper && opts.log_to_file,
        ..State::creating(
            &opts.id,
            bundle.clone(),
            rootfs.clone(),
            spec.annotations().clone().unwrap_or_default(),
        )
    };
    let mut undo = Undo {
        dir: &dir,
        cgroup: None,
        init: None,
        armed: true,
    };
    // The cgroup is recorded in the very first state write, before it exists:
    // one write fewer on the start path, same undo guarantee.
    let cg = Cgroup::new(
        &opts.id,
        linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy())
            .as_deref(),
    )?;
    // A cgroup that already holds processes is not ours to take: pause would
    // freeze them and delete --force would kill them (runc leaves them be).
    refuse_busy_cgroup(&cg)?;
    st.cgroup_path = Some(cg.path().to_string());
    st.steps.push(Step::Cgroup {
        path: cg.path().to_string(),
    });
    state::write_atomic(&dir.config_copy(), &config_bytes)?;
    dir.write_state(&st)?;
    failpoint::crash("create::state-written");
    // This root's proof that it made the cgroup (gc collects only such orphans).
    state::write_cgroup_marker(&opts.root, &opts.id, cg.path())?;
    failpoint::crash("create::cgroup-recorded");
    // Armed before mkdir: a create failing halfway leaves dirs in some hierarchies only.
    undo.cgroup = Some(cg.clone());
    cg.create()?;
    failpoint::crash("create::cgroup-created");
    if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
        let mut res = res.clone();
        let mut rules = res.devices().clone().unwrap_or_default();
        if !rules.is_empty() {
            rules.extend(crate::cgroups::default_device_rules());
            res.set_devices(Some(rules));
        }
        cg.apply(&res)?;
    }
    failpoint::crash("create::resources-applied");

    nix::unistd::mkfifo(&dir.fifo(), nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", dir.fifo().display()), e))?;
    // The umask took away "others may write": init may run as any user.
    std::fs::set_permissions(
        dir.fifo(),
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .map_err(|e| Error::io("chmod", dir.fifo(), e))?;
    // nix's open, not std's: std masks custom_flags with O_ACCMODE, and
    // musl's O_ACCMODE includes O_PATH, so std would open the fifo for
    // reading there and block until a writer came.
    let fifo: OwnedFd = nix::fcntl::open(
        &dir.fifo(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", dir.fifo().display()), e))?;
    let console = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    failpoint::crash("create::fifo-made");
    let dmz = security::Dmz::new()?;

    for (fd, what) in [(fifo.as_raw_fd(), "the start fifo"), (dmz.raw(), "the dmz")]
        .into_iter()
        .chain(
            console
                .as_ref()
                .map(|c| (c.as_raw_fd(), "the console socket")),
        )
    {
        above_preserved(fd, opts.preserve_fds, what)?;
    }

    let ctx = Spawn {
        opts,
        spec: &spec,
        rootfs,
        process: &process,
        ns: &ns,
        fifo: &fifo,
        console: console.as_ref(),
        cgroup: &cg,
        dmz: &dmz,
    };

    if opts.keeper {
        spawn_with_keeper(&ctx, &dir, &mut st, lock)?;
        undo.armed = false;
        // The keeper wrote the committed state: read it back for the caller.
        return dir.read_state();
    }

    let init_pid = ctx.spawn_init(&mut st)?;
    undo.init = Some(init_pid.0);
    commit(&ctx, &dir, &mut st, init_pid, None)?;
    undo.armed = false;
    drop(lock);
    Ok(st)
}

/// Everything the clone step needs, shared by direct and keeper mode.
struct Spawn<'a> {
    opts: &'a CreateOptions,
    spec: &'a Spec,
    rootfs: PathBuf,
    process: &'a process::Plan,
    ns: &'a namespaces::Plan,
    fifo: &'a OwnedFd,
    console: Option<&'a UnixStream>,
    cgroup: &'a Cgroup,
    /// What init execs last (CVE-2019-5736, security/dmz.rs).
    dmz: &'a security::Dmz,
}

/// The init process, and the runtime's end of its sync channel.
struct InitChild(i32, sync::Channel);

impl Spawn<'_> {
    /// Clone init and drive its setup until it reports Ready.
    fn spawn_init(&self, st: &mut State) -> Result<InitChild> {
        if let Some(path) = self.ns.pid_path() {
            namespaces::join(CloneFlags::CLONE_NEWPID, path)?;
        }
        let (parent_end, child_end) = sync::pair()?;
        for ch in [&parent_end, &child_end] {
            above_preserved(ch.raw(), self.opts.preserve_fds, "the init sync socket")?;
        }
        let userns = self.ns.new.contains(CloneFlags::CLONE_NEWUSER);
        // Namespaces made by clone itself; cgroup and time come later in init
        // (after joining the cgroup, resp. because time offsets apply at exec).
        let late = CloneFlags::CLONE_NEWCGROUP | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        let flags = self.ns.new - late;
        let hook_state = oci_state_json(st, hooks::CREATE_STATUS, None);
        let runtime_hooks = self.spec.hooks().as_ref().is_some_and(|h| {
            h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
                || h.prestart().as_ref().is_some_and(|v| !v.is_empty())
        });
        failpoint::crash("create::before-clone");
        match clone_child(flags.bits(), None)? {
            Forked::Child => {
                drop(parent_end);
                init::main(
                    init::InitArgs {
                        id: &self.opts.id,
                        spec: self.spec,
                        rootfs: self.rootfs.clone(),
                        process: self.process,
                        ns: self.ns,
                        no_pivot: self.opts.no_pivot,
                        preserve_fds: self.opts.preserve_fds,
                        fifo: self.fifo,
                        console: self.console,
                        dmz: self.dmz,
                        runtime_hooks,
                        hook_state,
                    },
                    child_end,
                )
            }
            Forked::Parent { child } => {
                drop(child_end);
                let guard = KillOnDrop(Some(child));
                // Not written to disk here: until init is in the cgroup it dies
                // with us (parent-death signal, EOF on the sync socket), after
                // that the recorded cgroup finds it. The "created" write records it.
                st.steps.push(Step::Init { pid: child });
                failpoint::crash("create::init-cloned");
                if userns {
                    write_id_maps(child, self.spec)?;
                }
                self.cgroup.add_pid(child)?;
                // linux.netDevices: from the host's netns into init's new one.
                crate::netdev::move_into(&crate::netdev::plan(self.spec, self.ns)?, child)?;
                if let Some(adj) = self.process.oom_score_adj {
                    security::set_oom_score_adj(Some(child), adj)?;
                }
                parent_end.send(&ParentMsg::Go)?;
                let res = self
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.resources().as_ref());
                loop {
                    // A reset connection is init dying too (killed with a reply unread).
                    let msg = match parent_end.recv::<ChildMsg>() {
                        Err(_) if self.cgroup.setup_death_reason(res).is_some() => None,
                        other => other?,
                    };
                    match msg {
                        Some(ChildMsg::Ready) => break,
                        Some(ChildMsg::NeedHooks) => {
                            let state = oci_state_json(st, hooks::CREATE_STATUS, Some(child));
                            let h = self.spec.hooks().as_ref();
                            hooks::run_all(
                                "prestart",
                                h.and_then(|h| h.prestart().as_ref()),
                                &state,
                            )?;
                            hooks::run_all(
                                "createRuntime",
                                h.and_then(|h| h.create_runtime().as_ref()),
                                &state,
                            )?;
                            parent_end.send(&ParentMsg::HooksDone)?;
                        }
                        Some(ChildMsg::NeedMappings) => parent_end.send(&ParentMsg::Go)?,
                        Some(ChildMsg::Failed(msg)) => {
                            return Err(Error::Init {
                                id: self.opts.id.clone(),
                                msg,
                            })
                        }
                        None => {
                            return Err(Error::Init {
                                id: self.opts.id.clone(),
                                msg: self
                                    .cgroup
                                    .setup_death_reason(res)
                                    .unwrap_or_else(|| "init exited during setup".into()),
                            });
                        }
                    }
                }
                failpoint::crash("create::init-ready");
                std::mem::forget(guard);
                Ok(InitChild(child, parent_end))
            }
        }
    }
}

/// Write state "created", the pid file, and release init to wait for start.
fn commit(
    ctx: &Spawn,
    dir: &Dir,
    st: &mut State,
    init: InitChild,
    keeper: Option<ProcessId>,
) -> Result<ProcessId> {
    let InitChild(pid, sync) = init;
    let id = ProcessId::of(pid).map_err(|_| Error::Init {
        id: ctx.opts.id.clone(),
        msg: "init exited during setup".into(),
    })?;
    st.init = Some(id);
    // What init runs until it passes the start fifo: the runtime itself.
    st.init_exe = state::FileId::exe_of(pid);
    st.keeper = keeper;
    st.phase = Phase::Created;
    st.namespaces = ctx
        .ns
        .join
        .iter()
        .map(|(f, p)| (namespaces::proc_name(*f).to_string(), p.clone()))
        .collect();
    dir.write_state(st)?;
    failpoint::crash("create::committed");
    if let Some(pf) = &ctx.opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    sync.send(&ParentMsg::Commit)?;
    Ok(id)
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    // runc writes the pid without a newline, through a temp file + rename.
    let tmp = path.with_extension("rpaas-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename pid file", path, e))
}

/// Keeper mode: fork the keeper; it clones init, commits the state, tells us,
/// and stays behind as init's parent to record its exit.
fn spawn_with_keeper(ctx: &Spawn, dir: &Dir, st: &mut State, lock: state::Lock) -> Result<()> {
    let (mut report_r, report_w) =
        std::io::pipe().map_err(|e| Error::io("pipe", "keeper report", e))?;
    let log_pipes = if st.log_to_file {
        Some((pipe_pair()?, pipe_pair()?))
    } else {
        None
    };
    // SAFETY: we are single-threaded; the child only runs our own code and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork keeper", e))? {
        nix::unistd::ForkResult::Child => {
            drop(report_r);
            // The per-container lock (one open file, shared with the create command)
            // stays held here until setup is reported (close_fds_from in keeper_child
            // closes it): if the create command dies meanwhile, delete and gc wait for
            // the keeper instead of removing the cgroup under the init it is adding.
            std::mem::forget(lock);
            let code = keeper_child(ctx, dir, st, report_w, log_pipes);
            // SAFETY: leave without running the create command's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_w);
            drop(log_pipes);
            failpoint::crash("create::keeper-forked");
            let mut answer = String::new();
            let _ = report_r.read_to_string(&mut answer);
            if let Some(err) = answer.strip_prefix("err:") {
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(Error::Init {
                    id: ctx.opts.id.clone(),
                    msg: err.trim().to_string(),
                });
            }
            if answer.trim() != "ok" {
                let _ = nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                return Err(Error::Init {
                    id: ctx.opts.id.clone(),
                    msg: "keeper exited during setup".into(),
                });
            }
            drop(lock);
            Ok(())
        }
    }
}

type PipePair = (OwnedFd, OwnedFd);

fn pipe_pair() -> Result<PipePair> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for container output", e))
}

/// The keeper's life: returns its exit code.
fn keeper_child(
    ctx: &Spawn,
    dir: &Dir,
    st: &mut State,
    mut report: std::io::PipeWriter,
    log_pipes: Option<(PipePair, PipePair)>,
) -> i32 {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    failpoint::crash("keeper::started");
    // init's stdout/stderr become the pipes the keeper drains into the log file.
    let mut readers = None;
    if let Some(((out_r, out_w), (err_r, err_w))) = log_pipes {
        let devnull = std::fs::File::open("/dev/null");
        if let Ok(n) = &devnull {
            let _ = raw_dup2(n.as_raw_fd(), 0);
        }
        let _ = raw_dup2(out_w.as_raw_fd(), 1);
        let _ = raw_dup2(err_w.as_raw_fd(), 2);
        readers = Some((out_r, err_r));
    }
    let result = (|| -> Result<i32> {
        let me = ProcessId::of(nix::unistd::getpid().as_raw())?;
        st.steps.push(Step::Keeper { pid: me.pid });
        let init = ctx.spawn_init(st)?;
        let pid = init.0;
        commit(ctx, dir, st, init, Some(me))?;
        Ok(pid)
    })();
    let init_pid = match result {
        Ok(pid) => {
            let _ = report.write_all(b"ok");
            failpoint::crash("keeper::reported");
            pid
        }
        Err(e) => {
            let _ = report.write_all(format!("err:{}", e.chain()).as_bytes());
            return 1;
        }
    };
    drop(report);
    // Let go of everything the caller gave us: its stdio pipes must see EOF
    // when it exits, and no other fd of the runtime is needed any more.
    if let Ok(n) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = raw_dup2(n.as_raw_fd(), fd);
        }
    }
    let keep: Vec<i32> = readers
        .as_ref()
        .map(|(a, b)| vec![a.as_raw_fd(), b.as_raw_fd()])
        .unwrap_or_default();
    let _ = security::close_fds_from(3, &keep);
    keeper::idle_until_running();
    let log = keeper::LogOptions {
        max_size: ctx.opts.log_max_size,
        max_files: ctx.opts.log_max_files,
        format: ctx.opts.log_format,
    };
    keeper::exec_small(dir, init_pid, ctx.cgroup, readers.as_ref(), &log);
    keeper::run(dir, init_pid, ctx.cgroup, readers, log)
}

/// `create` and `exec` fork (init, the keeper, exec's child) and run code
/// in the child that is sound only when the parent had one thread (no lock
/// held by another thread, no allocator state mid-change): refuse them in a
/// multi-threaded process, which should spawn the `rpaas-run` binary instead.
pub(crate) fn check_single_threaded(op: &str) -> Result<()> {
    let path = "/proc/self/status";
    let status = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    if threads > 1 {
        return Err(Error::Other(format!(
            "{op}: refused in a process with {threads} threads: it forks, which is sound only \
             in a single-threaded process (spawn the rpaas-run binary instead)"
        )));
    }
    Ok(())
}

/// `--preserve-fds N` passes fds 3..3+N: each must be open in the caller.
/// Checked before the runtime opens anything, so the lowest free fds the
/// runtime gets afterwards are all above the range and none of its own (the
/// per-container lock above all: init holding it blocks `start` and `delete`
/// forever) can be passed to the container in place of a missing one.
/// `create`, `run` and `exec` call it first.
pub fn check_preserved_fds(n: i32) -> Result<()> {
    if n < 0 {
        return Err(Error::Other(format!("--preserve-fds {n}: is negative")));
    }
    let missing: Vec<i32> = (3..3i32.saturating_add(n))
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the flags of an fd number.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags < 0
        })
        .take(8)
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::Other(format!(
            "--preserve-fds {n}: fds 3..={} must be open in the caller, fd {first} is not{}",
            2 + n,
            if missing.len() > 1 {
                format!(" (nor {:?})", &missing[1..])
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

/// A runtime fd init holds while it sets up must not be in the preserved
/// range (it would reach the container); [`check_preserved_fds`] makes this
/// hold, this says so if something opened an fd before it.
fn above_preserved(fd: i32, n: i32, what: &str) -> Result<()> {
    if fd < 3 + n {
        return Err(Error::Other(format!(
            "--preserve-fds {n}: {what} got fd {fd}, inside the preserved range 3..={}",
            2 + n
        )));
    }
    Ok(())
}

/// Refuse a cgroup (linux.cgroupsPath) that already holds processes.
fn refuse_busy_cgroup(cg: &Cgroup) -> Result<()> {
    if !cg.exists() {
        return Ok(());
    }
    let pids = cg.pids().unwrap_or_default();
    if pids.is_empty() {
        return Ok(());
    }
    let shown: Vec<i32> = pids.iter().copied().take(5).collect();
    Err(Error::spec(
        "linux.cgroupsPath",
        format!(
            "cgroup {} already holds {} process(es) (pids {shown:?}{}): a container needs a cgroup of its own",
            cg.path(),
            pids.len(),
            if pids.len() > shown.len() { ", …" } else { "" }
        ),
    ))
}

/// Undo what a failed create made, in reverse order.
struct Undo<'a> {
    dir: &'a Dir,
    cgroup: Option<Cgroup>,
    init: Option<i32>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.init {
            kill_and_reap(pid);
        }
        if let Some(cg) = &self.cgroup {
            for pid in cg.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = cg.destroy();
        }
        if let (Some(root), Some(id)) = (self.dir.path.parent(), self.dir.path.file_name()) {
            let _ = state::remove_cgroup_marker(root, &id.to_string_lossy());
        }
        let _ = std::fs::remove_dir_all(&self.dir.path);
    }
}

/// Kills a child we cloned if setup fails before it is committed.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            kill_and_reap(pid);
        }
    }
}

fn kill_and_reap(pid: i32) {
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(p, None);
}

fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<LinuxIdMapping>>| -> String {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    for (file, text, field) in [
        ("uid_map", uid, "linux.uidMappings"),
        ("gid_map", gid, "linux.gidMappings"),
    ] {
        if text.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes())
            .map_err(|e| Error::spec(field, format!("write {path}: {e}")))?;
    }
    Ok(())
}

fn validate_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let flags = security::NsFlags::from_spec(spec)?;
    for (k, v) in sysctls {
        security::validate_sysctl(k, v, &flags)?;
    }
    Ok(())
}

/// The OCI state document (what `state` prints and hooks read on stdin).
pub fn oci_state_json(st: &State, status: &str, pid: Option<i32>) -> String {
    let v = serde_json::json!({
        "ociVersion": st.oci_version,
        "id": st.id,
        "status": status,
        "pid": pid.or(st.init.map(|i| i.pid)).unwrap_or(0),
        "bundle": st.bundle,
        "annotations": st.annotations,
    });
    v.to_string()
}

/// dup2 on raw fds (nix 0.32's dup2 wants owned fds for both ends).
fn raw_dup2(from: i32, to: i32) -> i32 {
    // SAFETY: dup2 between fds of our own process.
    unsafe { libc::dup2(from, to) }
}
