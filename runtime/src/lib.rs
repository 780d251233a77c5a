//! `rpaas-runtime`: run one OCI bundle.
//!
//! Namespaces, cgroups (v1, hybrid and v2), rootfs, the container process,
//! state, exec, kill, delete and the per-container keeper.

pub mod cgroups;
mod error;
pub mod security;

pub use error::{Error, Result};
