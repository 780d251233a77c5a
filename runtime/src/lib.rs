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
//! [`create`] and [`exec`] fork (init, the keeper, exec's child) and are
//! sound only in a single-threaded process: they refuse to run in one with
//! more than one thread. `login` and `checkpoint::restore` fork too. Only
//! `rpaas-run` calls these; a multi-threaded caller (`rpaas::Host`) spawns
//! the `rpaas-run` binary for them, and loads, waits for, kills and deletes
//! containers ([`Container`]) in-process, none of which forks.

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
