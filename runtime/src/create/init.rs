//! The container's init, between clone and execve: join and create
//! namespaces, set up the rootfs, become the configured user, report Ready,
//! then block on the start fifo until `rpaas-run start`.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

use super::sync::{Channel, ChildMsg, ParentMsg};
use crate::{hooks, namespaces, process, rootfs, security};
use crate::{Error, Result};

/// What init needs; built by the runtime before clone.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub process: &'a process::Plan,
    pub ns: &'a namespaces::Plan,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// O_PATH fd of `<state dir>/exec.fifo`, reopened for writing after setup.
    pub fifo: &'a OwnedFd,
    pub console: Option<&'a UnixStream>,
    /// The sealed program init execs in place of the container's (it execs that).
    pub dmz: &'a security::Dmz,
    /// Ask the runtime to run createRuntime/prestart hooks before pivot_root.
    pub runtime_hooks: bool,
    /// The OCI state JSON given to hooks that init runs itself.
    pub hook_state: String,
}

/// Runs in the child; never returns.
pub fn main(args: InitArgs, sync: Channel) -> ! {
    let err = match setup(&args, &sync) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Before Commit the runtime reports it; after, only our stderr can.
    if sync.send(&ChildMsg::failed(err.chain())).is_err() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("rpaas-run: container {}: {}\n", args.id, err.chain()).as_bytes(),
        );
    }
    // SAFETY: leaving the child without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(1) }
}

fn wait_for(sync: &Channel) -> Result<ParentMsg> {
    match sync.recv::<ParentMsg>()? {
        Some(m) => Ok(m),
        // The runtime died (kill -9): nothing may survive it half-made.
        // SAFETY: as in `main`.
        None => unsafe { libc::_exit(1) },
    }
}

fn setup(a: &InitArgs, sync: &Channel) -> Result<Infallible> {
    // Drop every fd inherited from the runtime but the ones init uses: above
    // all the per-container lock, which `start` must be able to take.
    let mut keep = vec![sync.raw(), a.fifo.as_raw_fd(), a.dmz.raw()];
    keep.extend(a.console.map(|c| c.as_raw_fd()));
    security::close_fds_from(3 + a.preserve_fds, &keep)?;
    // Die with the runtime until the state is committed to disk.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::sys("set parent-death signal", e))?;
    // Nobody in the namespaces we join may ptrace or read us while we hold host fds.
    security::set_dumpable(false)?;
    wait_for(sync)?;
    // root.path and mounts are set up only in a mount namespace of our own:
    // never run the process on the host's (or a joined namespace's) root.
    a.ns.check_own_mount_namespace()?;
    // Hooks read our pid as the runtime sees it; /proc is still the host's here.
    let hook_state = state_with_host_pid(&a.hook_state);

    for (flag, path) in &a.ns.join {
        if *flag != CloneFlags::CLONE_NEWPID {
            namespaces::join(*flag, path)?;
        }
    }
    if a.ns.has(CloneFlags::CLONE_NEWUSER) {
        become_namespace_root()?;
    }
    // In the cgroup by now (the runtime put us there): its namespace shows only our subtree.
    let late = a.ns.new
        & (CloneFlags::CLONE_NEWCGROUP | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    namespaces::unshare(late)?;
    if late.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)) {
        write_time_offsets(a.spec)?;
    }

    if a.ns.new.contains(CloneFlags::CLONE_NEWNET) {
        namespaces::loopback_up()?;
    }
    let linux = a.spec.linux().as_ref();
    if a.ns.has(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = a.spec.hostname() {
            nix::unistd::sethostname(h)
                .map_err(|e| Error::sys(format!("hostname: sethostname {h:?}"), e))?;
        }
        if let Some(d) = a.spec.domainname() {
            set_domainname(d)?;
        }
    }
    for (k, v) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        security::apply_sysctl(k, v)?;
    }

    let plan = rootfs::Plan {
        spec: a.spec,
        rootfs: a.rootfs.clone(),
        no_pivot: a.no_pivot,
        userns: a.ns.has(CloneFlags::CLONE_NEWUSER),
        cgroupns: a.ns.has(CloneFlags::CLONE_NEWCGROUP),
        netns: a.ns.has(CloneFlags::CLONE_NEWNET),
    };
    let prepared = rootfs::prepare(&plan)?;

    if a.runtime_hooks {
        sync.send(&ChildMsg::NeedHooks)?;
        wait_for(sync)?;
    }
    let spec_hooks = a.spec.hooks().as_ref();
    hooks::run_all(
        "createContainer",
        spec_hooks.and_then(|h| h.create_container().as_ref()),
        &hook_state,
    )?;

    rootfs::pivot(&plan)?;
    if a.process.terminal {
        let sock = a.console.ok_or_else(|| {
            Error::spec(
                "process.terminal",
                "true, but no --console-socket was given",
            )
        })?;
        let size = a
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.console_size())
            .map(|s| (s.height() as u16, s.width() as u16));
        crate::console::setup(sock, true, size)?;
    } else {
        // A session of its own, as runc's init: CRIU cannot dump a pid
        // namespace whose init's session leader is outside it.
        let _ = nix::unistd::setsid();
    }
    rootfs::finish(&plan)?;
    drop(prepared);

    // Everything that needs a system call a seccomp profile may deny is done
    // before the filter. Without noNewPrivileges the filter is loaded in
    // `become_user`, while init still has CAP_SYS_ADMIN (runc's and crun's
    // order); after it come only the user and capability switch, the
    // Ready/start handshake and the execve.
    a.process.create_cwd()?;
    // As runc: the cwd is entered as root first (a user may start in a
    // directory it cannot search) and proven to lie inside the container's
    // root (CVE-2024-21626) here, since a profile may deny getcwd. Only if
    // root cannot enter it (a user namespace, root-squashed NFS) is it
    // entered again, and checked, as the user.
    let cwd_as_root = match a.process.enter_cwd() {
        Err(e @ Error::Security { .. }) => return Err(e),
        other => other,
    };
    let program = a.process.resolve_program()?;
    let env = a.process.full_env();
    // linux.memoryPolicy: kept across execve, so set last (crate::mempolicy).
    crate::mempolicy::apply(a.spec)?;

    // No fd of the runtime may reach the container: all but stdio, the
    // preserved ones and the two we still use are closed at execve.
    let first = 3 + a.preserve_fds;
    security::cloexec_fds_from(first, &[sync.raw(), a.fifo.as_raw_fd()])?;

    // From here on a dead runtime shows up as EOF on the sync socket (we then
    // leave): the parent-death signal would also fire when the runtime exits
    // normally right after Commit, before we could clear it.
    nix::sys::prctl::set_pdeathsig(None).map_err(|e| Error::sys("clear parent-death signal", e))?;

    a.process.become_user()?;
    if cwd_as_root.is_err() {
        a.process.enter_cwd()?;
    }
    sync.send(&ChildMsg::Ready)?;
    wait_for(sync)?;

    // Block until `start` opens the fifo for reading (runc's exec.fifo protocol).
    let fifo_path = format!("/proc/self/fd/{}", a.fifo.as_raw_fd());
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo_path)
        .map_err(|e| Error::io("open start fifo", &fifo_path, e))?;
    std::io::Write::write_all(&mut fifo, b"0")
        .map_err(|e| Error::io("write start fifo", &fifo_path, e))?;
    drop(fifo);

    hooks::run_all(
        "startContainer",
        spec_hooks.and_then(|h| h.start_container().as_ref()),
        &hook_state,
    )?;
    // Nobody listens on the sync socket after start: failures go to stderr.
    Err(a.process.exec(&program, &env, a.dmz, None))
}

/// The OCI state JSON with `pid` set to ours in the runtime's pid namespace
/// (read from /proc/self before the container's /proc is mounted).
fn state_with_host_pid(state: &str) -> String {
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<i64>().ok()));
    match (serde_json::from_str::<serde_json::Value>(state), pid) {
        (Ok(mut v), Some(pid)) => {
            v["pid"] = pid.into();
            v.to_string()
        }
        _ => state.to_string(),
    }
}

/// In a new (or joined) user namespace we start as an unmapped id: become
/// its root now, so the mounts and files init makes belong to the mapped root
/// (runc does the same right after the maps are written).
fn become_namespace_root() -> Result<()> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(|e| Error::sys("linux.gidMappings: setgid 0 in the user namespace", e))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .map_err(|e| Error::sys("linux.uidMappings: setuid 0 in the user namespace", e))
}

/// linux.timeOffsets: written once, after unshare(CLONE_NEWTIME) and before
/// anything enters the namespace (our execve does).
fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::spec(
                format!("linux.timeOffsets.{clock}"),
                "only monotonic and boottime can be offset",
            ));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text).map_err(|e| {
        Error::spec(
            "linux.timeOffsets",
            format!("write /proc/self/timens_offsets: {e}"),
        )
    })
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: setdomainname with a pointer/length pair of a live str.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(Error::sys(
            format!("domainname: setdomainname {name:?}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}
