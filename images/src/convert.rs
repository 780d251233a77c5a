//! Image config → OCI runtime spec (config.json).
//!
//! Starts from a default close to `runc spec` (the usual mounts, namespaces, masked
//! and read-only paths, a small capability set) and fills in what the image says:
//! Entrypoint + Cmd, Env (PATH defaulted), WorkingDir, User (resolved through the
//! rootfs's own /etc/passwd and /etc/group), ExposedPorts (an annotation).
//! Volumes are not mounts: the caller creates them as directories in the writable layer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::fsroot::{CleanPath, Root};
use crate::{Error, Result};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Annotation carrying the image's exposed ports ("80/tcp,443/tcp").
pub const EXPOSED_PORTS_ANNOTATION: &str = "org.opencontainers.image.exposedPorts";

/// The image config file (OCI and Docker use the same field names).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ImageConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl ImageConfigFile {
    pub fn parse(bytes: &[u8], reference: &str) -> Result<ImageConfigFile> {
        serde_json::from_slice(bytes).map_err(|e| Error::Config {
            reference: reference.to_string(),
            field: "config".into(),
            reason: format!("not a valid image config: {e}"),
        })
    }
}

/// A resolved user: uid, gid, supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolve the image's `User` ("", "name", "uid", "name:group", "uid:gid") through
/// the rootfs's /etc/passwd and /etc/group, read via the root fd (a symlinked
/// /etc/passwd cannot make us read the host's).
pub fn resolve_user(rootfs: &Path, user: &str, reference: &str) -> Result<ResolvedUser> {
    let err = |reason: String| Error::Config {
        reference: reference.to_string(),
        field: "config.User".into(),
        reason,
    };
    if user.is_empty() {
        return Ok(ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        });
    }
    let root = Root::open(rootfs)?;
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_db(&root, "etc/passwd");
    let group = read_db(&root, "etc/group");
    // passwd: name:x:uid:gid:gecos:home:shell
    let pw = passwd.iter().find(|f| {
        f.first().map(String::as_str) == Some(u)
            || (u.parse::<u32>().is_ok() && f.get(2).map(String::as_str) == Some(u))
    });
    let (uid, mut gid, name) = match (pw, u.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err(format!("/etc/passwd entry for {u} has no valid uid")))?;
            let gid = f
                .get(3)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err(format!("/etc/passwd entry for {u} has no valid gid")))?;
            (uid, gid, f.first().cloned())
        }
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(err(format!(
                "user {u:?} not found in the image's /etc/passwd"
            )))
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .iter()
                .find(|f| f.first().map(String::as_str) == Some(g))
                .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
                .ok_or_else(|| err(format!("group {g:?} not found in the image's /etc/group")))?,
        };
    }
    // Supplementary groups: those listing the user by name (only when no group was forced).
    let mut additional_gids = Vec::new();
    if let (Some(name), None) = (name, g) {
        for f in &group {
            let members = f.get(3).map(String::as_str).unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Some(n) = f.get(2).and_then(|s| s.parse::<u32>().ok()) {
                    if n != gid && !additional_gids.contains(&n) {
                        additional_gids.push(n);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// A colon-separated database file of the rootfs; missing → empty.
fn read_db(root: &Root, rel: &str) -> Vec<Vec<String>> {
    let Ok(Some(p)) = CleanPath::new(Path::new(rel)) else {
        return vec![];
    };
    let mut s = String::new();
    if let Ok(mut f) = root.open_file(&p) {
        let _ = f.read_to_string(&mut s);
    }
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// The runtime spec for running `image` from the rootfs at `rootfs` (relative
/// "rootfs" in the bundle). `rootfs` must already hold the image (mounted).
pub fn runtime_spec(
    image: &ImageConfigFile,
    rootfs: &Path,
    reference: &str,
    hostname: &str,
) -> Result<Value> {
    let c = image.config.clone().unwrap_or_default();
    let mut args: Vec<String> = c.entrypoint.clone().unwrap_or_default();
    args.extend(c.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        return Err(Error::Config {
            reference: reference.to_string(),
            field: "config.Entrypoint/config.Cmd".into(),
            reason: "the image defines no command to run".into(),
        });
    }
    let mut env = c.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = match c.working_dir.as_deref() {
        None | Some("") => "/".to_string(),
        Some(w) if w.starts_with('/') => w.to_string(),
        Some(w) => {
            return Err(Error::Config {
                reference: reference.to_string(),
                field: "config.WorkingDir".into(),
                reason: format!("{w:?} is not an absolute path"),
            })
        }
    };
    let user = resolve_user(rootfs, c.user.as_deref().unwrap_or(""), reference)?;
    let mut annotations = serde_json::Map::new();
    if let Some(ports) = &c.exposed_ports {
        if !ports.is_empty() {
            annotations.insert(
                EXPOSED_PORTS_ANNOTATION.into(),
                Value::String(ports.keys().cloned().collect::<Vec<_>>().join(",")),
            );
        }
    }
    if let Some(sig) = &c.stop_signal {
        annotations.insert(
            "org.opencontainers.image.stopSignal".into(),
            Value::String(sig.clone()),
        );
    }
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        user_json["additionalGids"] = json!(user.additional_gids);
    }
    Ok(json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": user_json,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "annotations": annotations,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// The image's Volumes, as clean paths inside the rootfs.
pub fn volumes(image: &ImageConfigFile, reference: &str) -> Result<Vec<CleanPath>> {
    let mut out = Vec::new();
    if let Some(v) = image.config.as_ref().and_then(|c| c.volumes.as_ref()) {
        for k in v.keys() {
            match CleanPath::new(Path::new(k)) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(r) => {
                    return Err(Error::Config {
                        reference: reference.to_string(),
                        field: format!("config.Volumes[{k:?}]"),
                        reason: r,
                    })
                }
            }
        }
    }
    Ok(out)
}
