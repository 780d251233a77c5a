//! File probes: the path exists inside the instance, resolved under its
//! init's root (`/proc/<pid>/root`) without ever leaving it.

use std::os::unix::fs::OpenOptionsExt;

pub(crate) fn check(pid: i32, path: &str) -> Result<(), String> {
    // The magic link is followed on purpose (it is the container's root);
    // the path inside is then resolved by pathrs, never escaping it.
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root"))
        .map_err(|e| format!("open the instance's root: {e}"))?;
    let root = pathrs::Root::from_fd(std::os::fd::OwnedFd::from(dir));
    root.resolve(path)
        .map(drop)
        .map_err(|e| format!("{path}: {e}"))
}
