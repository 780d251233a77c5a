//! CPU, memory, pids, block I/O and pressure of an instance's cgroup, from
//! the runtime's cgroup reader (v1, hybrid and v2 alike), turned into the
//! quantities cAdvisor reports (working set, RSS, cache, swap).

use rpaas_runtime::cgroups::{Cgroup, Psi, Stats};
use serde::Serialize;

use crate::error::Result;

/// Cumulative CPU time, nanoseconds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuMetrics {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// Per CPU (v1 cpuacct only; v2 keeps no per-CPU counters).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_cpu_ns: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Bytes, as the kernel counts them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryMetrics {
    pub usage: u64,
    /// usage − inactive_file (what the kernel cannot easily take back; what
    /// kubelet evicts on).
    pub working_set: u64,
    /// Anonymous memory (v1 total_rss, v2 anon).
    pub rss: u64,
    /// Page cache (v1 total_cache, v2 file).
    pub cache: u64,
    /// Swap used (memsw − usage on v1; memory.swap.current on v2); None
    /// without swap accounting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<u64>,
    /// None = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Times the limit was hit (v1 memory.failcnt, v2 memory.events "max").
    pub failcnt: u64,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PidsMetrics {
    pub current: u64,
    /// None = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// One block device's I/O.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IoDevice {
    /// "major:minor".
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Cumulative stall time, nanoseconds ("waiting": some task stalled;
/// "stalled": every task stalled), as cAdvisor names them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PressureMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Stall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Stall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<Stall>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stall {
    pub waiting_ns: u64,
    pub stalled_ns: u64,
}

/// What [`read`] gives back.
#[derive(Debug, Default)]
pub struct CgroupMetrics {
    pub cpu: Option<CpuMetrics>,
    pub memory: Option<MemoryMetrics>,
    pub pids: Option<PidsMetrics>,
    pub io: Vec<IoDevice>,
    pub pressure: Option<PressureMetrics>,
}

/// Limits at or past this are "no limit" (v1 reports the page-rounded
/// i64::MAX, v2 "max" which the reader maps to u64::MAX).
const UNLIMITED: u64 = 1 << 62;

pub fn read(cg: &Cgroup) -> Result<CgroupMetrics> {
    let stats = cg.stats()?;
    // No memory controller, or a kernel without the oom_kill line: 0.
    let oom = cg.oom_kill_count().unwrap_or(0);
    Ok(from_stats(&stats, oom))
}

/// The runtime's stats, as cAdvisor's quantities.
pub fn from_stats(s: &Stats, oom_kills: u64) -> CgroupMetrics {
    let cpu = s.cpu.as_ref().map(|c| CpuMetrics {
        usage_ns: c.usage.total,
        user_ns: c.usage.user,
        system_ns: c.usage.kernel,
        per_cpu_ns: c.usage.percpu.clone(),
        periods: c.throttling.periods,
        throttled_periods: c.throttling.throttled_periods,
        throttled_ns: c.throttling.throttled_time,
    });
    let memory = s.memory.as_ref().map(|m| {
        let raw = |keys: &[&str]| keys.iter().find_map(|k| m.raw.get(*k).copied());
        // v1 "total_*" include the descendants; v2 files always do.
        let inactive_file = raw(&["total_inactive_file", "inactive_file"]).unwrap_or(0);
        MemoryMetrics {
            usage: m.usage.usage,
            working_set: m.usage.usage.saturating_sub(inactive_file),
            rss: raw(&["total_rss", "anon"]).unwrap_or(0),
            cache: m.cache,
            swap: m
                .swap
                .as_ref()
                .map(|sw| sw.usage.saturating_sub(m.usage.usage)),
            limit: Some(m.usage.limit).filter(|l| *l < UNLIMITED && *l > 0),
            failcnt: m.usage.failcnt,
            oom_kills,
        }
    });
    let pids = s.pids.as_ref().map(|p| PidsMetrics {
        current: p.current,
        limit: Some(p.limit).filter(|l| *l > 0),
    });
    let mut io: Vec<IoDevice> = Vec::new();
    if let Some(b) = &s.blkio {
        let mut add = |e: &rpaas_runtime::cgroups::BlkioEntry, bytes: bool| {
            let dev = format!("{}:{}", e.major, e.minor);
            let i = match io.iter().position(|d| d.device == dev) {
                Some(i) => i,
                None => {
                    io.push(IoDevice {
                        device: dev,
                        ..IoDevice::default()
                    });
                    io.len() - 1
                }
            };
            let d = &mut io[i];
            match (e.op.as_str(), bytes) {
                ("Read", true) => d.read_bytes += e.value,
                ("Write", true) => d.write_bytes += e.value,
                ("Read", false) => d.reads += e.value,
                ("Write", false) => d.writes += e.value,
                _ => {}
            }
        };
        for e in &b.io_service_bytes_recursive {
            add(e, true);
        }
        for e in &b.io_serviced_recursive {
            add(e, false);
        }
    }
    let stall = |p: &Option<Psi>| {
        p.as_ref().map(|p| Stall {
            waiting_ns: p.some.total.saturating_mul(1000),
            stalled_ns: p.full.total.saturating_mul(1000),
        })
    };
    let pressure = s.psi.as_ref().map(|p| PressureMetrics {
        cpu: stall(&p.cpu),
        memory: stall(&p.memory),
        io: stall(&p.io),
    });
    CgroupMetrics {
        cpu,
        memory,
        pids,
        io,
        pressure,
    }
}
