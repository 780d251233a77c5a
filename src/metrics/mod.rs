//! Resource usage of every instance, in one call cheap enough to make every
//! few seconds: cgroup counters (v1 and v2, through the runtime's reader),
//! the container's own view of its network, its processes, threads and open
//! files, and its writable layer. Shaped as serde structs (JSON) and as the
//! Prometheus text exposition with cAdvisor's metric names ([`prometheus`]).
//!
//! Sections that cannot be read for one instance (a stopped instance has no
//! processes; a host without a controller has no such counters) are `None`
//! or empty, never faked as zero; one instance's failure never hides the
//! others: it is reported in that instance's `errors`.

pub mod cgroup;
pub mod disk;
pub mod net;
pub mod procs;
pub mod prometheus;

use std::time::Duration;

use rpaas_runtime::{Container, Status};
use serde::Serialize;

use crate::app::record::{InstanceRecord, Phase};
use crate::error::Result;
use crate::host::Host;

pub use cgroup::{CpuMetrics, IoDevice, MemoryMetrics, PidsMetrics, PressureMetrics};
pub use disk::FsMetrics;
pub use net::NetInterface;
pub use procs::ProcessMetrics;

/// How [`Host::metrics_with`] collects.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// An overlay writable layer is walked (bounded) at most once per this
    /// long per instance; the cached size is given in between. 0 = walk now.
    pub fs_max_age: Duration,
    /// Only this app's instances.
    pub app: Option<String>,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            fs_max_age: disk::DEFAULT_MAX_AGE,
            app: None,
        }
    }
}

/// One instance's usage at `timestamp`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetrics {
    pub app: String,
    pub instance: String,
    /// The instance's address without its prefix length, if networked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// `running`, `stopped`, `paused`, ... (as `InstanceStatus`).
    pub status: String,
    /// RFC 3339 UTC, when this instance was read.
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsMetrics>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io: Vec<IoDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure: Option<PressureMetrics>,
    /// Interfaces of the instance's network namespace (loopback left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetInterface>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsMetrics>,
    /// What could not be read, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Host {
    /// Usage of every instance of every app (see [`MetricsOptions::default`]).
    pub fn metrics(&self) -> Result<Vec<InstanceMetrics>> {
        self.metrics_with(&MetricsOptions::default())
    }

    /// Usage of the instances `opts` selects, in app then instance order.
    pub fn metrics_with(&self, opts: &MetricsOptions) -> Result<Vec<InstanceMetrics>> {
        let i = &self.inner;
        let names = match &opts.app {
            Some(a) => {
                // NotFound for an unknown app, as `Host::app` says it.
                i.app_record(a)?;
                vec![a.clone()]
            }
            None => i.records.app_names()?,
        };
        let mut out = Vec::new();
        for app in names {
            for rec in i.records.instances(&app)? {
                if rec.phase != Phase::Up {
                    continue;
                }
                out.push(self.instance_metrics(&rec, opts));
            }
        }
        Ok(out)
    }

    fn instance_metrics(&self, rec: &InstanceRecord, opts: &MetricsOptions) -> InstanceMetrics {
        let c = Container::load(self.root(), &rec.name).ok();
        let mut m = InstanceMetrics {
            app: rec.app.clone(),
            instance: rec.name.clone(),
            ip: rec.ip().map(|a| a.to_string()),
            numa_node: rec.numa.as_ref().and_then(|n| n.node),
            status: c
                .as_ref()
                .map(|c| c.status().as_str().to_string())
                .unwrap_or_else(|| "missing".into()),
            timestamp: rpaas_runtime::state::now_rfc3339(),
            cpu: None,
            memory: None,
            pids: None,
            io: Vec::new(),
            pressure: None,
            network: Vec::new(),
            processes: None,
            fs: None,
            errors: Vec::new(),
        };
        if let Some(cg) = c.as_ref().and_then(|c| c.cgroup()).filter(|cg| cg.exists()) {
            match cgroup::read(&cg) {
                Ok(r) => {
                    m.cpu = r.cpu;
                    m.memory = r.memory;
                    m.pids = r.pids;
                    m.io = r.io;
                    m.pressure = r.pressure;
                }
                Err(e) => m.errors.push(format!("cgroup: {e}")),
            }
            match procs::read(&cg) {
                Ok(p) => m.processes = Some(p),
                Err(e) => m.errors.push(format!("processes: {e}")),
            }
        }
        let running = c.as_ref().is_some_and(|c| {
            matches!(
                c.status(),
                Status::Running | Status::Paused | Status::Created
            )
        });
        if let Some(init) = c.as_ref().and_then(|c| c.live_init()).filter(|_| running) {
            match net::read(init.pid) {
                Ok(n) => m.network = n,
                Err(e) => m.errors.push(format!("network: {e}")),
            }
        }
        match disk::read(self.images(), &rec.snapshot, opts.fs_max_age) {
            Ok(f) => m.fs = f,
            Err(e) => m.errors.push(format!("writable layer: {e}")),
        }
        m
    }
}
