//! rpaas-numa: know the host's NUMA topology and pin each container to one node.
//!
//! - [`Topology::discover`] reads nodes, cpus, memory, distances and SMT siblings from sysfs.
//! - [`Placer`] decides a node (policies single-node / preferred / none, optional exclusive
//!   cores) and keeps the books; [`StateFile`] persists them atomically and
//!   [`rebuild`] recovers them from running containers' cgroups.
//! - [`apply`] writes `cpuset.cpus`/`cpuset.mems` (+ v1 swappiness, migration) into a cgroup;
//!   [`Placement::spec_cpuset`] gives the strings for a spec's `linux.resources.cpu`.
//! - [`locality`] reads `memory.numa_stat` to show where a container's memory really is.
//!
//! This crate does not depend on the other rpaas crates; the `rpaas` facade composes them.
pub mod apply;
pub mod cpulist;
pub mod error;
pub mod layout;
pub mod locality;
pub mod place;
pub mod request;
pub mod state;
pub mod topology;

pub use apply::{apply, Applied, ApplyOptions, SwapMax, Written};
pub use cpulist::IdSet;
pub use error::{Error, Result};
pub use layout::CgroupRoots;
pub use locality::{locality, Locality};
pub use place::{Decision, NodeLoad, Placement, Placer, Resized, SpecCpuset};
pub use request::{parse_cpus, parse_size, Policy, Request};
pub use state::{observe, rebuild, Observed, StateFile, StateLock};
pub use topology::{Node, Topology};
