//! `login`: a person's session inside a running container, read-only or
//! read-write, on a pty or on the caller's stdio.
//!
//! Processes (the runtime is single-threaded here, as in `exec`):
//! - the runtime joins init's pid namespace for its children and forks **A**;
//!   the runtime puts A in the container's cgroup, then lets it go;
//! - A joins the container's other namespaces through a pidfd of init, makes
//!   the pty in the container's devpts (the master goes to the console
//!   socket; the slave is found with TIOCGPTPEER, never by a path) and, in a
//!   read-only session, makes the session's mount tree and pid namespace
//!   (below); it forks the session, drops every capability and waits;
//! - read-only: **B**, pid 1 of a pid namespace of the session's own (nested
//!   under the container's), forks **C**, drops every capability and reaps
//!   until C exits. When B exits the kernel kills every process of the
//!   session, whatever they did (setsid, double fork);
//! - **C** (the session, a child of A in a read-write session) becomes the
//!   session leader with the pty as its controlling terminal, takes its
//!   identity and execs the command through the sealed dmz.
//!
//! A has PR_SET_PDEATHSIG(SIGKILL) against the runtime, B against A, C
//! against its parent: a runtime killed from outside takes the session with
//! it (read-only: B's death empties the nested pid namespace; read-write: C
//! dies, and the pty's hangup reaches the rest of its foreground).
//!
//! Read-only (docs/DECISIONS.md, "login"): a mount namespace of the
//! session's own, made after joining the container's: unshare(CLONE_NEWNS)
//! copies the container's tree, which is made private and then read-only
//! recursively with one mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY); a
//! scratch tmpfs on /tmp. The session runs as [`READ_ONLY_UID`], which owns
//! no file and no process of the app, with CAP_DAC_READ_SEARCH only (reads
//! the app's 0600 logs; open_by_handle_at, its one dangerous use, is denied),
//! no_new_privs, the container's seccomp profile and ours
//! ([`read_only_seccomp`]) which denies sending signals, ptrace, mounts,
//! namespaces, modules, bpf, uid changes, io_uring and keyrings.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, Process};

use crate::container::{Container, Status};
use crate::create::sync::{self, ChildMsg, ParentMsg};
use crate::{hooks, namespaces, process, security};
use crate::{Error, Result};

/// The uid and gid of a read-only session: nobody's, not the app's (which
/// could signal and ptrace the app) and not root (a root app's processes).
pub const READ_ONLY_UID: u32 = 2_147_483_646;

/// What the session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read-only",
            Mode::ReadWrite => "read-write",
        }
    }
}

#[derive(Debug)]
pub struct LoginOptions {
    pub mode: Mode,
    /// The command (empty: the container's /bin/sh, interactive).
    pub args: Vec<String>,
    /// KEY=VALUE added to the container's environment.
    pub env: Vec<String>,
    /// Where the pty master goes; None: the session uses our stdio.
    pub console: Option<UnixStream>,
    /// The terminal's size (rows, cols), set on the pty.
    pub size: Option<(u16, u16)>,
}

/// A started session: wait for `pid` with [`crate::exec::wait_code`].
#[derive(Debug)]
pub struct Session {
    pub pid: Pid,
}

/// Start a session in the running container.
pub fn start(container: &Container, opts: &LoginOptions) -> Result<Session> {
    let id = container.id().to_string();
    let refuse = |reason: &str| Error::State {
        id: id.clone(),
        reason: format!("cannot log in: {reason}"),
    };
    let status = container.status();
    if status != Status::Running {
        return Err(refuse(&format!("container is {}", status.as_str())));
    }
    let init = container
        .live_init()
        .ok_or_else(|| refuse("init is gone"))?;
    let spec = container.spec()?;
    let base = spec
        .process()
        .clone()
        .ok_or_else(|| Error::spec("process", "the container has no process"))?;
    let container_seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(security::compile_seccomp)
        .transpose()?;
    let plan = session_plan(
        &base,
        opts,
        spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()),
    )?;
    let ro_filter = match opts.mode {
        Mode::ReadOnly => Some(security::compile_seccomp(&read_only_seccomp()?)?),
        Mode::ReadWrite => None,
    };
    let pidfd = hooks::pidfd_open(init.pid).ok_or_else(|| refuse("init is gone"))?;
    if !init.is_alive() {
        return Err(refuse("init is gone"));
    }
    let flags = crate::exec::namespaces_to_join(init.pid);
    if flags.contains(CloneFlags::CLONE_NEWPID) {
        namespaces::join(
            CloneFlags::CLONE_NEWPID,
            &PathBuf::from(format!("/proc/{}/ns/pid", init.pid)),
        )?;
    }
    let (parent_end, child_end) = sync::pair()?;
    let cgroup = container.cgroup();
    let dmz = security::Dmz::new()?;
    let runtime_pid = nix::unistd::getpid();

    // SAFETY: rpaas-run is single-threaded here; the child runs our code then execve/_exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork login process", e))? {
        ForkResult::Child => {
            drop(parent_end);
            let steps = Steps {
                pidfd: &pidfd,
                flags,
                plan: &plan,
                container_seccomp: container_seccomp.as_ref(),
                ro_filter: ro_filter.as_ref(),
                opts,
                sync: &child_end,
                dmz: &dmz,
            };
            let err = match steps.run_a(runtime_pid) {
                Ok(code) => {
                    // SAFETY: leave without the runtime's destructors.
                    unsafe { libc::_exit(code) }
                }
                Err(e) => e,
            };
            let _ = child_end.send(&ChildMsg::failed(err.chain()));
            // SAFETY: as above.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let started = (|| -> Result<()> {
                if let Some(cg) = &cgroup {
                    cg.add_pid(child.as_raw())?;
                }
                parent_end.send(&ParentMsg::Go)?;
                // Every child's end closes at the session's execve.
                if let Some(ChildMsg::Failed(msg)) = parent_end.recv::<ChildMsg>()? {
                    return Err(Error::Init {
                        id: id.clone(),
                        msg: format!("login: {msg}"),
                    });
                }
                Ok(())
            })();
            if let Err(e) = started {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = crate::exec::wait_code(child);
                return Err(e);
            }
            Ok(Session { pid: child })
        }
    }
}

/// The session's process: the container's, with the command, environment
/// and identity of the mode.
fn session_plan(
    base: &Process,
    opts: &LoginOptions,
    seccomp: Option<&LinuxSeccomp>,
) -> Result<process::Plan> {
    let mut p = base.clone();
    let args = if opts.args.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        opts.args.clone()
    };
    p.set_args(Some(args));
    p.set_terminal(Some(opts.console.is_some()));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if opts.console.is_some() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p.set_env(Some(env));
    let mut user = p.user().clone();
    user.set_additional_gids(None);
    user.set_umask(None);
    match opts.mode {
        Mode::ReadWrite => {
            user.set_uid(0);
            user.set_gid(0);
            if let Some(mut caps) = p.capabilities().clone() {
                caps.set_inheritable(None);
                caps.set_ambient(None);
                p.set_capabilities(Some(caps));
            }
        }
        Mode::ReadOnly => {
            user.set_uid(READ_ONLY_UID);
            user.set_gid(READ_ONLY_UID);
            let one: oci_spec::runtime::Capabilities =
                [oci_spec::runtime::Capability::DacReadSearch]
                    .into_iter()
                    .collect();
            let mut caps = LinuxCapabilities::default();
            caps.set_bounding(Some(one.clone()));
            caps.set_effective(Some(one.clone()));
            caps.set_permitted(Some(one.clone()));
            // Ambient (and so inheritable): kept across the shell's execve
            // and its children's, as a non-root uid would lose it otherwise.
            caps.set_inheritable(Some(one.clone()));
            caps.set_ambient(Some(one));
            p.set_capabilities(Some(caps));
            p.set_no_new_privileges(Some(true));
            let mut env = p.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("HOME="));
            env.push("HOME=/tmp".into());
            p.set_env(Some(env));
        }
    }
    p.set_user(user);
    // Read-write: the container's filter, loaded as `exec` does. Read-only:
    // both filters are loaded by hand after the identity change (`run_c`).
    let seccomp = match opts.mode {
        Mode::ReadWrite => seccomp,
        Mode::ReadOnly => None,
    };
    process::Plan::from_spec(&p, seccomp, "login")
}

/// Our filter for read-only sessions, on top of the container's.
pub fn read_only_seccomp() -> Result<LinuxSeccomp> {
    const DENIED: &[&str] = &[
        // signals to processes (tkill/tgkill name threads, which in the
        // session's pid namespace can only be its own: raise and abort work)
        "kill",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
        "pidfd_send_signal",
        "pidfd_open",
        "pidfd_getfd",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "process_madvise",
        "kcmp",
        // mounts, roots and namespaces
        "mount",
        "umount2",
        "mount_setattr",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "pivot_root",
        "chroot",
        "setns",
        "unshare",
        // the kernel
        "bpf",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "perf_event_open",
        "userfaultfd",
        "iopl",
        "ioperm",
        "swapon",
        "swapoff",
        "reboot",
        "syslog",
        "acct",
        "quotactl",
        "sethostname",
        "setdomainname",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "vhangup",
        "keyctl",
        "add_key",
        "request_key",
        // uid tricks and privileges
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setfsuid",
        "setfsgid",
        "setgroups",
        "capset",
        "personality",
        // CAP_DAC_READ_SEARCH's escape ("shocker")
        "open_by_handle_at",
        "name_to_handle_at",
        // io_uring runs its operations outside this filter
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ];
    let mut rules = vec![serde_json::json!({
        "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM
    })];
    // clone3's flags are behind a pointer: ENOSYS makes libc use clone.
    rules.push(serde_json::json!({
        "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS
    }));
    let ns = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWTIME,
    ];
    for f in ns {
        rules.push(serde_json::json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": f as u64, "valueTwo": f as u64, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    let v = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
    serde_json::from_value(v).map_err(|e| Error::spec("login seccomp", e.to_string()))
}

struct Steps<'a> {
    pidfd: &'a OwnedFd,
    flags: CloneFlags,
    plan: &'a process::Plan,
    container_seccomp: Option<&'a security::SeccompFilter>,
    ro_filter: Option<&'a security::SeccompFilter>,
    opts: &'a LoginOptions,
    sync: &'a sync::Channel,
    dmz: &'a security::Dmz,
}

impl Steps<'_> {
    /// A: returns the session's exit code (or an error before it ran).
    fn run_a(&self, runtime: Pid) -> Result<i32> {
        security::set_dumpable(false)?;
        die_with_parent()?;
        // Our parent is outside the container's pid namespace (0) or, when
        // the container shares ours, the runtime itself.
        let p = nix::unistd::getppid();
        if p.as_raw() != 0 && p != runtime {
            // SAFETY: the runtime is gone: leave at once.
            unsafe { libc::_exit(1) }
        }
        match self.sync.recv::<ParentMsg>()? {
            Some(_) => {}
            // SAFETY: the runtime is gone; leave quietly.
            None => unsafe { libc::_exit(1) },
        }
        let join = self.flags - CloneFlags::CLONE_NEWPID;
        if !join.is_empty() {
            // SAFETY: setns with a pidfd we own and a set of CLONE_NEW* flags (Linux 5.8+).
            if unsafe { libc::setns(self.pidfd.as_raw_fd(), join.bits()) } != 0 {
                return Err(Error::sys(
                    format!("join the container's namespaces {join:?}"),
                    nix::errno::Errno::last(),
                ));
            }
        }
        // From here on every path is resolved inside the container's root.
        let slave = match &self.opts.console {
            Some(sock) => Some(open_pty(sock, self.opts.size)?),
            None => None,
        };
        if self.opts.mode == Mode::ReadOnly {
            read_only_mounts()?;
            namespaces::unshare(CloneFlags::CLONE_NEWPID)?;
        }
        let ppid_seen = nix::unistd::getppid();
        // SAFETY: A is single-threaded (forked from the single-threaded runtime).
        let child =
            match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork the session", e))? {
                ForkResult::Child => {
                    let r = if self.opts.mode == Mode::ReadOnly {
                        self.run_b(slave.as_ref())
                    } else {
                        self.run_c(slave.as_ref()).map(|never| match never {})
                    };
                    let e = match r {
                        Ok(code) => {
                            // SAFETY: leave without destructors.
                            unsafe { libc::_exit(code) }
                        }
                        Err(e) => e,
                    };
                    let _ = self.sync.send(&ChildMsg::failed(e.chain()));
                    // SAFETY: as above.
                    unsafe { libc::_exit(127) }
                }
                ForkResult::Parent { child } => child,
            };
        drop(slave);
        // SAFETY: closing the fds this process no longer needs (ours: no other owner uses them here).
        unsafe {
            libc::close(self.sync.raw());
            libc::close(self.pidfd.as_raw_fd());
            libc::close(self.dmz.raw());
            if let Some(s) = &self.opts.console {
                libc::close(s.as_raw_fd());
            }
        }
        drop_everything();
        if nix::unistd::getppid() != ppid_seen {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
        die_with_parent()?;
        if nix::unistd::getppid() != ppid_seen {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        }
        crate::exec::wait_code(child)
    }

    /// B: pid 1 of the session's pid namespace; reaps until C exits.
    fn run_b(&self, slave: Option<&OwnedFd>) -> Result<i32> {
        die_with_parent()?;
        // SAFETY: single-threaded, as A.
        let c =
            match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork the session", e))? {
                ForkResult::Child => {
                    let e = match self.run_c(slave) {
                        Ok(never) => match never {},
                        Err(e) => e,
                    };
                    let _ = self.sync.send(&ChildMsg::failed(e.chain()));
                    // SAFETY: leave without destructors.
                    unsafe { libc::_exit(127) }
                }
                ForkResult::Parent { child } => child,
            };
        // SAFETY: fds this process no longer needs.
        unsafe {
            libc::close(self.sync.raw());
            libc::close(self.pidfd.as_raw_fd());
            libc::close(self.dmz.raw());
            for fd in 0..3 {
                libc::close(fd);
            }
            if let Some(s) = slave {
                libc::close(s.as_raw_fd());
            }
        }
        drop_everything();
        loop {
            match nix::sys::wait::waitpid(None, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(p, code)) if p == c => return Ok(code),
                Ok(nix::sys::wait::WaitStatus::Signaled(p, s, _)) if p == c => {
                    return Ok(128 + s as i32)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for the session", e)),
            }
        }
    }

    /// C: the session itself.
    fn run_c(&self, slave: Option<&OwnedFd>) -> Result<std::convert::Infallible> {
        if let Some(slave) = slave {
            nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
            // SAFETY: TIOCSCTTY on the pty slave; we are a session leader.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
                return Err(Error::sys(
                    "set controlling terminal",
                    nix::errno::Errno::last(),
                ));
            }
            for target in 0..3 {
                // SAFETY: dup2 onto stdio slots of our own process.
                if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
                    return Err(Error::sys("dup2 pty onto stdio", nix::errno::Errno::last()));
                }
            }
        }
        let plan = self.plan;
        if nix::unistd::chdir(&plan.cwd).is_err() {
            nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
        }
        let program = plan.resolve_program()?;
        let env = plan.full_env();
        security::cloexec_fds_from(3, &[self.sync.raw()])?;
        plan.become_user()?;
        // After the identity change, which clears the parent-death signal.
        die_with_parent()?;
        if let Some(f) = self.ro_filter {
            security::set_no_new_privileges()?;
            if let Some(c) = self.container_seccomp {
                security::load_seccomp(c)?;
            }
            security::load_seccomp(f)?;
        }
        Err(plan.exec(&program, &env, self.dmz, Some(self.sync.raw())))
    }
}

/// PR_SET_PDEATHSIG(SIGKILL).
fn die_with_parent() -> Result<()> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_PDEATHSIG)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A waiter keeps nothing: every capability dropped, no_new_privs.
fn drop_everything() {
    let empty = security::CapSets::default();
    let _ = security::apply_capabilities(&empty);
    let _ = security::set_no_new_privileges();
}

/// The session's mount tree: the container's, copied into a mount namespace
/// of its own, private, read-only all the way down; a scratch tmpfs on /tmp.
fn read_only_mounts() -> Result<()> {
    namespaces::unshare(CloneFlags::CLONE_NEWNS)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let root = c"/";
    // SAFETY: mount_setattr(2) with a valid path and a mount_attr of the documented size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            "mount_setattr / (recursive, read-only, private)",
            nix::errno::Errno::last(),
        ));
    }
    // /tmp only when it is a real directory (no symlink): its scratch tmpfs
    // lives and dies with this mount namespace.
    if std::fs::symlink_metadata("/tmp").is_ok_and(|m| m.is_dir()) {
        nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=1777,size=16m"),
        )
        .map_err(|e| Error::sys("mount the session's scratch tmpfs on /tmp", e))?;
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Make a pty in the container's devpts, send the master on `sock`, return
/// the slave (opened from the master with TIOCGPTPEER: no path to follow).
fn open_pty(sock: &UnixStream, size: Option<(u16, u16)>) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("open /dev/ptmx in the container", e))?;
    nix::pty::grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on a pty master.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    // SAFETY: TIOCGPTPEER returns a new fd for the slave, which we own.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::sys(
            "open the pty slave (TIOCGPTPEER)",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: a fresh fd from the ioctl above.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    send_fd(sock.as_raw_fd(), master.as_raw_fd())?;
    Ok(slave)
}

/// Send one fd with SCM_RIGHTS.
pub fn send_fd(sock: RawFd, fd: RawFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"pty")];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send the pty master", e))?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`] (None: the peer closed first).
pub fn recv_fd(sock: RawFd) -> Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| Error::sys("receive the pty master", e))?;
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("receive the pty master", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: a fd just received with SCM_RIGHTS is ours.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
    }
    Ok(None)
}
