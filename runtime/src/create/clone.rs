//! Fork a child into new namespaces: clone3 first, plain clone as fallback.
//!
//! Neither nix nor libc wraps clone3, and nix's `clone` insists on a separate
//! stack and a callback; we want fork semantics (the child continues on a copy
//! of our stack) with namespace flags, which both syscalls give when no stack
//! is passed. The caller is single-threaded, so the child may allocate.

use nix::errno::Errno;

use crate::{Error, Result};

/// Who we are after the clone.
pub enum Forked {
    Parent { child: i32 },
    Child,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Clone with `flags` (CLONE_NEW* bits), SIGCHLD to the parent on exit.
///
/// `cgroup_fd`: a cgroup v2 directory fd to start the child in (CLONE_INTO_CGROUP),
/// saving a write to cgroup.procs; ignored by the fallback.
pub fn clone_child(flags: libc::c_int, cgroup_fd: Option<i32>) -> Result<Forked> {
    let mut args = CloneArgs {
        flags: flags as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        // CLONE_INTO_CGROUP (0x200000000) overflows libc's c_int constant.
        args.flags |= 0x2_0000_0000;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 without a stack behaves like fork; the struct outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let rc = match rc {
        -1 => match Errno::last() {
            // clone3 missing (old kernel, or filtered by a seccomp profile of our caller).
            Errno::ENOSYS | Errno::EPERM if cgroup_fd.is_none() => clone_fallback(flags)?,
            Errno::ENOSYS => return clone_child(flags, None),
            e => return Err(Error::sys(format!("clone3 (flags {flags:#x})"), e)),
        },
        pid => pid,
    };
    Ok(if rc == 0 {
        Forked::Child
    } else {
        Forked::Parent { child: rc as i32 }
    })
}

fn clone_fallback(flags: libc::c_int) -> Result<libc::c_long> {
    // SAFETY: raw clone with a NULL stack has fork semantics on x86_64
    // (argument order: flags, stack, parent_tid, child_tid, tls).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc == -1 {
        return Err(Error::sys(
            format!("clone (flags {flags:#x})"),
            Errno::last(),
        ));
    }
    Ok(rc)
}
