//! The layer applier: stream a (gzip | zstd | plain) tar layer into a root directory.
//!
//! We drive the `tar` crate's entry iterator ourselves because its `unpack` neither
//! confines every path to the root fd nor knows OCI whiteouts. Every entry goes
//! through [`crate::fsroot::Root`]: parents are resolved with `RESOLVE_IN_ROOT`, the
//! final component is created with a no-follow `*at` call.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};

use crate::decompress::{self, Compression};
use crate::fsroot::{self, CleanPath, Root};
use crate::{Error, Result};

/// How OCI whiteouts are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The root is an overlayfs upper dir: `.wh.x` becomes a 0/0 char device `x`,
    /// `.wh..wh..opq` becomes `trusted.overlay.opaque=y` on the directory.
    Overlay,
    /// The root already holds the parent layers (e.g. a thin snapshot): whiteouts
    /// delete from it.
    Direct,
}

/// Caps against decompression bombs and inode floods.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum total size of file contents in one layer.
    pub max_bytes: u64,
    /// Maximum number of entries in one layer.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
    pub entries: u64,
    pub compression: Option<Compression>,
    /// sha256 of the uncompressed stream: compare with the config's diff id.
    pub diff_id: String,
}

/// Apply the layer read from `input` onto the directory `root`.
/// `layer` names the layer in errors (its digest, or a file name).
pub fn apply_layer<R: Read + Send + 'static>(
    root: &Path,
    input: R,
    mode: WhiteoutMode,
    limits: Limits,
    layer: &str,
) -> Result<Stats> {
    let root = Root::open(root)?;
    let (reader, compression, worker) =
        decompress::open(BufReader::with_capacity(1 << 20, input), layer)?;
    let mut applier = Applier {
        root: &root,
        mode,
        limits,
        layer,
        stats: Stats {
            compression: Some(compression),
            ..Stats::default()
        },
        cache: None,
        written: HashSet::new(),
        dir_times: Vec::new(),
        chown: nix::unistd::geteuid().is_root(),
        buf: vec![0u8; 1 << 18],
    };
    // On error the reader is dropped inside run, which stops the decoder thread.
    let res = applier.run(reader);
    let dec = worker.join();
    res?;
    match dec {
        Ok(Ok(diff_id)) => applier.stats.diff_id = diff_id,
        Ok(Err(e)) => return Err(applier.lerr("(stream)", format!("decompress: {e}"))),
        Err(_) => return Err(applier.lerr("(stream)", "decompressor thread panicked")),
    }
    Ok(applier.stats)
}

struct Applier<'a> {
    root: &'a Root,
    mode: WhiteoutMode,
    limits: Limits,
    layer: &'a str,
    stats: Stats,
    /// The last parent directory resolved: tar entries come grouped by directory.
    cache: Option<(Option<CleanPath>, Rc<OwnedFd>)>,
    /// Paths this layer wrote (Direct mode: an opaque marker keeps them).
    written: HashSet<PathBuf>,
    /// Directory mtimes, set at the end (creating children changes them).
    dir_times: Vec<(CleanPath, i64)>,
    chown: bool,
    buf: Vec<u8>,
}

const WH_PREFIX: &str = ".wh.";
const WH_OPAQUE: &str = ".wh..wh..opq";

impl Applier<'_> {
    fn run(&mut self, reader: Box<dyn Read + Send>) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        self.entries(&mut archive)?;
        // Drain the padding after the end-of-archive marker so the diff id covers it.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())
            .map_err(|e| self.lerr("(archive)", format!("read trailer: {e}")))?;
        self.finish_dirs()
    }

    fn entries<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive
            .entries()
            .map_err(|e| self.lerr("(archive)", format!("not a tar stream: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| self.lerr("(archive)", format!("corrupt tar stream: {e}")))?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    fn lerr(&self, entry: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Layer {
            layer: self.layer.to_string(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    fn serr(&self, op: &str, path: &Path, e: Errno) -> Error {
        self.lerr(path.display().to_string(), format!("{op}: {e}"))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| self.lerr("(header)", format!("bad path: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(self.lerr(
                shown,
                format!(
                    "more than {} entries (inode limit)",
                    self.limits.max_entries
                ),
            ));
        }
        let size = entry.header().entry_size().unwrap_or(0);
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::GNUSparse {
            self.stats.bytes = self.stats.bytes.saturating_add(size);
            if self.stats.bytes > self.limits.max_bytes {
                return Err(self.lerr(
                    shown,
                    format!(
                        "layer content exceeds {} bytes (size limit)",
                        self.limits.max_bytes
                    ),
                ));
            }
        }
        let path = match CleanPath::new(&raw).map_err(|r| self.lerr(shown.clone(), r))? {
            Some(p) => p,
            // The root's own entry: its metadata belongs to the snapshot, not the layer.
            None => return Ok(()),
        };
        // Anything that replaces an ancestor of the cached parent makes the cache stale.
        if let Some((Some(c), _)) = &self.cache {
            if c.as_path().starts_with(path.as_path()) {
                self.cache = None;
            }
        }
        let (parent, name) = path.split();
        let name = name.to_os_string();
        if let Some(n) = name.to_str() {
            if n == WH_OPAQUE {
                return self.opaque(parent.as_ref());
            }
            if let Some(target) = n.strip_prefix(WH_PREFIX) {
                return self.whiteout(parent.as_ref(), OsStr::new(target), &path);
            }
        }
        let pfd = self
            .parent(parent.as_ref())
            .map_err(|e| self.lerr(shown.clone(), format!("parent directory: {e}")))?;
        if self.mode == WhiteoutMode::Direct {
            self.written.insert(path.as_path().to_path_buf());
        }
        let h = entry.header();
        let perm = Mode::from_bits_truncate((h.mode().unwrap_or(0o644) & 0o7777) as libc::mode_t);
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let dev = nix::sys::stat::makedev(
            h.device_major().ok().flatten().unwrap_or(0) as u64,
            h.device_minor().ok().flatten().unwrap_or(0) as u64,
        );
        let xattrs = self.xattrs(entry);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&pfd, &name, &path, entry, perm, uid, gid, mtime, &xattrs)
            }
            tar::EntryType::Directory => {
                self.dir(&pfd, &name, &path, perm, uid, gid, mtime, &xattrs)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.lerr(shown.clone(), format!("bad symlink target: {e}")))?
                    .ok_or_else(|| self.lerr(shown.clone(), "symlink without target"))?
                    .into_owned();
                // A symlink's text is stored verbatim: it is only ever followed through
                // RESOLVE_IN_ROOT (here) or inside the container's mount namespace.
                self.replace(&pfd, &name, &path, |fd, n| {
                    symlinkat(target.as_path(), fd, n)
                })?;
                self.meta_at(&pfd, &name, &path, uid, gid, mtime, &xattrs, false)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.lerr(shown.clone(), format!("bad hardlink target: {e}")))?
                    .ok_or_else(|| self.lerr(shown.clone(), "hardlink without target"))?
                    .into_owned();
                self.hardlink(&pfd, &name, &path, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.replace(&pfd, &name, &path, |fd, n| mknodat(fd, n, sflag, perm, dev))?;
                self.meta_at(&pfd, &name, &path, uid, gid, mtime, &xattrs, true)?;
                // mknod applied the umask; set the exact mode.
                nix::sys::stat::fchmodat(
                    pfd,
                    name.as_os_str(),
                    perm,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| self.serr("chmod", path.as_path(), e))
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => Ok(()),
            other => Err(self.lerr(shown, format!("unsupported entry type {other:?}"))),
        }
    }

    /// The fd of the parent directory, created (0755) when missing.
    fn parent(&mut self, parent: Option<&CleanPath>) -> Result<Rc<OwnedFd>> {
        if let Some((key, fd)) = &self.cache {
            if key.as_ref() == parent {
                return Ok(fd.clone());
            }
        }
        let fd = Rc::new(self.root.mkdir_all(parent)?);
        self.cache = Some((parent.cloned(), fd.clone()));
        Ok(fd)
    }

    /// Run `create` for `name`; if something is in the way, remove it and retry once.
    fn replace(
        &self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        create: impl Fn(&OwnedFd, &OsStr) -> nix::Result<()>,
    ) -> Result<()> {
        match create(pfd, name) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                fsroot::remove_all_at(pfd.as_fd(), name)
                    .map_err(|e| self.serr("remove existing", path.as_path(), e))?;
                create(pfd, name).map_err(|e| self.serr("create", path.as_path(), e))
            }
            Err(e) => Err(self.serr("create", path.as_path(), e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn file<R: Read>(
        &mut self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        entry: &mut tar::Entry<'_, R>,
        perm: Mode,
        uid: u32,
        gid: u32,
        mtime: i64,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o600);
        let fd = match openat(pfd, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                fsroot::remove_all_at(pfd.as_fd(), name)
                    .map_err(|e| self.serr("remove existing", path.as_path(), e))?;
                openat(pfd, name, flags, mode)
                    .map_err(|e| self.serr("create", path.as_path(), e))?
            }
            Err(e) => return Err(self.serr("create", path.as_path(), e)),
        };
        let mut file = std::fs::File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(self.lerr(
                        path.as_path().display().to_string(),
                        format!("read content: {e}"),
                    ))
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| Error::io("write", self.root.path().join(path.as_path()), e))?;
        }
        if self.chown {
            fchown(
                file.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| self.serr("chown", path.as_path(), e))?;
        }
        // After chown: chown clears set-id bits.
        fchmod(file.as_fd(), perm).map_err(|e| self.serr("chmod", path.as_path(), e))?;
        for (k, v) in xattrs {
            set_fd_xattr(&file, k, v)
                .map_err(|e| self.serr(&format!("setxattr {k}"), path.as_path(), e))?;
        }
        let ts = nix::sys::time::TimeSpec::new(mtime, 0);
        nix::sys::stat::futimens(file.as_fd(), &ts, &ts)
            .map_err(|e| self.serr("utimens", path.as_path(), e))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dir(
        &mut self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        perm: Mode,
        uid: u32,
        gid: u32,
        mtime: i64,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        match mkdirat(pfd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // A directory over a directory merges; over anything else replaces it.
                if fsroot::lstat_at(pfd.as_fd(), name)
                    .map_err(|e| self.serr("stat", path.as_path(), e))?
                    != Some(SFlag::S_IFDIR)
                {
                    self.replace(pfd, name, path, |fd, n| {
                        mkdirat(fd.as_fd(), n, Mode::from_bits_truncate(0o700))
                    })?;
                }
            }
            Err(e) => return Err(self.serr("mkdir", path.as_path(), e)),
        }
        let dfd = nix::fcntl::openat(
            pfd,
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.serr("open directory", path.as_path(), e))?;
        let dir = std::fs::File::from(dfd);
        if self.chown {
            fchown(
                dir.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| self.serr("chown", path.as_path(), e))?;
        }
        fchmod(dir.as_fd(), perm).map_err(|e| self.serr("chmod", path.as_path(), e))?;
        for (k, v) in xattrs {
            set_fd_xattr(&dir, k, v)
                .map_err(|e| self.serr(&format!("setxattr {k}"), path.as_path(), e))?;
        }
        self.dir_times.push((path.clone(), mtime));
        Ok(())
    }

    fn hardlink(
        &mut self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        target: &Path,
    ) -> Result<()> {
        let shown = path.as_path().display().to_string();
        let target = CleanPath::new(target)
            .map_err(|r| {
                self.lerr(
                    shown.clone(),
                    format!("hardlink target {}: {r}", target.display()),
                )
            })?
            .ok_or_else(|| self.lerr(shown.clone(), "hardlink to the root"))?;
        let (tparent, tname) = target.split();
        // The source is resolved inside the root too: "/etc/shadow" means the rootfs's.
        let tfd = self.root.open_dir(tparent.as_ref()).map_err(|_| {
            self.lerr(
                shown.clone(),
                format!(
                    "hardlink target {} not found in the layer",
                    target.as_path().display()
                ),
            )
        })?;
        match fsroot::lstat_at(tfd.as_fd(), tname) {
            Ok(Some(t)) if t != SFlag::S_IFDIR => {}
            Ok(Some(_)) => return Err(self.lerr(shown, "hardlink to a directory")),
            _ => {
                return Err(self.lerr(
                    shown,
                    format!(
                        "hardlink target {} not found in the layer",
                        target.as_path().display()
                    ),
                ))
            }
        }
        self.replace(pfd, name, path, |fd, n| {
            linkat(&tfd, tname, fd, n, AtFlags::empty())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn meta_at(
        &self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        uid: u32,
        gid: u32,
        mtime: i64,
        xattrs: &[(String, Vec<u8>)],
        _follow_ok: bool,
    ) -> Result<()> {
        if self.chown {
            fchownat(
                pfd,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.serr("chown", path.as_path(), e))?;
        }
        for (k, v) in xattrs {
            match fsroot::lsetxattr_at(pfd.as_fd(), name, k.as_bytes(), v) {
                // Linux refuses user.* xattrs on symlinks and devices: not our error.
                Ok(()) | Err(Errno::EPERM) if k.starts_with("user.") => {}
                Ok(()) => {}
                Err(e) => return Err(self.serr(&format!("setxattr {k}"), path.as_path(), e)),
            }
        }
        fsroot::set_times_at(pfd.as_fd(), name, mtime)
            .map_err(|e| self.serr("utimens", path.as_path(), e))
    }

    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(k) = ext.key() {
                    if let Some(attr) = k.strip_prefix("SCHILY.xattr.") {
                        // overlayfs's own attributes would let a layer redirect lookups.
                        if attr.starts_with("trusted.overlay.") {
                            continue;
                        }
                        out.push((attr.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        out
    }

    fn opaque(&mut self, dir: Option<&CleanPath>) -> Result<()> {
        let shown = dir
            .map(|d| d.as_path().display().to_string())
            .unwrap_or_else(|| "/".into());
        match self.mode {
            WhiteoutMode::Overlay => {
                let fd = self.parent(dir)?;
                let key = c"trusted.overlay.opaque";
                // SAFETY: valid fd, NUL-terminated key, one-byte value.
                let r = unsafe {
                    libc::fsetxattr(
                        std::os::fd::AsRawFd::as_raw_fd(&fd),
                        key.as_ptr(),
                        b"y".as_ptr().cast(),
                        1,
                        0,
                    )
                };
                Errno::result(r).map_err(|e| {
                    self.lerr(format!("{shown}/{WH_OPAQUE}"), format!("mark opaque: {e}"))
                })?;
            }
            WhiteoutMode::Direct => {
                let fd = match self.root.open_dir(dir) {
                    Ok(fd) => fd,
                    Err(_) => return Ok(()),
                };
                let base = dir.map(|d| d.as_path().to_path_buf()).unwrap_or_default();
                let written = &self.written;
                fsroot::clear_dir(fd.as_fd(), &|n| written.contains(&base.join(n))).map_err(
                    |e| {
                        self.lerr(
                            format!("{shown}/{WH_OPAQUE}"),
                            format!("clear opaque dir: {e}"),
                        )
                    },
                )?;
                self.cache = None;
            }
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent: Option<&CleanPath>,
        target: &OsStr,
        path: &CleanPath,
    ) -> Result<()> {
        let shown = path.as_path().display().to_string();
        if target.is_empty() || target == "." || target == ".." {
            return Err(self.lerr(shown, "whiteout names no file"));
        }
        match self.mode {
            WhiteoutMode::Overlay => {
                let pfd = self.parent(parent)?;
                let victim = parent
                    .map(|p| p.join(target))
                    .unwrap_or_else(|| CleanPath::from_name(target));
                self.replace(&pfd, target, &victim, |fd, n| {
                    mknodat(fd, n, SFlag::S_IFCHR, Mode::empty(), 0)
                })
            }
            WhiteoutMode::Direct => {
                let pfd = match self.root.open_dir(parent) {
                    Ok(fd) => fd,
                    Err(_) => return Ok(()), // nothing below to hide
                };
                fsroot::remove_all_at(pfd.as_fd(), target)
                    .map_err(|e| self.lerr(shown, format!("apply whiteout: {e}")))?;
                self.cache = None;
                Ok(())
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        // Children first, so setting a parent's time is the last change to it.
        for (path, mtime) in self.dir_times.iter().rev() {
            let (parent, name) = path.split();
            if let Ok(pfd) = self.root.open_dir(parent.as_ref()) {
                fsroot::set_times_at(pfd.as_fd(), name, *mtime)
                    .map_err(|e| self.serr("utimens", path.as_path(), e))?;
            }
        }
        Ok(())
    }
}

fn set_fd_xattr(f: &impl AsFd, key: &str, value: &[u8]) -> nix::Result<()> {
    let k = std::ffi::CString::new(key).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid fd, NUL-terminated key, buffer with its length.
    let r = unsafe {
        libc::fsetxattr(
            std::os::fd::AsRawFd::as_raw_fd(&f.as_fd()),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}
