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
    #[error("container {}: {reason}", shown(id))]
    State { id: String, reason: String },

    /// No container with this id under the root.
    #[error("container {} does not exist", shown(id))]
    NotFound { id: String },

    /// A container with this id already exists.
    #[error("container {} already exists", shown(id))]
    Exists { id: String },

    /// The container's init (or an exec'd process) reported a failure while setting up.
    /// `msg` may be the chain of an error that already names the container (a
    /// keeper reports its setup failure that way): the prefix is not repeated.
    #[error("container {}: {}", shown(id), without_prefix(id, msg))]
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

    /// An error another process (the `rpaas-run` binary) reported as JSON and
    /// this one rebuilt ([`Error::from_report`]): its kind, container and
    /// field are kept; the cause's text is in `message`.
    #[error("{message}")]
    Reported {
        kind: String,
        container: Option<String>,
        field: Option<String>,
        message: String,
    },

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

/// The longest id (or other user-given name) an error message shows whole.
const SHOWN_MAX: usize = 256;

/// `id` as an error message shows it: on one line (quoted and escaped when it
/// holds anything but printable ASCII, so a newline cannot start a second
/// line) and bounded in length.
pub fn shown(id: &str) -> String {
    let plain = id.bytes().all(|b| b.is_ascii_graphic());
    let mut text = if plain {
        id.to_string()
    } else {
        format!("{id:?}")
    };
    if text.len() > SHOWN_MAX {
        let total = text.len();
        let mut cut = SHOWN_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("… ({} more bytes)", total - cut));
    }
    text
}

/// `msg` without a leading "container <id>: " (see [`Error::Init`]).
fn without_prefix<'a>(id: &str, msg: &'a str) -> &'a str {
    let prefix = format!("container {}: ", shown(id));
    msg.strip_prefix(prefix.as_str()).unwrap_or(msg)
}

/// The first `max` items of a list for an error message, then "… and N more":
/// a config with 70,000 additionalGids must not make a 478 KB error line.
pub fn list_preview<T: std::fmt::Display>(items: &[T], max: usize) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().take(max).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&item.to_string());
    }
    if items.len() > max {
        out.push_str(&format!(", … and {} more", items.len() - max));
    }
    out.push(']');
    out
}

/// An error as one JSON object: what a caller in another process needs to
/// act on it (which kind, which container, which field) and its one-line text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub msg: String,
}

impl Error {
    /// The variant's name, for callers across a process boundary.
    pub fn kind(&self) -> &str {
        match self {
            Error::Spec { .. } => "spec",
            Error::Io { .. } => "io",
            Error::Sys { .. } => "sys",
            Error::Cgroup { .. } => "cgroup",
            Error::Security { .. } => "security",
            Error::State { .. } => "state",
            Error::NotFound { .. } => "not-found",
            Error::Exists { .. } => "exists",
            Error::Init { .. } => "init",
            Error::Hook { .. } => "hook",
            Error::Other(_) => "other",
            Error::Reported { kind, .. } => kind,
            Error::CgroupFile { .. } => "cgroup-file",
        }
    }

    /// The container the error is about, when the variant names it.
    pub fn container(&self) -> Option<&str> {
        match self {
            Error::State { id, .. }
            | Error::NotFound { id }
            | Error::Exists { id }
            | Error::Init { id, .. } => Some(id),
            Error::Reported { container, .. } => container.as_deref(),
            _ => None,
        }
    }

    /// The config field (JSON path) the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Spec { field, .. } | Error::CgroupFile { field, .. } => Some(field),
            Error::Reported { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// This error as a [`Report`] whose text is `msg` (the whole chain, as
    /// the CLI prints it).
    pub fn report(&self, msg: &str) -> Report {
        Report {
            kind: self.kind().to_string(),
            container: self.container().map(str::to_string),
            field: self.field().map(str::to_string),
            msg: msg.to_string(),
        }
    }

    /// Rebuild an error from a [`Report`]: the variants a caller matches on
    /// (spec, not-found, exists, state) come back as themselves; the others
    /// as [`Error::Reported`].
    pub fn from_report(r: Report) -> Error {
        // The variants' own text prefixes are part of `msg`: keep it whole.
        match (r.kind.as_str(), r.container, r.field) {
            ("not-found", Some(id), _) => Error::NotFound { id },
            ("exists", Some(id), _) => Error::Exists { id },
            (kind, container, field) => Error::Reported {
                kind: kind.to_string(),
                container,
                field,
                message: r.msg,
            },
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_with_a_newline_stays_on_one_line() {
        let e = Error::NotFound { id: "a\nb".into() };
        assert_eq!(e.to_string(), "container \"a\\nb\" does not exist");
        let long = "x".repeat(5000);
        let text = Error::State {
            id: long,
            reason: "r".into(),
        }
        .to_string();
        assert!(text.len() < 400, "{}", text.len());
        assert!(text.contains("more bytes"), "{text}");
    }

    #[test]
    fn a_nested_init_error_names_the_container_once() {
        let inner = Error::Init {
            id: "web".into(),
            msg: "init exited during setup".into(),
        };
        let outer = Error::Init {
            id: "web".into(),
            msg: inner.chain(),
        };
        assert_eq!(outer.to_string(), "container web: init exited during setup");
    }

    #[test]
    fn lists_are_bounded() {
        let gids: Vec<u32> = (0..70_000).collect();
        let text = list_preview(&gids, 8);
        assert_eq!(text, "[0, 1, 2, 3, 4, 5, 6, 7, … and 69992 more]");
    }
}
