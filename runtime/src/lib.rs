//! `rpaas-runtime`: run one OCI bundle.
//!
//! Namespaces, cgroups (v1, hybrid and v2), rootfs, the container process,
//! state, exec, kill, delete and the per-container keeper.
//!
//! Process model (docs/ARCHITECTURE.md): `create` is single-threaded and
//! clones init; init sets up everything and blocks on the start fifo;
//! nothing of rpaas stays running in OCI mode. In keeper mode a tiny forked
//! keeper stays as init's parent and records the exit status.
//!
//! The library API ([`Container`]) never forks: a multi-threaded caller
//! creates containers by spawning the `rpaas-run` binary (see
//! `rpaas::Host`), and loads, waits for, kills and deletes them in-process.

pub mod cgroups;
pub mod checkpoint;
mod console;
pub mod container;
pub mod create;
mod error;
pub mod exec;
pub mod failpoint;
pub mod gc;
mod hooks;
pub mod keeper;
pub mod login;
pub mod mempolicy;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;

pub use container::{Container, Status};
pub use create::{create, CreateOptions};
pub use error::{Error, Report, Result};
pub use exec::{exec, ExecOptions};
pub use state::ExitRecord;
