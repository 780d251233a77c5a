//! The one error type of `rpaas-images`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A registry operation failed (reference, what was asked, why).
    #[error("registry {reference}: {reason}")]
    Registry { reference: String, reason: String },
    /// Content does not match what was promised (digest, size, media type).
    #[error("blob {digest}: {reason}")]
    Content { digest: String, reason: String },
    /// A layer entry is refused (path escapes, bomb limits, unsupported type).
    #[error("layer {layer}: entry {entry}: {reason}")]
    Layer {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A snapshot operation failed.
    #[error("snapshot {key}: {reason}")]
    Snapshot { key: String, reason: String },
    /// A device-mapper thin-pool operation failed.
    #[error("devmapper {what}: {reason}")]
    Devmapper { what: String, reason: String },
    /// Image configuration cannot be turned into a runtime spec.
    #[error("image {reference}: {field}: {reason}")]
    Config {
        reference: String,
        field: String,
        reason: String,
    },
    /// No such image / ref.
    #[error("image {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
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
}
