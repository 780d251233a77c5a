//! `exec`: run another process inside a running container: same namespaces
//! (joined through a pidfd of init, in one setns call), same cgroup, the
//! container's seccomp profile, and exactly the capabilities asked for — no
//! inheritable or ambient ones unless the process says so (CVE-2022-29162).

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::container::{Container, Status};
use crate::create::sync::{self, ChildMsg, ParentMsg};
use crate::{console, failpoint, hooks, namespaces, process, security};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// Run the process; returns its exit code (0 when detached).
pub fn exec(container: &Container, opts: &ExecOptions) -> Result<i32> {
    crate::create::check_preserved_fds(opts.preserve_fds)?;
    crate::create::check_single_threaded("exec")?;
    let status = container.status();
    if status != Status::Running {
        return Err(Error::State {
            id: container.id().to_string(),
            reason: format!("cannot exec: container is {}", status.as_str()),
        });
    }
    let init = container.live_init().ok_or_else(|| Error::State {
        id: container.id().to_string(),
        reason: "cannot exec: init is gone".into(),
    })?;
    let spec = container.spec()?;
    let linux = spec.linux().as_ref();
    let plan = process::Plan::from_spec(
        &opts.process,
        linux.and_then(|l| l.seccomp().as_ref()),
        "process",
    )?;
    if plan.terminal && opts.console_socket.is_none() {
        return Err(Error::spec(
            "process.terminal",
            "true, but no --console-socket was given",
        ));
    }
    let console = opts
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;

    let pidfd = hooks::pidfd_open(init.pid).ok_or_else(|| Error::State {
        id: container.id().to_string(),
        reason: "cannot exec: init is gone".into(),
    })?;
    if !init.is_alive() {
        return Err(Error::State {
            id: container.id().to_string(),
            reason: "cannot exec: init is gone".into(),
        });
    }
    let flags = namespaces_to_join(init.pid);
    // A pid namespace is entered for our children: do it here, before the fork.
    if flags.contains(CloneFlags::CLONE_NEWPID) {
        namespaces::join(
            CloneFlags::CLONE_NEWPID,
            &PathBuf::from(format!("/proc/{}/ns/pid", init.pid)),
        )?;
    }
    exec_forked(container, opts, &pidfd, flags, &plan, console)
}

/// Which of `pid`'s namespaces differ from ours: only those are joined.
/// Read from the host's /proc before any namespace is entered.
pub(crate) fn namespaces_to_join(pid: i32) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for f in [
        CloneFlags::CLONE_NEWUSER,
        CloneFlags::CLONE_NEWNS,
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWIPC,
        CloneFlags::CLONE_NEWUTS,
        CloneFlags::CLONE_NEWCGROUP,
        CloneFlags::CLONE_NEWPID,
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    ] {
        let name = namespaces::proc_name(f);
        if !same_file(
            &format!("/proc/{pid}/ns/{name}"),
            &format!("/proc/self/ns/{name}"),
        ) {
            flags |= f;
        }
    }
    flags
}

fn exec_forked(
    container: &Container,
    opts: &ExecOptions,
    pidfd: &std::os::fd::OwnedFd,
    flags: CloneFlags,
    plan: &process::Plan,
    console: Option<std::os::unix::net::UnixStream>,
) -> Result<i32> {
    let (parent_end, child_end) = sync::pair()?;
    let cgroup = container.cgroup();
    let dmz = security::Dmz::new()?;

    // SAFETY: rpaas-run is single-threaded here; the child runs our code then execve/_exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork exec process", e))? {
        nix::unistd::ForkResult::Child => {
            drop(parent_end);
            let err = match child(
                pidfd,
                flags,
                plan,
                console.as_ref(),
                opts.preserve_fds,
                &child_end,
                &dmz,
            ) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = child_end.send(&ChildMsg::failed(err.chain()));
            // SAFETY: leave the child without the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(child_end);
            failpoint::crash("exec::forked");
            // Any failure from here on leaves no process behind: a caller
            // told "exec failed" must not find it running (runc kills it too,
            // e.g. when the --pid-file cannot be written).
            let started = (|| -> Result<()> {
                if let Some(cg) = &cgroup {
                    cg.add_pid(child.as_raw())?;
                }
                failpoint::crash("exec::in-cgroup");
                parent_end.send(&ParentMsg::Go)?;
                // The child's end closes at a successful execve (close-on-exec).
                if let Some(ChildMsg::Failed(msg)) = parent_end.recv::<ChildMsg>()? {
                    return Err(Error::Init {
                        id: container.id().to_string(),
                        msg: format!("exec: {msg}"),
                    });
                }
                failpoint::crash("exec::started");
                if let Some(pf) = &opts.pid_file {
                    crate::create::write_pid_file(pf, child.as_raw())?;
                }
                Ok(())
            })();
            if let Err(e) = started {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = wait_code(child);
                return Err(e);
            }
            if opts.detach {
                return Ok(0);
            }
            wait_code(child)
        }
    }
}

/// Exit code as a shell reports it (128+signal when killed).
pub fn wait_code(child: nix::unistd::Pid) -> Result<i32> {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("wait for process", e)),
        }
    }
}

fn child(
    pidfd: &std::os::fd::OwnedFd,
    flags: CloneFlags,
    plan: &process::Plan,
    console: Option<&std::os::unix::net::UnixStream>,
    preserve_fds: i32,
    sync: &sync::Channel,
    dmz: &security::Dmz,
) -> Result<std::convert::Infallible> {
    security::set_dumpable(false)?;
    match sync.recv::<ParentMsg>()? {
        Some(_) => {}
        // SAFETY: the runtime is gone; leave quietly.
        None => unsafe { libc::_exit(1) },
    }
    let join = flags - CloneFlags::CLONE_NEWPID;
    if !join.is_empty() {
        // SAFETY: setns with a pidfd we own and a set of CLONE_NEW* flags (Linux 5.8+).
        let rc = unsafe { libc::setns(pidfd.as_raw_fd(), join.bits()) };
        if rc != 0 {
            return Err(Error::sys(
                format!("join the container's namespaces {join:?}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    if plan.terminal {
        if let Some(sock) = console {
            console::setup(sock, false, None)?;
        }
    }
    // As in init: cwd (entered as root, proven inside the root), program,
    // env and fds before `become_user` loads a seccomp filter that may deny them.
    let cwd_as_root = match plan.enter_cwd() {
        Err(e @ Error::Security { .. }) => return Err(e),
        other => other,
    };
    let program = plan.resolve_program()?;
    let env = plan.full_env();
    security::cloexec_fds_from(3 + preserve_fds, &[sync.raw()])?;
    plan.become_user()?;
    if cwd_as_root.is_err() {
        plan.enter_cwd()?;
    }
    Err(plan.exec(&program, &env, dmz, Some(sync.raw())))
}

fn same_file(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}
