//! The one error type of `rpaas-runtime`.
//!
//! Every variant carries what a user needs to act: the container id, the JSON
//! field of config.json, or the host path, and the underlying cause as `source`
//! so that the CLI can print the whole chain on one line.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json (or a process.json) is invalid; `field` is the JSON path, e.g.
    /// `process.rlimits[2].type`.
    #[error("config {field}: {reason}")]
    Spec { field: String, reason: String },

    /// A file-system operation on a host path failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call failed; `what` says which one and on what.
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },

    /// A cgroup operation failed; `path` is the cgroup path (relative to the hierarchy root).
    #[error("cgroup {path}: {reason}")]
    Cgroup { path: String, reason: String },

    /// A security setting (capabilities, seccomp, rlimits, ...) could not be applied.
    #[error("{what}: {reason}")]
    Security { what: String, reason: String },

    /// The container is not in a state that allows the operation.
    #[error("container {id}: {reason}")]
    State { id: String, reason: String },

    /// No container with this id under the root.
    #[error("container {id} does not exist")]
    NotFound { id: String },

    /// A container with this id already exists.
    #[error("container {id} already exists")]
    Exists { id: String },

    /// The container's init (or an exec'd process) reported a failure while setting up.
    #[error("container {id}: {msg}")]
    Init { id: String, msg: String },

    /// A hook failed or timed out.
    #[error("hook {hook}[{index}] {path}: {reason}")]
    Hook {
        hook: String,
        index: usize,
        path: String,
        reason: String,
    },

    /// Anything else, with context.
    #[error("{0}")]
    Other(String),

    /// A cgroup file or directory operation failed. `field` is the spec field being applied
    /// (`linux.resources.memory.limit`) or the cgroup operation (`cgroup create`), `op` what was
    /// done (`write "100" to`), `file` the host path; the kernel's errno is in `source`.
    #[error("{field}: {op} {file}")]
    CgroupFile {
        field: String,
        op: String,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    pub fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Spec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn cgroup(path: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Cgroup {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub fn security(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Security {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// The error and all its sources joined with ": " on one line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}
