//! The crate's one error type. Every variant names the file, field or node it is about;
//! io causes are kept as `source` (not repeated in the message) so `{:#}` prints the chain once.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sysfs / cgroup / state file could not be read.
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (state file, cgroup file).
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a cgroup value (EINVAL for a cpu it does not have, ENOSPC for an empty
    /// parent cpuset, ...).
    #[error("cgroup {path}: writing {value:?} was refused")]
    CgroupWrite {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    /// A file's content does not parse.
    #[error("parse {path}: {what}")]
    Parse { path: PathBuf, what: String },
    /// A cpu / node list string ("0-5,12-17") is malformed.
    #[error("bad cpu/node list {input:?}: {what}")]
    List { input: String, what: String },
    /// The sysfs tree has no cpus at all (wrong --sysfs directory?).
    #[error("topology under {path}: {what}")]
    Topology { path: PathBuf, what: String },
    /// A request that can never be satisfied on this host.
    #[error("request {field}: {what}")]
    BadRequest { field: &'static str, what: String },
    /// policy single-node and no node has room.
    #[error("no NUMA node has room for {request}: {detail}")]
    NoNodeFits { request: String, detail: String },
    /// An id was placed twice or released without being placed.
    #[error("placement {id:?}: {what}")]
    Placement { id: String, what: String },
    /// The persisted placement state is unreadable.
    #[error("state {path}: {what}")]
    State { path: PathBuf, what: String },
    /// The cgroup layout could not be recognised.
    #[error("cgroup layout under {path}: {what}")]
    Layout { path: PathBuf, what: String },
}

pub type Result<T> = std::result::Result<T, Error>;
