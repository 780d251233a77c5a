//! The persistent records of apps and instances under `<dataRoot>/apps`, and
//! the locks that serialize changes to them.
//!
//! ```text
//! <dataRoot>/host.lock                    address pool and NUMA decisions
//! <dataRoot>/apps/<app>/lock              one change of the app at a time
//! <dataRoot>/apps/<app>/app.json          the spec and the desired count
//! <dataRoot>/apps/<app>/instances/<n>.json  one instance: its steps and resources
//! ```
//!
//! Every step of an instance is written here *before* it is done, so a process
//! killed at any point leaves a record naming everything that may exist, and
//! `recover` can finish or undo it. App records, and instance records once
//! the instance is up, are written durably (fsync): a reboot brings instances
//! back from them, unlike the runtime's state on tmpfs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rpaas_fsutil::FileLock;
use rpaas_netsetup::IpCidr;
use serde::{Deserialize, Serialize};

use crate::app::spec::AppSpec;
use crate::error::{Error, Result};

/// The app as the agent last asked for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRecord {
    pub spec: AppSpec,
    /// Instances that should run (the spec's count, changed by `scale`).
    pub desired: u32,
    pub created: String,
    /// `remove` has begun: `recover` finishes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Being brought up: steps may be half done.
    Creating,
    /// Brought up (it may have exited since).
    Up,
    /// Being torn down: what `steps` names is being undone.
    Removing,
}

/// One step of bringing an instance up, in order. Undone in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The image is in the store and unpacked (nothing to undo: shared).
    Image,
    /// The writable snapshot is prepared and mounted on the bundle's rootfs.
    Snapshot,
    /// The app's files are written into the writable layer.
    Files,
    /// A NUMA node and cpus are reserved.
    Numa,
    /// The netns is made and its interface attached.
    Network,
    /// The container exists (created in keeper mode, in that netns).
    Container,
    /// The container was started.
    Started,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Image => "image",
            Step::Snapshot => "snapshot",
            Step::Files => "files",
            Step::Numa => "numa",
            Step::Network => "network",
            Step::Container => "container",
            Step::Started => "start",
        }
    }
}

/// NUMA placement as recorded (restored as it was after a reboot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaRecord {
    pub node: Option<u32>,
    pub cpus: String,
    pub mems: String,
}

/// One instance of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// `<app>-<n>`: also its container id in the state root.
    pub name: String,
    pub app: String,
    pub n: u32,
    pub phase: Phase,
    /// Steps begun, in order (a step is listed before it is done).
    pub steps: Vec<Step>,
    /// Its address, chosen before the network step and kept for its life.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::app::cidr::opt"
    )]
    pub address: Option<IpCidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<NumaRecord>,
    /// The writable snapshot's key.
    pub snapshot: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Times it was brought back (restart, recover after an exit or a reboot).
    #[serde(default)]
    pub restarts: u32,
}

impl InstanceRecord {
    pub fn has(&self, step: Step) -> bool {
        self.steps.contains(&step)
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.address.map(|a| a.addr)
    }
}

/// The records under one data root.
#[derive(Debug, Clone)]
pub struct Records {
    apps: PathBuf,
    host_lock: PathBuf,
}

/// Held while one app is changed; a killed holder's lock goes with it (flock).
pub struct AppLock {
    _lock: FileLock,
}

/// Held while the address pool or NUMA placements are decided.
pub struct HostLock {
    _lock: FileLock,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Record {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Record {
        path: path.to_path_buf(),
        reason: format!("encode: {e}"),
    })?;
    rpaas_fsutil::write_atomic(path, &bytes, durable).map_err(|e| Error::io("replace", path, e))
}

/// Wait for the exclusive lock on `path` (created if missing).
fn lock(path: &Path) -> Result<FileLock> {
    FileLock::lock(path).map_err(|e| Error::io("lock", path, e))
}

impl Records {
    pub fn open(data_root: &Path) -> Result<Records> {
        let apps = data_root.join("apps");
        std::fs::create_dir_all(&apps).map_err(|e| Error::io("create", &apps, e))?;
        Ok(Records {
            apps,
            host_lock: data_root.join("host.lock"),
        })
    }

    fn app_dir(&self, app: &str) -> PathBuf {
        self.apps.join(app)
    }

    fn instance_path(&self, app: &str, n: u32) -> PathBuf {
        self.app_dir(app)
            .join("instances")
            .join(format!("{n}.json"))
    }

    pub fn lock_host(&self) -> Result<HostLock> {
        Ok(HostLock {
            _lock: lock(&self.host_lock)?,
        })
    }

    /// Lock `app`, creating its directory (deploy, recover, gc).
    pub fn lock_app(&self, app: &str) -> Result<AppLock> {
        self.lock_app_dir(app, true)
    }

    /// Lock an app that exists (its directory is there): the calls that
    /// change an app leave nothing behind for a name that is not one.
    pub fn lock_existing_app(&self, app: &str) -> Result<AppLock> {
        self.lock_app_dir(app, false)
    }

    fn lock_app_dir(&self, app: &str, create: bool) -> Result<AppLock> {
        use std::os::unix::fs::MetadataExt;
        // The name becomes a path: never `..`, `/` or anything but a plain name.
        crate::app::spec::validate_app_name(app)?;
        let path = self.app_dir(app).join("lock");
        loop {
            let dir = self.app_dir(app).join("instances");
            if !create && !dir.is_dir() {
                return Err(Error::NotFound {
                    what: format!("app {app}"),
                });
            }
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            let lock = lock(&path)?;
            // `remove` deletes the app's directory, lock file included, while
            // holding it: a waiter that then gets the old, unlinked file must
            // not go on beside one that locks the new file.
            let held = nix::sys::stat::fstat(std::os::fd::AsFd::as_fd(&lock)).ok();
            let named = std::fs::metadata(&path).ok();
            if let (Some(h), Some(n)) = (held, named) {
                if h.st_ino == n.ino() && h.st_dev == n.dev() {
                    return Ok(AppLock { _lock: lock });
                }
            }
        }
    }

    /// Names of every app with a directory (recorded or half-made).
    pub fn app_names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.apps).map_err(|e| Error::io("read", &self.apps, e))?;
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn app(&self, app: &str) -> Result<Option<AppRecord>> {
        read_json(&self.app_dir(app).join("app.json"))
    }

    pub fn save_app(&self, _lock: &AppLock, rec: &AppRecord) -> Result<()> {
        write_json(&self.app_dir(&rec.spec.name).join("app.json"), rec, true)
    }

    /// Every instance record of `app`, by number.
    pub fn instances(&self, app: &str) -> Result<Vec<InstanceRecord>> {
        let dir = self.app_dir(app).join("instances");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &dir, e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(r) = read_json::<InstanceRecord>(&p)? {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.n);
        Ok(out)
    }

    pub fn instance(&self, app: &str, n: u32) -> Result<Option<InstanceRecord>> {
        read_json(&self.instance_path(app, n))
    }

    pub fn save_instance(&self, rec: &InstanceRecord) -> Result<()> {
        // A killed agent loses no written page, so the step log needs no
        // fsync; a power loss does, but it also takes every container, netns
        // and mount a half-made instance had (a layer left unclaimed is gc's).
        // What a reboot must find is an instance that is up: that write is
        // durable.
        write_json(
            &self.instance_path(&rec.app, rec.n),
            rec,
            rec.phase == Phase::Up,
        )
    }

    pub fn drop_instance(&self, app: &str, n: u32) -> Result<()> {
        let p = self.instance_path(app, n);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    /// Remove the app's directory (its records and lock) once nothing is left.
    pub fn drop_app(&self, _lock: AppLock, app: &str) -> Result<()> {
        let dir = self.app_dir(app);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        }
    }

    /// Addresses held by any instance record of any app (the pool's "used").
    pub fn used_addresses(&self) -> Result<std::collections::HashSet<IpAddr>> {
        let mut used = std::collections::HashSet::new();
        for app in self.app_names()? {
            for r in self.instances(&app)? {
                used.extend(r.ip());
            }
        }
        Ok(used)
    }
}

/// The instance name of app `app`'s instance `n`.
pub fn instance_name(app: &str, n: u32) -> String {
    format!("{app}-{n}")
}

/// Split `<app>-<n>` (the app name may hold dashes).
pub fn parse_instance(name: &str) -> Option<(&str, u32)> {
    let (app, n) = name.rsplit_once('-')?;
    let n: u32 = n.parse().ok()?;
    (!app.is_empty() && n > 0).then_some((app, n))
}
