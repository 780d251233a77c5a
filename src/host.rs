//! `Host`: the handle an agent keeps. Cheap to clone, `Send + Sync`; every call
//! may come from any thread. Containers are created by spawning the runtime
//! binary: the library never forks the caller's (multi-threaded) process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rpaas_images::ImageStore;
use rpaas_numa::{StateFile, Topology};
use rpaas_runtime::{Container, ExitRecord, Status};

use crate::app::record::Records;
use crate::config::{HostConfig, SnapshotterConfig};
use crate::error::{Error, Result};
use crate::health::{self, Check};

/// The state shared by every clone of a `Host`.
pub(crate) struct Inner {
    pub config: HostConfig,
    pub runtime: PathBuf,
    pub records: Records,
    pub images: ImageStore,
    pub numa: StateFile,
    pub topology: Topology,
    pub events: crate::events::Bus,
}

/// The apps and containers of one host.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// What `exec` gives back when the command ran: its exit code and output. A
/// command that could not be run at all is an `Err`, never a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn open_images(cfg: &HostConfig) -> Result<ImageStore> {
    let root = cfg.images_root();
    match &cfg.snapshotter {
        SnapshotterConfig::Overlay => Ok(ImageStore::open_overlay(&root)?),
        SnapshotterConfig::Devmapper {
            pool,
            loopback_dir,
            loopback_size,
        } => {
            use rpaas_images::snapshot::devmapper::{Config, DevmapperSnapshotter};
            let dm_root = root.join("snapshots/devmapper");
            let dm = match loopback_dir {
                Some(dir) => {
                    Config::loopback(&dm_root, pool, dir, loopback_size.unwrap_or(8 << 30))
                }
                None => Config::existing(&dm_root, pool),
            };
            let snap = DevmapperSnapshotter::new(dm)?;
            Ok(ImageStore::open(&root, Box::new(snap))?)
        }
    }
}

impl Host {
    /// Open the host: validate the config, create the roots, open the image
    /// store and the NUMA books. Nothing is started.
    pub fn open(config: HostConfig) -> Result<Host> {
        config.validate()?;
        for dir in [&config.state_root, &config.data_root] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let records = Records::open(&config.data_root)?;
        let images = open_images(&config)?;
        let topology = Topology::discover(&config.numa.sysfs_root)?;
        Ok(Host {
            inner: Arc::new(Inner {
                runtime: config.runtime_bin(),
                numa: StateFile::new(&config.data_root.join("numa")),
                records,
                images,
                topology,
                events: Default::default(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// The runtime state root (`rpaas-run --root`).
    pub fn root(&self) -> &Path {
        &self.inner.config.state_root
    }

    /// The image store (import, pull, prefetch fill it).
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// Create and start the bundle as container `id` in keeper mode, its
    /// output logged to `<root>/<id>/log`. Returns once the app runs.
    pub fn run(&self, id: &str, bundle: &Path) -> Result<Container> {
        self.inner.run_bundle(id, bundle)?;
        self.load(id)
    }

    /// Run a command inside a running container. `user` is "uid[:gid]".
    pub fn exec(&self, id: &str, user: Option<&str>, args: &[&str]) -> Result<ExecOutcome> {
        let mut extra: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(u) = user {
            extra.push("--user".as_ref());
            extra.push(u.as_ref());
        }
        extra.push(id.as_ref());
        extra.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        self.inner.runtime_cmd(id, "exec", &extra, true)
    }

    /// Every container under the root, running or not.
    pub fn list(&self) -> Result<Vec<Container>> {
        Ok(Container::list(self.root())?)
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        Ok(Container::load(self.root(), id)?)
    }

    /// Wait for the container to stop (None on timeout) and return its exit record.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Option<ExitRecord>> {
        Ok(self.load(id)?.wait(timeout)?)
    }

    /// Stop: SIGTERM, then SIGKILL after `grace`; returns the exit record.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<Option<ExitRecord>> {
        let c = self.load(id)?;
        if c.status() != Status::Stopped {
            let _ = c.kill(nix::sys::signal::Signal::SIGTERM, false);
            if c.wait(Some(grace))?.is_none() && c.status() != Status::Stopped {
                c.kill(nix::sys::signal::Signal::SIGKILL, true)?;
            }
        }
        Ok(c.wait(Some(Duration::from_secs(10)))?)
    }

    /// Remove the container (killing it if needed): cgroups and state.
    pub fn delete(&self, id: &str) -> Result<()> {
        match self.load(id) {
            Ok(c) => Ok(c.delete(true)?),
            Err(Error::Runtime(rpaas_runtime::Error::NotFound { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Memory and CPU of a container, from its cgroups.
    pub fn stats(&self, id: &str) -> Result<Option<rpaas_runtime::cgroups::Stats>> {
        let c = self.load(id)?;
        Ok(match c.cgroup() {
            Some(cg) if cg.exists() => Some(cg.stats()?),
            _ => None,
        })
    }

    /// Run a health check against a running container.
    pub fn health(&self, id: &str, check: &Check) -> Result<()> {
        let c = self.load(id)?;
        health::check(&c, check).map_err(|reason| Error::Health {
            id: id.to_string(),
            check: check.to_string(),
            reason,
        })
    }
}

impl Inner {
    /// `rpaas-run run --detach --keeper` of a prepared bundle.
    pub(crate) fn run_bundle(&self, id: &str, bundle: &Path) -> Result<()> {
        let size = self.config.log_size_max.to_string();
        let files = self.config.log_max_files.to_string();
        let driver = self.config.log_driver.as_deref().unwrap_or("json-file");
        let args: [&std::ffi::OsStr; 11] = [
            "--detach".as_ref(),
            "--keeper".as_ref(),
            "--log-size-max".as_ref(),
            size.as_ref(),
            "--log-max-files".as_ref(),
            files.as_ref(),
            "--log-driver".as_ref(),
            driver.as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id.as_ref(),
        ];
        self.runtime_cmd(id, "run", &args, false).map(drop)
    }

    /// Spawn `rpaas-run --root STATE --log-format json --log F VERB ARGS`.
    /// The runtime's own failure is told from the program's exit code by its
    /// log: an error line there is an `Err`; a command that ran and exited
    /// non-zero (exec) is an outcome. Without `outcome`, non-zero is an `Err`.
    pub(crate) fn runtime_cmd(
        &self,
        id: &str,
        verb: &str,
        args: &[&std::ffi::OsStr],
        outcome: bool,
    ) -> Result<ExecOutcome> {
        let log = helper_log(&self.config.state_root)?;
        let out = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.config.state_root)
            .arg("--log-format")
            .arg("json")
            .arg("--log")
            .arg(log.path())
            .arg(verb)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                path: self.runtime.clone(),
                source,
            })?;
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if code != 0 {
            let runtime_error = logged_error(log.path());
            match runtime_error {
                Some(source) => {
                    return Err(Error::Helper {
                        id: id.to_string(),
                        verb: verb.to_string(),
                        source: Box::new(source),
                    })
                }
                None if !outcome => {
                    return Err(Error::Helper {
                        id: id.to_string(),
                        verb: verb.to_string(),
                        source: Box::new(rpaas_runtime::Error::Other(if stderr.is_empty() {
                            format!("exit status {code}")
                        } else {
                            stderr
                        })),
                    })
                }
                None => {}
            }
        }
        Ok(ExecOutcome {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }
}

/// The helper's JSON error logs in the state root: `#log.<pid>.<random>`.
pub(crate) const LOG_PREFIX: &str = "#log.";

/// A new JSON error log for one spawn of the runtime binary, named after
/// this process (gc removes what a killed one left).
pub(crate) fn helper_log(state_root: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{LOG_PREFIX}{}.", std::process::id()))
        .tempfile_in(state_root)
        .map_err(|e| Error::io("create log file in", state_root, e))
}

/// The runtime's last error record in `log`, as a typed error: its kind,
/// container and field come back (`rpaas_runtime::Error::from_report`).
pub(crate) fn logged_error(log: &Path) -> Option<rpaas_runtime::Error> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .map(|v| {
            let msg = v["msg"].as_str().unwrap_or_default().to_string();
            match serde_json::from_value::<rpaas_runtime::Report>(v) {
                Ok(r) => rpaas_runtime::Error::from_report(r),
                Err(_) => rpaas_runtime::Error::Other(msg),
            }
        })
}

/// Remove the helper logs of processes that are gone (killed agents).
pub(crate) fn remove_dead_logs(state_root: &Path) -> Vec<String> {
    let mut gone = Vec::new();
    for e in std::fs::read_dir(state_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(LOG_PREFIX)
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if !alive && std::fs::remove_file(e.path()).is_ok() {
                gone.push(name);
            }
        }
    }
    gone
}

/// Whether `dir` is the root of a mount.
pub(crate) fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev() || d.ino() == p.ino(),
        _ => false,
    }
}
