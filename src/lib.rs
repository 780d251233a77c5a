//! `rpaas`: the host agent's one entry point.
//!
//! [`Host`] deploys apps ([`AppSpec`]) as instances: each instance is an image's
//! writable snapshot with the app's files written in, a NUMA placement, a pinned
//! network namespace with a public address on the LAN, and a container run in
//! keeper mode, so that the agent (a long-lived, multi-threaded program) can be
//! killed, restarted or upgraded at any time without stopping an app. Every
//! step is recorded before it is done (`<dataRoot>/apps`), and
//! [`Host::recover`] finishes or undoes whatever a killed agent or a reboot
//! left.
//!
//! Containers are created by spawning the `rpaas-run` binary: the library
//! never forks the caller's (possibly multi-threaded) process. Everything else
//! (state, wait, kill, delete, netlink, mounts) runs in-process; calls that
//! pull images start a tokio runtime of their own, so call them from a
//! blocking context (`spawn_blocking`) in an async agent.

pub mod app;
mod checkpoint;
pub mod config;
mod error;
pub mod events;
mod health;
mod host;
pub mod login;
pub mod logs;
pub mod metrics;
pub mod probe;
mod signal;
mod supervise;

pub use app::spec::{AppSpec, Resources};
pub use app::{AppStatus, GcReport, InstanceStatus, RecoverReport};
pub use config::HostConfig;
pub use error::{Error, Result};
pub use events::{Event, EventKind, Events};
pub use health::{check as health_check, Check};
pub use host::{ExecOutcome, Host};
pub use logs::{LogEntry, LogOptions, Logs};
pub use metrics::{InstanceMetrics, MetricsOptions};
pub use rpaas_runtime::{Container, ExitRecord, Status};
pub use supervise::{HealthStatus, HistoryEntry, SuperviseOptions, Supervisor, Timed};
