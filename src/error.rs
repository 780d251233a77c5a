//! The facade's one error enum: which app, instance, step, field or resource,
//! with the cause kept as the source.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] rpaas_runtime::Error),
    #[error(transparent)]
    Images(#[from] rpaas_images::Error),
    #[error(transparent)]
    Net(#[from] rpaas_netsetup::Error),
    #[error(transparent)]
    Numa(#[from] rpaas_numa::Error),
    /// The runtime binary failed; `source` is its error, rebuilt from the
    /// JSON it logged (kind, container, field, text).
    #[error("rpaas-run {verb} {id}: {source}")]
    Helper {
        id: String,
        verb: String,
        #[source]
        source: Box<rpaas_runtime::Error>,
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
    /// A field of an `AppSpec` or `HostConfig` that does not fit.
    #[error("{field}: {reason}")]
    Spec { field: String, reason: String },
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("app {app}: already deployed (scale, update or remove it)")]
    Exists { app: String },
    /// A resource the spec needs is not there or not free.
    #[error("{field}: {reason}")]
    Resource { field: String, reason: String },
    /// One step of bringing an instance up or down failed (what was done before
    /// it has been undone when bringing up).
    #[error("app {app}: instance {instance}: step {step}: {source}")]
    Step {
        app: String,
        instance: String,
        step: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// A record on disk that cannot be read.
    #[error("record {}: {reason}", path.display())]
    Record { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl AsRef<Path>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            what: what.into(),
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Say which file a spec error came from.
    pub(crate) fn in_file(self, path: &Path) -> Error {
        Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// The error of a step of `instance`.
    pub(crate) fn at_step(self, app: &str, instance: &str, step: &'static str) -> Error {
        match self {
            // Already said where: keep one prefix.
            e @ Error::Step { .. } => e,
            e => Error::Step {
                app: app.to_string(),
                instance: instance.to_string(),
                step,
                source: Box::new(e),
            },
        }
    }
}
