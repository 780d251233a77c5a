//! Apps and instances: the PaaS flow composed from the image store, the
//! network, NUMA placement and the runtime (the one place that composes them).

pub mod build;
pub(crate) mod cidr;
mod failpoint;
mod instance;
mod ops;
pub mod pool;
pub mod record;
mod recover;
pub mod spec;

pub use ops::{AppStatus, InstanceStatus};
pub use recover::{GcReport, RecoverReport};
