//! Named network namespaces: a new netns kept alive by a bind mount of its nsfs
//! file onto a path, so that it outlives the thread that made it and can be
//! joined by a container (`linux.namespaces[].path`) and by health checks.
//!
//! As with `ip netns`, the directory holding the files is made a shared mount of
//! itself first: mount namespaces copied from ours later (every container's)
//! then receive the unmount when a netns is removed, instead of pinning it for
//! as long as they live.

use std::fs::File;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};

fn os(op: &'static str, path: &Path, e: nix::Error) -> Error {
    Error::Netlink {
        netns: path.display().to_string(),
        iface: String::new(),
        op,
        source: std::io::Error::from(e),
    }
}

/// Make `dir` (created if missing) a shared mount point of its own.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Netlink {
        netns: dir.display().to_string(),
        iface: String::new(),
        op: "mkdir",
        source: e,
    })?;
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) if is_mount_point(dir) => Ok(()),
        // Not a mount point yet (EINVAL, or shared with its parent's mount):
        // bind it onto itself, then share it.
        _ => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| os("bind netns dir", dir, e))?;
            shared().map_err(|e| os("share netns dir", dir, e))
        }
    }
}

/// Whether `dir` is the root of a mount (its mount id differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return false;
    };
    let want = canon.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Create a new network namespace pinned at `path` (inside a directory made by
/// [`prepare_dir`]). Its loopback is brought up by the runtime when a container
/// joins it; `lo` here stays as the kernel made it. Fails if `path` exists.
pub fn create(path: &Path) -> Result<()> {
    File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::Netlink {
            netns: path.display().to_string(),
            iface: String::new(),
            op: "create netns file",
            source: e,
        })?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: do it on a thread
    // of its own that ends right after the bind mount.
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| os("unshare netns", &target, e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| os("bind netns", &target, e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Netlink {
            netns: path.display().to_string(),
            iface: String::new(),
            op: "create netns",
            source: std::io::Error::other("the netns thread panicked"),
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unpin and remove the netns file at `path`; nothing there is not an error.
/// The namespace itself goes when its last user (a container) is gone.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(os("unmount netns", path, e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Netlink {
            netns: path.display().to_string(),
            iface: String::new(),
            op: "remove netns file",
            source: e,
        }),
    }
}

/// Undo [`prepare_dir`] once no netns is left in `dir`: unmount and remove it.
pub fn release_dir(dir: &Path) -> Result<()> {
    if is_mount_point(dir) {
        umount2(dir, MntFlags::MNT_DETACH).map_err(|e| os("unmount netns dir", dir, e))?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Netlink {
            netns: dir.display().to_string(),
            iface: String::new(),
            op: "remove netns dir",
            source: e,
        }),
    }
}

/// Whether `path` holds a live pinned netns (not just a leftover empty file).
pub fn is_pinned(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // An nsfs bind shows the nsfs device, not the filesystem of its directory.
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(f), Some(Ok(d))) => f.dev() != d.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_unescape() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
