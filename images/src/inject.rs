//! Writing files into a prepared container's writable layer (config files, the app
//! package) before it starts. They are real files of the rootfs, not bind mounts, so
//! a tool inside that replaces a file by rename keeps working.
//!
//! Each file goes to a temporary name in its target directory (resolved inside the
//! root fd), gets its mode/owner, is fsynced, then renamed over the destination.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{fchown, Gid, Uid};

use crate::fsroot::{CleanPath, Root};
use crate::{Error, Result};

/// Where an injected file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    HostFile(PathBuf),
}

/// One file to place in the container.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Absolute path inside the container.
    pub dest: PathBuf,
    pub source: Source,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileSpec {
    pub fn new(dest: impl Into<PathBuf>, source: Source) -> FileSpec {
        FileSpec {
            dest: dest.into(),
            source,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }
}

/// Write `file` into the rootfs at `rootfs` (the mounted writable snapshot).
pub fn inject(rootfs: &Path, file: &FileSpec) -> Result<()> {
    let root = Root::open(rootfs)?;
    inject_at(&root, file)
}

pub fn inject_at(root: &Root, file: &FileSpec) -> Result<()> {
    let shown = file.dest.display().to_string();
    let err = |reason: String| Error::Config {
        reference: root.path().display().to_string(),
        field: format!("file {shown}"),
        reason,
    };
    let dest = CleanPath::new(&file.dest)
        .map_err(err)?
        .ok_or_else(|| err("destination is the root directory".into()))?;
    let (parent, name) = dest.split();
    let dir = root.mkdir_all(parent.as_ref())?;
    let tmp_name = format!(
        ".rpaas-inject-{}-{}",
        std::process::id(),
        name.to_string_lossy()
    );
    let fd = openat(
        &dir,
        tmp_name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| root.err("create", &dest.as_path().with_file_name(&tmp_name), e))?;
    let mut out = std::fs::File::from(fd);
    let res = (|| -> Result<()> {
        match &file.source {
            Source::Bytes(b) => out
                .write_all(b)
                .map_err(|e| Error::io("write", root.path().join(dest.as_path()), e))?,
            Source::HostFile(p) => {
                let mut src =
                    std::fs::File::open(p).map_err(|e| Error::io("open source file", p, e))?;
                let mut buf = vec![0u8; 1 << 17];
                loop {
                    let n = src
                        .read(&mut buf)
                        .map_err(|e| Error::io("read source file", p, e))?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])
                        .map_err(|e| Error::io("write", root.path().join(dest.as_path()), e))?;
                }
            }
        }
        fchown(
            out.as_fd(),
            Some(Uid::from_raw(file.uid)),
            Some(Gid::from_raw(file.gid)),
        )
        .map_err(|e| root.err("chown", dest.as_path(), e))?;
        fchmod(out.as_fd(), Mode::from_bits_truncate(file.mode & 0o7777))
            .map_err(|e| root.err("chmod", dest.as_path(), e))?;
        out.sync_all()
            .map_err(|e| Error::io("fsync", root.path().join(dest.as_path()), e))?;
        // rename(2) never follows a symlink at the destination: it replaces it.
        renameat(&dir, tmp_name.as_str(), &dir, name)
            .map_err(|e| root.err("rename into place", dest.as_path(), e))
    })();
    if res.is_err() {
        let _ = nix::unistd::unlinkat(
            &dir,
            tmp_name.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    res
}

/// Parse a CLI `--file SRC:DEST[:MODE[:UID:GID]]` argument.
pub fn parse_file_arg(arg: &str) -> Result<FileSpec> {
    let bad = |r: &str| {
        Error::Other(format!(
            "--file {arg}: {r} (expected SRC:DEST[:MODE[:UID:GID]])"
        ))
    };
    let parts: Vec<&str> = arg.split(':').collect();
    if parts.len() < 2 || parts[0].is_empty() || parts[1].is_empty() {
        return Err(bad("missing source or destination"));
    }
    let mut f = FileSpec::new(parts[1], Source::HostFile(PathBuf::from(parts[0])));
    if !f.dest.is_absolute() {
        return Err(bad("destination must be an absolute path"));
    }
    if let Some(m) = parts.get(2) {
        f.mode = u32::from_str_radix(m, 8).map_err(|_| bad("mode must be octal"))?;
    } else if let Ok(md) = std::fs::metadata(parts[0]) {
        f.mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
    }
    if parts.len() == 5 {
        f.uid = parts[3].parse().map_err(|_| bad("uid must be a number"))?;
        f.gid = parts[4].parse().map_err(|_| bad("gid must be a number"))?;
    } else if parts.len() > 3 {
        return Err(bad("owner needs both UID and GID"));
    }
    Ok(f)
}
