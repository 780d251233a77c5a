//! `rpaas`: the host agent's one entry point.
//!
//! [`Host`] runs containers in keeper mode, so that the agent (a long-lived,
//! multi-threaded program) can be killed, restarted or upgraded at any time
//! without stopping an app: every container has its own tiny keeper that
//! records its exit status, and a new `Host` finds every container again from
//! the state directory.
//!
//! Containers are created by spawning the `rpaas-run` binary: the library
//! never forks the caller's (possibly multi-threaded) process between fork
//! and exec. Everything else (state, wait, kill, delete) runs in-process.

mod health;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use health::{check as health_check, Check};
pub use rpaas_runtime::{Container, ExitRecord, Status};

/// Errors of the facade: which container, and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] rpaas_runtime::Error),
    #[error("container {id}: rpaas-run {verb} failed: {stderr}")]
    Helper {
        id: String,
        verb: String,
        stderr: String,
    },
    #[error("rpaas-run helper {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: health check {check}: {reason}")]
    Health {
        id: String,
        check: String,
        reason: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the host keeps its state and which runtime binary it drives.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Container state (tmpfs recommended): `/run/rpaas`.
    pub root: PathBuf,
    /// The `rpaas-run` binary the host spawns for create and exec.
    pub runtime: PathBuf,
    /// Rotate a container's log file past this size (bytes; 0 = default).
    pub log_size_max: u64,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            root: PathBuf::from("/run/rpaas"),
            runtime: PathBuf::from("rpaas-run"),
            log_size_max: 0,
        }
    }
}

/// The containers of one host.
#[derive(Debug, Clone)]
pub struct Host {
    config: HostConfig,
}

impl Host {
    pub fn new(config: HostConfig) -> Host {
        Host { config }
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    fn helper(&self, id: &str, verb: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
        // Output through a file-less pipe is fine here: detached keeper-mode
        // containers do not inherit our stdout (the keeper logs them).
        let out = Command::new(&self.config.runtime)
            .arg("--root")
            .arg(&self.config.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                path: self.config.runtime.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Helper {
                id: id.to_string(),
                verb: verb.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Create and start the bundle as container `id` in keeper mode, its
    /// output logged to `<root>/<id>/log`. Returns once the app runs.
    pub fn run(&self, id: &str, bundle: &Path) -> Result<Container> {
        let size = self.config.log_size_max.to_string();
        self.helper(
            id,
            "run",
            &[
                "run".as_ref(),
                "--detach".as_ref(),
                "--keeper".as_ref(),
                "--log-size-max".as_ref(),
                size.as_ref(),
                "--bundle".as_ref(),
                bundle.as_os_str(),
                id.as_ref(),
            ],
        )?;
        self.load(id)
    }

    /// Run a command inside a running container; returns (exit code, stdout).
    /// `user` is "uid[:gid]": a developer's read-only login uses the app's
    /// unprivileged user, an operator's uses 0.
    pub fn exec(&self, id: &str, user: Option<&str>, args: &[&str]) -> Result<(i32, String)> {
        let mut cmd = Command::new(&self.config.runtime);
        cmd.arg("--root").arg(&self.config.root).arg("exec");
        if let Some(u) = user {
            cmd.arg("--user").arg(u);
        }
        let out = cmd
            .arg(id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                path: self.config.runtime.clone(),
                source,
            })?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// Every container under the root, running or not.
    pub fn list(&self) -> Result<Vec<Container>> {
        Ok(Container::list(&self.config.root)?)
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        Ok(Container::load(&self.config.root, id)?)
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

    /// Undo what crashes and reboots left behind.
    pub fn gc(&self) -> Result<rpaas_runtime::gc::Report> {
        Ok(rpaas_runtime::gc::gc(&self.config.root, false)?)
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
