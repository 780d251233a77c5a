//! `checkpoint` and `restore` through CRIU's command line (`criu dump` /
//! `criu restore`), with runc's flags (what podman passes).
//!
//! What rpaas made is described to CRIU so that the restored container sees
//! the same thing:
//! - bind mounts of the spec (`--external mnt[DEST]:DEST` at dump,
//!   `--ext-mount-map DEST:SOURCE` at restore), masked files (binds of the
//!   host's /dev/null: restored from /dev/null) and device nodes bound from
//!   the host's devtmpfs;
//! - a joined network namespace (`linux.namespaces[].path`) as external
//!   (`--external net[INODE]:extRootNetNS` at dump, `--inherit-fd` of the
//!   restore bundle's netns file at restore); a netns of its own is dumped
//!   and restored by CRIU;
//! - cgroups (`--manage-cgroups=MODE`; at restore the container's cgroup is
//!   made first and given as `--cgroup-root`);
//! - the rootfs: a private recursive bind of the bundle's rootfs is `--root`;
//! - init's stdio when it comes from outside the container (pipes, sockets,
//!   files of host mounts): recorded at dump, and the restoring process's
//!   own stdio passed with `--inherit-fd` (runc's way);
//! - an init that is not a session leader (rpaas's init does not setsid
//!   unless it has a terminal): `--shell-job`, the restored tree joins the
//!   restorer's session (the keeper's, a session leader, in keeper mode).
//!
//! A restored container is recorded in the state root like a created one
//! (state.json with the new pid, phase running). In keeper mode a keeper is
//! forked first: session leader and child subreaper, it runs
//! `criu restore --restore-detached`, so the restored init is reparented to
//! it when criu exits; it then records the state and waits for init like the
//! keeper of `create`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::container::{Container, Status};
use crate::state::{self, Dir, Phase, ProcessId, State, Step};
use crate::{keeper, security, spec, Error, Result};

/// The file rpaas adds to a CRIU image directory.
pub const META_FILE: &str = "rpaas-checkpoint.json";
/// CRIU's key of an external network namespace (runc's name, so images agree).
const NETNS_KEY: &str = "extRootNetNS";
/// Env var naming the criu binary (default: `criu` on PATH).
pub const CRIU_BIN_ENV: &str = "RPAAS_CRIU_BIN";

/// runc's `--manage-cgroups-mode` values.
const CGROUP_MODES: [&str; 4] = ["soft", "full", "strict", "ignore"];

/// `checkpoint` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub root: PathBuf,
    pub id: String,
    pub image_path: PathBuf,
    /// Where CRIU writes its log and work files (default: the image dir).
    pub work_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    /// `criu pre-dump`: memory only, the container keeps running.
    pub pre_dump: bool,
    /// A pre-dump's image dir (relative to the image dir, as with runc).
    pub parent_path: Option<PathBuf>,
}

/// `restore` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    /// Run under a keeper (also when the checkpointed container had one).
    pub keeper: bool,
    /// Without a keeper: become the child subreaper before CRIU runs, so the
    /// restored init is our child (`restore` without `--detach` waits for it).
    pub subreaper: bool,
}

/// What rpaas records beside CRIU's images.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub id: String,
    /// The container ran under a keeper.
    pub keeper: bool,
    /// The keeper drained init's stdout/stderr into `<dir>/log`.
    #[serde(default)]
    pub log_to_file: bool,
    /// Dumped with --shell-job (init was not a session leader).
    pub shell_job: bool,
    /// Dumped with --ext-unix-sk (a stdio fd was a socket).
    pub ext_unix_sk: bool,
    /// The network namespace was joined (external): its CRIU key.
    pub netns_key: Option<String>,
    /// CRIU keys of init's stdio fds 0..2 that come from outside.
    pub stdio: Vec<StdioFd>,
    /// External mounts that are not spec bind mounts nor masked paths:
    /// (key = path in the container, host path).
    pub ext_mounts: Vec<(String, PathBuf)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StdioFd {
    pub fd: i32,
    /// `pipe:[INO]`, `socket:[INO]` or `file[MNT:INO]` (hex).
    pub key: String,
}

fn criu_bin() -> PathBuf {
    std::env::var_os(CRIU_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("criu"))
}

fn check_mode(mode: Option<&str>) -> Result<&str> {
    let m = mode.unwrap_or("soft");
    if CGROUP_MODES.contains(&m) {
        Ok(m)
    } else {
        Err(Error::Other(format!(
            "--manage-cgroups-mode {m}: must be one of soft, full, strict, ignore"
        )))
    }
}

fn make_dir(p: &Path, what: &'static str) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| Error::io(what, p, e))
}

/// One mount of /proc/PID/mountinfo.
struct MountInfo {
    id: u32,
    point: String,
    fstype: String,
}

fn mountinfo(pid: i32) -> Result<Vec<MountInfo>> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountInfo {
                id: f.first()?.parse().ok()?,
                point: unescape(f.get(4)?),
                fstype: f.get(sep + 1)?.to_string(),
            })
        })
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
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

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// The spec's namespaces joined by path: only the network one can be
/// described to CRIU (as external); others are refused, naming the field.
fn joined_netns(spec: &Spec) -> Result<Option<PathBuf>> {
    let mut net = None;
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for (i, ns) in nss.iter().enumerate() {
        let Some(p) = ns.path() else { continue };
        if ns.typ() == LinuxNamespaceType::Network {
            net = Some(p.clone());
        } else {
            return Err(Error::spec(
                format!("linux.namespaces[{i}].path"),
                format!(
                    "{}: checkpoint/restore supports joining only a network namespace",
                    p.display()
                ),
            ));
        }
    }
    Ok(net)
}

fn refuse_terminal(spec: &Spec) -> Result<()> {
    if spec
        .process()
        .as_ref()
        .is_some_and(|p| p.terminal() == Some(true))
    {
        return Err(Error::spec(
            "process.terminal",
            "true: checkpoint/restore of a container with a terminal is not supported",
        ));
    }
    Ok(())
}

/// Run criu; on failure the error names the log and quotes its last error lines.
fn run_criu(args: &[String], work: &Path, log: &str, what: &str) -> Result<()> {
    tracing::debug!("criu {}", args.join(" "));
    let status = Command::new(criu_bin())
        .args(args)
        .status()
        .map_err(|e| Error::io("run criu (apt-get install criu)", criu_bin(), e))?;
    if status.success() {
        return Ok(());
    }
    let log_path = work.join(log);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    let tail: Vec<&str> = errors.iter().rev().take(3).rev().copied().collect();
    Err(Error::Other(format!(
        "criu {what} failed ({status}), log {}: {}",
        log_path.display(),
        if tail.is_empty() {
            "no error line".to_string()
        } else {
            tail.join(" | ")
        }
    )))
}

/// `checkpoint`: dump the container's process tree into `image_path`.
/// Without `leave_running` (and not a pre-dump) the container is stopped by
/// CRIU and then deleted, as runc does: `restore` may reuse its id.
pub fn checkpoint(opts: &CheckpointOptions) -> Result<()> {
    let mode = check_mode(opts.manage_cgroups_mode.as_deref())?;
    let c = Container::load(&opts.root, &opts.id)?;
    let lock = c.dir.lock()?;
    let status = c.status_locked();
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::State {
            id: opts.id.clone(),
            reason: format!("cannot checkpoint: container is {}", status.as_str()),
        });
    }
    let init = c.live_init().ok_or_else(|| Error::State {
        id: opts.id.clone(),
        reason: "cannot checkpoint: init is gone".into(),
    })?;
    let spec = c.spec()?;
    refuse_terminal(&spec)?;
    let netns = joined_netns(&spec)?;
    let image = &opts.image_path;
    make_dir(image, "create --image-path")?;
    let work = opts.work_path.clone().unwrap_or_else(|| image.clone());
    make_dir(&work, "create --work-path")?;

    let pid = init.pid;
    let mut meta = Meta {
        id: opts.id.clone(),
        keeper: c.state.keeper.is_some(),
        log_to_file: c.state.keeper.is_some() && c.state.log_to_file,
        ..Meta::default()
    };
    let (verb, log) = if opts.pre_dump {
        ("pre-dump", "pre-dump.log")
    } else {
        ("dump", "dump.log")
    };
    let mut args: Vec<String> = vec![
        verb.into(),
        "--tree".into(),
        pid.to_string(),
        "--images-dir".into(),
        image.display().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--log-file".into(),
        log.into(),
        "-v4".into(),
        format!("--manage-cgroups={mode}"),
    ];
    if let Some(parent) = &opts.parent_path {
        args.extend(["--prev-images-dir".into(), parent.display().to_string()]);
        args.push("--track-mem".into());
    }
    if opts.pre_dump {
        args.push("--track-mem".into());
    }
    if opts.leave_running && !opts.pre_dump {
        args.push("--leave-running".into());
    }
    if opts.tcp_established {
        args.push("--tcp-established".into());
    }
    if opts.file_locks {
        args.push("--file-locks".into());
    }
    // A frozen (paused) container is collected through its freezer.
    if status == Status::Paused {
        if let Some(dir) = c.cgroup().and_then(|cg| cg.cgroup2_dir()) {
            args.push(format!("--freeze-cgroup={}", dir.display()));
        }
    }
    // Joined netns: external, re-joined at restore.
    if netns.is_some() {
        let ino = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map_err(|e| Error::io("stat", format!("/proc/{pid}/ns/net"), e))?
            .ino();
        args.extend(["--external".into(), format!("net[{ino}]:{NETNS_KEY}")]);
        meta.netns_key = Some(NETNS_KEY.into());
    }
    // External mounts.
    let mounts = mountinfo(pid)?;
    let mut keys: Vec<String> = Vec::new();
    for m in spec.mounts().as_ref().into_iter().flatten() {
        if is_bind(m) {
            keys.push(m.destination().display().to_string());
        }
    }
    let masked: Vec<String> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    for m in &mounts {
        if m.fstype == "devtmpfs" && !keys.contains(&m.point) {
            keys.push(m.point.clone());
            if !masked.contains(&m.point) {
                meta.ext_mounts
                    .push((m.point.clone(), PathBuf::from(&m.point)));
            }
        }
    }
    for k in &keys {
        if mounts.iter().any(|m| &m.point == k) {
            args.extend(["--external".into(), format!("mnt[{k}]:{k}")]);
        }
    }
    // init's stdio from outside the container.
    let ids: Vec<u32> = mounts.iter().map(|m| m.id).collect();
    for fd in 0..3 {
        let Ok(link) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        let link = link.display().to_string();
        if link.starts_with("pipe:") {
            meta.stdio.push(StdioFd { fd, key: link });
        } else if link.starts_with("socket:") {
            meta.ext_unix_sk = true;
            meta.stdio.push(StdioFd { fd, key: link });
        } else if link.starts_with('/') {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let mnt: Option<u32> = info
                .lines()
                .find_map(|l| l.strip_prefix("mnt_id:"))
                .and_then(|v| v.trim().parse().ok());
            let Some(mnt) = mnt else { continue };
            if ids.contains(&mnt) {
                continue;
            }
            let Ok(md) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else {
                continue;
            };
            let key = format!("file[{mnt:x}:{:x}]", md.ino());
            if !meta.stdio.iter().any(|s| s.key == key) {
                args.extend(["--external".into(), key.clone()]);
            }
            meta.stdio.push(StdioFd { fd, key });
        }
    }
    if meta.ext_unix_sk {
        args.push("--ext-unix-sk".into());
    }
    if session_of(pid) != Some(pid) {
        meta.shell_job = true;
        args.push("--shell-job".into());
    }
    run_criu(&args, &work, log, verb)?;
    let bytes = serde_json::to_vec_pretty(&meta)
        .map_err(|e| Error::Other(format!("encode {META_FILE}: {e}")))?;
    state::write_atomic(&image.join(META_FILE), &bytes)?;
    if !opts.leave_running && !opts.pre_dump {
        // CRIU killed the tree: the container is gone, as with runc.
        c.delete_locked(lock, true)?;
    }
    Ok(())
}

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.split_ascii_whitespace().nth(3)?.parse().ok()
}

/// `restore`: a new container `id` from the bundle and the images.
pub fn restore(opts: &RestoreOptions) -> Result<State> {
    let mode = check_mode(opts.manage_cgroups_mode.as_deref())?.to_string();
    state::validate_id(&opts.id)?;
    let image = opts.image_path.clone();
    let meta_path = image.join(META_FILE);
    let meta: Meta = match std::fs::read(&meta_path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Other(format!("parse {}: {e}", meta_path.display())))?,
        Err(e) => {
            return Err(Error::Other(format!(
                "--image-path {}: not a checkpoint of rpaas-run ({META_FILE}: {e})",
                image.display()
            )))
        }
    };
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::io("open bundle", &opts.bundle, e))?;
    let config_bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| Error::io("read", bundle.join("config.json"), e))?;
    let spec = spec::parse_config(&config_bytes)?;
    spec::validate(&spec)?;
    refuse_terminal(&spec)?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    let netns = joined_netns(&spec)?;
    match (&meta.netns_key, &netns) {
        (Some(_), None) => {
            return Err(Error::spec(
                "linux.namespaces",
                "the checkpoint joined a network namespace: give its path (type network, path) to restore into",
            ))
        }
        (None, Some(p)) => {
            return Err(Error::spec(
                "linux.namespaces",
                format!(
                    "network path {}: the checkpoint has a network namespace of its own, CRIU restores it",
                    p.display()
                ),
            ))
        }
        _ => {}
    }
    let work = opts.work_path.clone().unwrap_or_else(|| image.clone());
    make_dir(&work, "create --work-path")?;
    let linux = spec.linux().as_ref();

    make_dir(&opts.root, "create state root")?;
    let (dir, lock) = Dir::claim(&opts.root, &opts.id)?;
    let mut guard = Undo {
        dir: dir.clone(),
        cgroup: None,
        mount: None,
        armed: true,
    };
    let cg = Cgroup::new(
        &opts.id,
        linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy())
            .as_deref(),
    )?;
    let criu_root = dir.path.join("criu-root");
    let keeper = opts.keeper || meta.keeper;
    let mut st = State {
        cgroup_path: Some(cg.path().to_string()),
        steps: vec![
            Step::Cgroup {
                path: cg.path().to_string(),
            },
            Step::HostMount {
                path: criu_root.clone(),
            },
        ],
        log_to_file: keeper && meta.log_to_file,
        ..State::creating(
            &opts.id,
            bundle.clone(),
            rootfs.clone(),
            spec.annotations().clone().unwrap_or_default(),
        )
    };
    state::write_atomic(&dir.config_copy(), &config_bytes)?;
    dir.write_state(&st)?;
    state::write_cgroup_marker(&opts.root, &opts.id, cg.path())?;
    guard.cgroup = Some(cg.clone());
    cg.create()?;
    if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
        let mut res = res.clone();
        let mut rules = res.devices().clone().unwrap_or_default();
        if !rules.is_empty() {
            rules.extend(crate::cgroups::default_device_rules());
            res.set_devices(Some(rules));
        }
        cg.apply(&res)?;
    }

    // The root CRIU restores into: a private recursive bind of the rootfs.
    make_dir(&criu_root, "create criu root")?;
    guard.mount = Some(criu_root.clone());
    mount(
        Some(&rootfs),
        &criu_root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind {} for criu", rootfs.display()), e))?;
    mount(
        None::<&str>,
        &criu_root,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("make {} private", criu_root.display()), e))?;

    // Files CRIU inherits: the netns to join. Kept open until criu ran.
    let mut keep: Vec<OwnedFd> = Vec::new();
    let pidfile = work.join("restore.pid");
    let _ = std::fs::remove_file(&pidfile);
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--images-dir".into(),
        image.display().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--log-file".into(),
        "restore.log".into(),
        "-v4".into(),
        "--root".into(),
        criu_root.display().to_string(),
        "--restore-detached".into(),
        "--pidfile".into(),
        pidfile.display().to_string(),
        format!("--manage-cgroups={mode}"),
        "--cgroup-root".into(),
        cg.path().to_string(),
    ];
    if opts.tcp_established {
        args.push("--tcp-established".into());
    }
    if opts.file_locks {
        args.push("--file-locks".into());
    }
    if meta.shell_job {
        args.push("--shell-job".into());
    }
    if meta.ext_unix_sk {
        args.push("--ext-unix-sk".into());
    }
    if let (Some(key), Some(path)) = (&meta.netns_key, &netns) {
        let fd: OwnedFd = std::fs::File::open(path)
            .map_err(|e| Error::io("open network namespace", path, e))?
            .into();
        // Inherited by criu: no close-on-exec.
        let _ = nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
        args.extend([
            "--inherit-fd".into(),
            format!("fd[{}]:{key}", fd.as_raw_fd()),
        ]);
        keep.push(fd);
    }
    // Mounts: spec binds from their (new) sources, masked files from /dev/null.
    for m in spec.mounts().as_ref().into_iter().flatten() {
        if !is_bind(m) {
            continue;
        }
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            bundle.join(src)
        };
        args.extend([
            "--ext-mount-map".into(),
            format!("{}:{}", m.destination().display(), src.display()),
        ]);
    }
    for p in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        args.extend(["--ext-mount-map".into(), format!("{p}:/dev/null")]);
    }
    for (key, host) in &meta.ext_mounts {
        args.extend([
            "--ext-mount-map".into(),
            format!("{key}:{}", host.display()),
        ]);
    }
    // init's stdio: ours.
    let mut seen: Vec<&str> = Vec::new();
    for s in &meta.stdio {
        if seen.contains(&s.key.as_str()) {
            continue;
        }
        seen.push(&s.key);
        args.extend(["--inherit-fd".into(), format!("fd[{}]:{}", s.fd, s.key)]);
    }

    let spawn = RestoreRun {
        opts,
        dir: &dir,
        cg: &cg,
        args: &args,
        work: &work,
        pidfile: &pidfile,
        criu_root: &criu_root,
    };
    if keeper {
        spawn.with_keeper(&mut st, lock)?;
        drop(keep);
        guard.armed = false;
        return dir.read_state();
    }
    if opts.subreaper {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    spawn.restore_and_commit(&mut st, None)?;
    drop(keep);
    guard.armed = false;
    drop(lock);
    Ok(st)
}

struct RestoreRun<'a> {
    opts: &'a RestoreOptions,
    dir: &'a Dir,
    cg: &'a Cgroup,
    args: &'a [String],
    work: &'a Path,
    pidfile: &'a Path,
    criu_root: &'a Path,
}

impl RestoreRun<'_> {
    /// Run criu restore, record the state (phase running), write the pid file.
    fn restore_and_commit(&self, st: &mut State, keeper: Option<ProcessId>) -> Result<i32> {
        let res = run_criu(self.args, self.work, "restore.log", "restore");
        // The restored mount namespace holds its own copy of the root.
        let _ = umount2(self.criu_root, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(self.criu_root);
        res?;
        let text = std::fs::read_to_string(self.pidfile)
            .map_err(|e| Error::io("read criu pid file", self.pidfile, e))?;
        let pid: i32 = text.trim().parse().map_err(|_| {
            Error::Other(format!(
                "criu pid file {}: not a pid: {text:?}",
                self.pidfile.display()
            ))
        })?;
        let id = ProcessId::of(pid).map_err(|_| Error::Init {
            id: self.opts.id.clone(),
            msg: "restored init exited at once".into(),
        })?;
        st.init = Some(id);
        st.keeper = keeper;
        st.phase = Phase::Running;
        st.steps.push(Step::Init { pid });
        self.dir.write_state(st)?;
        if let Some(pf) = &self.opts.pid_file {
            crate::create::write_pid_file(pf, pid)?;
        }
        Ok(pid)
    }

    /// Fork the keeper (session leader, child subreaper): it runs criu, the
    /// restored init becomes its child when criu detaches; it records the
    /// state, reports, and waits for init like `create`'s keeper.
    fn with_keeper(&self, st: &mut State, lock: state::Lock) -> Result<()> {
        use std::io::{Read, Write};
        let (mut report_r, mut report_w) =
            std::io::pipe().map_err(|e| Error::io("pipe", "keeper report", e))?;
        // SAFETY: rpaas-run is single-threaded here; the child runs our code and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork keeper", e))? {
            nix::unistd::ForkResult::Child => {
                drop(report_r);
                // Held until reported (closed with the other fds below).
                std::mem::forget(lock);
                let _ = nix::unistd::setsid();
                let _ = nix::sys::prctl::set_child_subreaper(true);
                // A container that logged to a file: its stdout/stderr become
                // new pipes the keeper drains (criu gives them to init).
                let readers = if st.log_to_file {
                    match log_pipes() {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let _ = report_w.write_all(format!("err:{}", e.chain()).as_bytes());
                            // SAFETY: leave without the restore command's destructors.
                            unsafe { libc::_exit(1) }
                        }
                    }
                } else {
                    None
                };
                let result = ProcessId::of(nix::unistd::getpid().as_raw()).and_then(|me| {
                    st.steps.push(Step::Keeper { pid: me.pid });
                    self.restore_and_commit(st, Some(me))
                });
                let init = match result {
                    Ok(pid) => {
                        let _ = report_w.write_all(b"ok");
                        pid
                    }
                    Err(e) => {
                        let _ = report_w.write_all(format!("err:{}", e.chain()).as_bytes());
                        // SAFETY: leave without the restore command's destructors.
                        unsafe { libc::_exit(1) }
                    }
                };
                drop(report_w);
                if let Ok(n) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                {
                    for fd in 0..3 {
                        // SAFETY: dup2 between fds of this process.
                        unsafe { libc::dup2(n.as_raw_fd(), fd) };
                    }
                }
                let keep: Vec<i32> = readers
                    .as_ref()
                    .map(|(a, b)| vec![a.as_raw_fd(), b.as_raw_fd()])
                    .unwrap_or_default();
                let _ = security::close_fds_from(3, &keep);
                keeper::exec_small(
                    self.dir,
                    init,
                    self.cg,
                    readers.as_ref(),
                    &keeper::LogOptions::default(),
                );
                let code = keeper::run(
                    self.dir,
                    init,
                    self.cg,
                    readers,
                    keeper::LogOptions::default(),
                );
                // SAFETY: as above.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(report_w);
                let mut answer = String::new();
                let _ = report_r.read_to_string(&mut answer);
                if let Some(err) = answer.strip_prefix("err:") {
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(Error::Init {
                        id: self.opts.id.clone(),
                        msg: err.trim().to_string(),
                    });
                }
                if answer.trim() != "ok" {
                    return Err(Error::Init {
                        id: self.opts.id.clone(),
                        msg: "keeper exited during restore".into(),
                    });
                }
                drop(lock);
                Ok(())
            }
        }
    }
}

/// The keeper's stdio for criu (and so for the restored init): stdin
/// /dev/null, stdout and stderr two new pipes; returns their read ends.
fn log_pipes() -> Result<(OwnedFd, OwnedFd)> {
    let null = std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for container output", e))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe for container output", e))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (out_w.as_raw_fd(), 1),
        (err_w.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 between fds of this process (the forked keeper).
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(Error::io(
                "dup2",
                "keeper stdio",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok((out_r, err_r))
}

/// Undo a failed restore: the restored processes, the cgroup, the criu
/// root mount, the marker and the state dir.
struct Undo {
    dir: Dir,
    cgroup: Option<Cgroup>,
    mount: Option<PathBuf>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(cg) = &self.cgroup {
            for pid in cg.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for _ in 0..200 {
                if cg.pids().map(|p| p.is_empty()).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = cg.destroy();
        }
        if let Some(m) = &self.mount {
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
        if let (Some(root), Some(id)) = (self.dir.path.parent(), self.dir.path.file_name()) {
            let _ = state::remove_cgroup_marker(root, &id.to_string_lossy());
        }
        let _ = std::fs::remove_dir_all(&self.dir.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn cgroup_mode_checked() {
        assert!(check_mode(None).is_ok());
        assert!(check_mode(Some("full")).is_ok());
        let e = check_mode(Some("bogus")).unwrap_err().to_string();
        assert!(e.contains("--manage-cgroups-mode bogus"), "{e}");
    }
}
