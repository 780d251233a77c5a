//! Health probes (Kubernetes' startup, liveness and readiness) and their one
//! scheduler for the whole host. `Host::supervise` (src/supervise.rs) runs
//! them for every instance and applies the restart policy.

mod exec;
mod file;
mod net;
pub mod scheduler;
pub mod spec;

pub use exec::ExecTarget;
pub use scheduler::{ProbeId, ProbeResult, Scheduler, Stats, Target};
pub use spec::{
    Action, ExecAction, FileAction, Header, HealthSpec, HttpAction, Probe, ProbeKind,
    RestartPolicy, RestartSpec, TcpAction,
};
