//! The on-disk state of one container: `<root>/<id>/state.json`, the exit
//! record `<root>/<id>/exit`, the start fifo and the per-container lock.
//!
//! Both JSON files are written to a temp file and renamed (no fsync: see
//! [`write_atomic`]), so a reader (or a newer build of rpaas after an
//! upgrade) never sees half a file. The state
//! carries a format version; older versions are read and upgraded in memory.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The version of the state.json format written by this build.
pub const STATE_VERSION: u32 = 1;

/// The OCI runtime-spec version we implement.
pub const OCI_VERSION: &str = "1.2.0";

/// A process identified by pid *and* its start time (clock ticks since boot,
/// field 22 of /proc/<pid>/stat): a pid alone may have been reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    #[serde(rename = "startTime")]
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a live process, read from /proc.
    pub fn of(pid: i32) -> Result<ProcessId> {
        let start_time =
            start_time(pid).ok_or_else(|| Error::Other(format!("process {pid} is gone")))?;
        Ok(ProcessId { pid, start_time })
    }

    /// True while the very same process (not a reused pid) exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

/// Start time of `pid` in clock ticks since boot, None if it does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).map(|(_, t)| t)
}

/// (state letter, start time) from /proc/<pid>/stat.
///
/// Parsed here rather than with `procfs` because this runs on every `state`
/// and `start` and needs two fields: procfs parses all 52 and allocates.
fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces or ')'.
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // after ')' field index 3 is state; starttime is field 22 → the 20th after state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The lifecycle phase recorded by the runtime; the *status* shown to users is
/// derived from it plus liveness (see [`crate::Container::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// create is in progress (or was killed halfway: `gc` undoes it).
    Creating,
    /// init is waiting for start.
    Created,
    /// start has released init.
    Running,
}

/// A step of create that has been done (recorded *before* it is done), so
/// that delete/gc know exactly what to undo after a crash at any point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// The cgroup directories at this path in every hierarchy.
    Cgroup { path: String },
    /// A keeper process was forked.
    Keeper { pid: i32 },
    /// The init process was cloned.
    Init { pid: i32 },
    /// A path that was mounted on the host side (e.g. a bind-mounted netns file).
    HostMount { path: PathBuf },
}

/// `<root>/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Format version of this file ([`STATE_VERSION`]); absent in pre-release files (0).
    #[serde(default)]
    pub version: u32,
    pub oci_version: String,
    pub id: String,
    pub phase: Phase,
    /// The container's init, once cloned.
    #[serde(default)]
    pub init: Option<ProcessId>,
    /// The keeper (keeper mode only).
    #[serde(default)]
    pub keeper: Option<ProcessId>,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 UTC.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Cgroup path inside each hierarchy.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    /// Namespaces the container has (type → /proc/<init>/ns/… or the spec's path).
    #[serde(default)]
    pub namespaces: Vec<(String, PathBuf)>,
    /// The undo log of create.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Whether stdout/stderr go to `<dir>/log` through the keeper.
    #[serde(default)]
    pub log_to_file: bool,
    /// /proc/sys/kernel/random/boot_id at create: a state from another boot is stale.
    #[serde(default)]
    pub boot_id: String,
    /// The file init runs while it waits for `start` (the runtime's own
    /// executable): once init's /proc/<pid>/exe is another file, init has
    /// passed the start fifo and exec'd, whatever the phase says (a `start`
    /// killed after init consumed the fifo byte never wrote "running").
    /// Absent in states of earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_exe: Option<FileId>,
}

impl State {
    /// The first state of a container being created (or restored): phase
    /// creating, no process yet, this boot; the caller fills in the rest.
    pub fn creating(
        id: &str,
        bundle: PathBuf,
        rootfs: PathBuf,
        annotations: HashMap<String, String>,
    ) -> State {
        State {
            version: STATE_VERSION,
            oci_version: OCI_VERSION.into(),
            id: id.to_string(),
            phase: Phase::Creating,
            init: None,
            keeper: None,
            bundle,
            rootfs,
            created: now_rfc3339(),
            owner: String::new(),
            annotations,
            cgroup_path: None,
            namespaces: Vec::new(),
            steps: Vec::new(),
            log_to_file: false,
            boot_id: boot_id(),
            init_exe: None,
        }
    }
}

/// A file's identity (device and inode), e.g. of a process's executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The executable `pid` runs now (None if the process is gone or unreadable).
    pub fn exe_of(pid: i32) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}/exe"))
            .ok()
            .map(|m| FileId {
                dev: m.dev(),
                ino: m.ino(),
            })
    }
}

/// How a container's init ended: `<root>/<id>/exit`, written by the keeper
/// (or by `run`/`delete` when they reap init themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Exit code (0-255), or 128+signal when killed, as shells report it.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    #[serde(default)]
    pub exit_signal: Option<i32>,
    /// The cgroup's OOM-kill counter moved while the container ran.
    #[serde(default)]
    pub oom_killed: bool,
    /// RFC 3339 UTC.
    pub finished_at: String,
}

/// The files of one container under the state root.
#[derive(Debug, Clone)]
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new(root: &Path, id: &str) -> Dir {
        Dir {
            path: root.join(id),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.path.join("exit")
    }
    pub fn fifo(&self) -> PathBuf {
        self.path.join("exec.fifo")
    }
    pub fn config_copy(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn log_file(&self) -> PathBuf {
        self.path.join("log")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.path.join("lock")
    }

    pub fn read_state(&self) -> Result<State> {
        let path = self.state_file();
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut state: State = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("parse {}: {e}", path.display())))?;
        upgrade(&mut state);
        Ok(state)
    }

    pub fn write_state(&self, state: &State) -> Result<()> {
        let bytes =
            serde_json::to_vec(state).map_err(|e| Error::Other(format!("encode state: {e}")))?;
        write_atomic(&self.state_file(), &bytes)
    }

    pub fn read_exit(&self) -> Result<Option<ExitRecord>> {
        let path = self.exit_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Other(format!("parse {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    pub fn write_exit(&self, rec: &ExitRecord) -> Result<()> {
        let bytes =
            serde_json::to_vec(rec).map_err(|e| Error::Other(format!("encode exit: {e}")))?;
        write_atomic(&self.exit_file(), &bytes)
    }

    /// Take the per-container lock (blocking). Held for the duration of a
    /// create/start/delete/exec on this container; never by the keeper.
    pub fn lock(&self) -> Result<Lock> {
        Lock::take(&self.lock_file())
    }

    /// Claim the id for a create: the state dir appears under its name with
    /// its lock file already in it and held, so no one (`gc` above all) ever
    /// sees a container dir a live create does not visibly own. Made under a
    /// temporary name (`#new-…`, never a valid id) and renamed into place
    /// without replacing anything; an existing id is [`Error::Exists`].
    pub fn claim(root: &Path, id: &str) -> Result<(Dir, Lock)> {
        use std::os::unix::fs::DirBuilderExt;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tmp = root.join(format!(
            "{TMP_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io("create state dir", &tmp, e))?;
        let lock = match Lock::take(&tmp.join("lock")) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dir = Dir::new(root, id);
        if let Err(e) = rename_noreplace(&tmp, &dir.path) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists { id: id.to_string() }
            } else {
                Error::io("create state dir", &dir.path, e)
            });
        }
        Ok((dir, lock))
    }
}

/// Name prefix of a state dir being made by [`Dir::claim`] ('#' is never in an id).
pub const TMP_PREFIX: &str = "#new-";

/// Name prefix of the files that record, in the state root, the cgroup each
/// container of this root made: `<root>/#cgroup.<id>` holds its cgroup path.
/// `gc` collects an orphan cgroup (no state names it any more) only when such
/// a marker proves this root made it: cgroupfs has no xattrs to record the
/// owner in the cgroup itself, and a cgroup named `/rpaas-<id>` may as well
/// belong to a stopped container of another state root.
pub const CGROUP_MARKER_PREFIX: &str = "#cgroup.";

/// The marker file of container `id`'s cgroup under `root`.
pub fn cgroup_marker(root: &Path, id: &str) -> PathBuf {
    root.join(format!("{CGROUP_MARKER_PREFIX}{id}"))
}

/// Record that this root made (or adopted) cgroup `path` for container `id`.
/// Written whole or not at all (a cut path could name another cgroup), through
/// a temp file whose name `gc` never reads as a marker.
pub fn write_cgroup_marker(root: &Path, id: &str, path: &str) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tmp = root.join(format!(
        "{MARKER_TMP_PREFIX}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let marker = cgroup_marker(root, id);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(path.as_bytes())?;
        std::fs::rename(&tmp, &marker)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write cgroup marker", &marker, e)
    })
}

/// Name prefix of a marker being written (a file; '#' is never in an id).
pub const MARKER_TMP_PREFIX: &str = "#tmp-";

/// Forget the marker of `id` (gone already is fine).
pub fn remove_cgroup_marker(root: &Path, id: &str) -> Result<()> {
    let p = cgroup_marker(root, id);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", p, e)),
    }
}

/// rename(2) that fails with EEXIST instead of replacing `to` (an empty
/// directory would be replaced by a plain rename).
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Remove a state dir and everything in it; succeeds only when it is gone.
/// A writer that does not take the lock (the keeper's exit record or log, a
/// `run` recording the exit) may add a file while it is emptied: retried.
pub fn remove_state_dir(dir: &Path) -> Result<()> {
    let mut last = None;
    for _ in 0..100 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io("remove state dir", dir, e)),
        }
    }
    Err(Error::io(
        "remove state dir",
        dir,
        last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOTEMPTY)),
    ))
}

/// Older state formats read by this build; version 0 had no `version` field.
fn upgrade(state: &mut State) {
    if state.version == 0 {
        // Format 0 had no undo log: its cgroup, named by cgroupPath only, is
        // the step delete/gc must undo (else it stays behind in every hierarchy).
        if state.steps.is_empty() {
            if let Some(path) = &state.cgroup_path {
                state.steps.push(Step::Cgroup { path: path.clone() });
            }
        }
        state.version = STATE_VERSION;
    }
}

/// An exclusive flock on a file, released on drop.
#[derive(Debug)]
pub struct Lock(rpaas_fsutil::FileLock);

impl Lock {
    pub fn raw_fd(&self) -> i32 {
        self.0.raw_fd()
    }

    /// Take the lock only if nobody holds it (None when held, or when the
    /// lock file does not exist: it is never created here, so that this
    /// cannot add a file to a state dir someone is removing).
    pub fn try_take(path: &Path) -> Result<Option<Lock>> {
        match rpaas_fsutil::FileLock::try_lock(path, false) {
            Ok(l) => Ok(l.map(Lock)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("lock", path, e)),
        }
    }

    /// Like [`Lock::try_take`], creating the lock file if it is missing.
    pub fn try_take_creating(path: &Path) -> Result<Option<Lock>> {
        rpaas_fsutil::FileLock::try_lock(path, true)
            .map(|l| l.map(Lock))
            .map_err(|e| Error::io("lock", path, e))
    }

    pub fn take(path: &Path) -> Result<Lock> {
        rpaas_fsutil::FileLock::lock(path)
            .map(Lock)
            .map_err(|e| Error::io("lock", path, e))
    }
}

/// Write `bytes` to `path` atomically: temp file in the same dir, then rename.
///
/// No fsync, on purpose: a killed process never loses page-cache writes, so
/// the crash safety the runtime promises (kill -9 at any step) holds without
/// it; and after a power loss or kernel crash every state is stale anyway (its
/// boot id differs, its processes and cgroups are gone) and `gc` removes it,
/// readable or not. An fsync per step cost 150–450 ms per `run` on an ext4 /run.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    rpaas_fsutil::write_atomic(path, bytes, false).map_err(|e| Error::io("replace", path, e))
}

/// This boot's id; states written under another boot id are stale.
pub fn boot_id() -> String {
    // Read once per process: it cannot change, and create, start and delete
    // each asked for it.
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// Now as RFC 3339 UTC with nanoseconds, like runc's `created`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Format seconds since the epoch as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
/// Written here to avoid pulling chrono into the start path for one format call.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Validate a container id: it becomes a directory name and a cgroup name.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::State {
            id: id.to_string(),
            reason: "invalid container id: use letters, digits and ._-+:@".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_737_600, 0), "2026-11-27T00:00:00.000000000Z");
    }

    #[test]
    fn own_process_is_alive_and_fake_start_time_is_not() {
        let me = ProcessId::of(std::process::id() as i32).expect("self");
        assert!(me.is_alive());
        let reused = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!reused.is_alive());
    }

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("web-1").is_ok());
        assert!(validate_id("../x").is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
    }

    #[test]
    fn state_without_version_is_read_as_current() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = Dir::new(dir.path(), "c");
        std::fs::create_dir(&d.path).expect("mkdir");
        std::fs::write(
            d.state_file(),
            br#"{"ociVersion":"1.0.2","id":"c","phase":"running","bundle":"/b","rootfs":"/b/rootfs","created":"x","owner":""}"#,
        )
        .expect("write");
        let s = d.read_state().expect("read old state");
        assert_eq!(s.version, STATE_VERSION);
        assert_eq!(s.phase, Phase::Running);
    }
}
