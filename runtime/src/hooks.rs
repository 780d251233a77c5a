//! OCI hooks: run a hook binary with the container's state on stdin, bounded
//! by its timeout.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;

use crate::{Error, Result};

/// The `status` the create-time hooks (prestart, createRuntime,
/// createContainer; startContainer too) read on stdin. runtime-spec defines
/// "creating" as step 2 of the lifecycle (the environment being made) and
/// "created" as after step 2; these hooks run at steps 3 to 5 and 7, once
/// the environment "has been created" (config.md's words for each of them).
/// crun sends "created" as well; runc sends "creating" (docs/DECISIONS.md).
pub const CREATE_STATUS: &str = "created";

/// Run each hook of one kind in order.
///
/// prestart, createRuntime, createContainer and startContainer: the first
/// failure stops the rest and is returned (the create or start then fails).
/// poststart and poststop: runtime-spec (up to 1.2, what `features` declares)
/// says a failure is logged as a warning and the remaining hooks and the
/// lifecycle go on; so every hook runs, each failure is a WARN event naming
/// the container and the hook (the CLI writes those to stderr and to --log
/// without any debug setting), and the result is Ok.
pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    let warn_only = matches!(kind, "poststart" | "poststop");
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        match run_one(kind, i, h, state_json) {
            Ok(()) => {}
            Err(e) if warn_only => tracing::warn!(
                "container {}: {} (the remaining hooks and the lifecycle go on)",
                crate::error::shown(&state_id(state_json)),
                e.chain()
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The container id in an OCI state JSON (for messages).
fn state_id(state_json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(state_json)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn run_one(kind: &str, index: usize, hook: &Hook, state_json: &str) -> Result<()> {
    let path = hook.path().display().to_string();
    let err = |reason: String| Error::Hook {
        hook: kind.to_string(),
        index,
        path: path.clone(),
        reason,
    };
    let args = hook.args().clone().unwrap_or_else(|| vec![path.clone()]);
    let mut cmd = Command::new(hook.path());
    if let Some((first, rest)) = args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| err(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout_ms = hook.timeout().map(|t| t * 1000);
    if let Some(ms) = timeout_ms {
        if !wait_exit(child.id() as i32, ms) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("timed out after {}s", ms / 1000)));
        }
    }
    let status = child.wait().map_err(|e| err(format!("wait: {e}")))?;
    if !status.success() {
        return Err(err(format!("failed: {status}")));
    }
    Ok(())
}

/// Wait up to `ms` milliseconds for `pid` to exit (without reaping it).
pub fn wait_exit(pid: i32, ms: i64) -> bool {
    let Some(pidfd) = pidfd_open(pid) else {
        return true;
    };
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms.max(0) as u64);
    loop {
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis() as i32;
        // SAFETY: polling one valid fd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, left) };
        if rc > 0 {
            return true;
        }
        if rc == 0 {
            return false;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// pidfd_open(2), not wrapped by nix 0.32.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success we own the returned fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
