//! Resource usage of a cgroup, shaped like the "data" object of runc's `events --stats`
//! (runc's libcontainer/cgroups stats types, same JSON names), so tools written for runc read
//! it unchanged. Sections whose controller is absent are left out (None), never faked as 0.
//! Units as runc reports them: CPU times in nanoseconds, memory in bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

use super::{files, Layout};
use crate::{Error, Result};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<BlkioStats>,
    /// Keyed by page size ("2MB").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hugetlb: Option<BTreeMap<String, HugetlbStats>>,
    /// Pressure stall information of the cgroup (v2 files, read from the unified hierarchy's
    /// dir on hybrid hosts too); None where the kernel keeps none (no PSI, or no v2 dir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// `cpu.pressure`, `memory.pressure`, `io.pressure` (runc's `psi` objects, same JSON names).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PsiStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Psi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Psi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<Psi>,
}

/// "some": at least one task stalled; "full": all non-idle tasks stalled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Psi {
    pub some: PsiData,
    pub full: PsiData,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PsiData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttling {
    pub periods: u64,
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryEntry {
    /// Bytes; u64::MAX-ish values mean unlimited (as the kernel reports them).
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryStats {
    pub cache: u64,
    pub usage: MemoryEntry,
    /// memory+swap, as runc reports it on v1 and v2 alike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<MemoryEntry>,
    /// memory.stat, every counter.
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// 0 = unlimited ("max"), as runc reports it.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioStats {
    #[serde(rename = "ioServiceBytesRecursive")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

const FIELD: &str = "cgroup stats";

pub(super) fn collect(layout: &Layout, rel: &str) -> Result<Stats> {
    match layout {
        Layout::V1 {
            unified,
            unified_controllers,
            ..
        } => {
            let d = |c: &str| layout.v1_mount(c).map(|m| m.join(rel));
            let any = layout.roots().iter().any(|r| r.join(rel).is_dir());
            if !any {
                return Err(Error::cgroup(format!("/{rel}"), "does not exist"));
            }
            let hugetlb = match (d("hugetlb"), unified) {
                (Some(h), _) => hugetlb(&h, false)?,
                (None, Some(u)) if unified_controllers.iter().any(|c| c == "hugetlb") => {
                    hugetlb(&u.join(rel), true)?
                }
                _ => None,
            };
            Ok(Stats {
                cpu: cpu_v1(d("cpuacct").as_deref(), d("cpu").as_deref())?,
                memory: match d("memory") {
                    Some(m) => memory_v1(&m)?,
                    None => None,
                },
                pids: match d("pids") {
                    Some(p) => pids(&p)?,
                    None => None,
                },
                blkio: match d("blkio") {
                    Some(b) => blkio_v1(&b)?,
                    None => None,
                },
                hugetlb,
                psi: match unified {
                    Some(u) => psi(&u.join(rel))?,
                    None => None,
                },
            })
        }
        Layout::V2 { root, .. } => {
            let dir = root.join(rel);
            if !dir.is_dir() {
                return Err(Error::cgroup(format!("/{rel}"), "does not exist"));
            }
            Ok(Stats {
                cpu: cpu_v2(&dir)?,
                memory: memory_v2(&dir)?,
                pids: pids(&dir)?,
                blkio: io_v2(&dir)?,
                hugetlb: hugetlb(&dir, true)?,
                psi: psi(&dir)?,
            })
        }
    }
}

pub(super) fn oom_kill_count(layout: &Layout, rel: &str) -> Result<u64> {
    let (dir, file) = match layout {
        Layout::V1 { .. } => (
            layout
                .v1_mount("memory")
                .map(|m| m.join(rel))
                .ok_or_else(|| {
                    Error::cgroup(format!("/{rel}"), "the memory controller is not mounted")
                })?,
            "memory.oom_control",
        ),
        Layout::V2 { root, .. } => (root.join(rel), "memory.events"),
    };
    let text = files::read(&dir, file, "cgroup oom_kill count")?;
    let count = files::flat_keyed(&text)
        .find(|(k, _)| *k == "oom_kill")
        .map(|(_, v)| v);
    count.ok_or_else(|| {
        files::invalid(
            &dir.join(file),
            "cgroup oom_kill count",
            "no oom_kill line (kernel older than 4.13?)",
        )
    })
}

fn num(dir: &Path, file: &str) -> Result<u64> {
    Ok(files::read_u64_opt(dir, file, FIELD)?.unwrap_or(0))
}

fn keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    let text = files::read_opt(dir, file, FIELD)?.unwrap_or_default();
    Ok(files::flat_keyed(&text)
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

/// USER_HZ ticks (cpuacct.stat) to nanoseconds.
fn ticks_to_ns(t: u64) -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    let hz = *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if v > 0 {
            v as u64
        } else {
            100
        }
    });
    t.saturating_mul(1_000_000_000 / hz)
}

fn cpu_v1(acct: Option<&Path>, cpu: Option<&Path>) -> Result<Option<CpuStats>> {
    if acct.is_none() && cpu.is_none() {
        return Ok(None);
    }
    let mut s = CpuStats::default();
    if let Some(a) = acct {
        s.usage.total = num(a, "cpuacct.usage")?;
        s.usage.percpu = files::read_opt(a, "cpuacct.usage_percpu", FIELD)?
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let st = keyed(a, "cpuacct.stat")?;
        s.usage.user = ticks_to_ns(st.get("user").copied().unwrap_or(0));
        s.usage.kernel = ticks_to_ns(st.get("system").copied().unwrap_or(0));
    }
    if let Some(c) = cpu {
        let st = keyed(c, "cpu.stat")?;
        s.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    }
    Ok(Some(s))
}

fn cpu_v2(dir: &Path) -> Result<Option<CpuStats>> {
    // cpu.stat exists on every v2 cgroup (usage always; throttling with the cpu controller).
    let st = keyed(dir, "cpu.stat")?;
    if st.is_empty() {
        return Ok(None);
    }
    let us = |k: &str| st.get(k).copied().unwrap_or(0).saturating_mul(1000);
    Ok(Some(CpuStats {
        usage: CpuUsage {
            total: us("usage_usec"),
            percpu: Vec::new(),
            kernel: us("system_usec"),
            user: us("user_usec"),
        },
        throttling: Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
    }))
}

fn memory_v1(d: &Path) -> Result<Option<MemoryStats>> {
    let raw = keyed(d, "memory.stat")?;
    let entry = |prefix: &str| -> Result<MemoryEntry> {
        Ok(MemoryEntry {
            limit: num(d, &format!("{prefix}.limit_in_bytes"))?,
            usage: num(d, &format!("{prefix}.usage_in_bytes"))?,
            max: num(d, &format!("{prefix}.max_usage_in_bytes"))?,
            failcnt: num(d, &format!("{prefix}.failcnt"))?,
        })
    };
    let swap = if d.join("memory.memsw.usage_in_bytes").exists() {
        Some(entry("memory.memsw")?)
    } else {
        None
    };
    Ok(Some(MemoryStats {
        cache: raw
            .get("total_cache")
            .or_else(|| raw.get("cache"))
            .copied()
            .unwrap_or(0),
        usage: entry("memory")?,
        swap,
        raw,
    }))
}

fn memory_v2(d: &Path) -> Result<Option<MemoryStats>> {
    let Some(current) = files::read_u64_opt(d, "memory.current", FIELD)? else {
        return Ok(None);
    };
    let raw = keyed(d, "memory.stat")?;
    let events = keyed(d, "memory.events")?;
    let limit = num(d, "memory.max")?;
    let usage = MemoryEntry {
        limit,
        usage: current,
        max: num(d, "memory.peak")?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    let swap = match files::read_u64_opt(d, "memory.swap.current", FIELD)? {
        Some(sw) => {
            let smax = num(d, "memory.swap.max")?;
            Some(MemoryEntry {
                limit: limit.saturating_add(smax),
                usage: current.saturating_add(sw),
                max: 0,
                failcnt: keyed(d, "memory.swap.events")?
                    .get("fail")
                    .copied()
                    .unwrap_or(0),
            })
        }
        None => None,
    };
    Ok(Some(MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        raw,
    }))
}

fn pids(d: &Path) -> Result<Option<PidsStats>> {
    let Some(current) = files::read_u64_opt(d, "pids.current", FIELD)? else {
        return Ok(None);
    };
    let limit = match files::read_u64_opt(d, "pids.max", FIELD)? {
        Some(u64::MAX) | None => 0,
        Some(n) => n,
    };
    Ok(Some(PidsStats { current, limit }))
}

/// v1 "8:0 Read 4096" lines ("Total" lines have no device and are skipped).
fn blkio_lines(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            let op = it.next()?.to_string();
            let value = it.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op,
                value,
            })
        })
        .collect()
}

fn blkio_v1(d: &Path) -> Result<Option<BlkioStats>> {
    // BFQ accounts every IO; the throttle files only what passed the throttle layer, which is
    // all IO as well, and they exist on every kernel: prefer BFQ when present (runc's order).
    let (bytes, ios) = if d.join("blkio.bfq.io_service_bytes_recursive").exists() {
        (
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.bfq.io_serviced_recursive",
        )
    } else {
        (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        )
    };
    Ok(Some(BlkioStats {
        io_service_bytes_recursive: blkio_lines(
            &files::read_opt(d, bytes, FIELD)?.unwrap_or_default(),
        ),
        io_serviced_recursive: blkio_lines(&files::read_opt(d, ios, FIELD)?.unwrap_or_default()),
    }))
}

fn io_v2(d: &Path) -> Result<Option<BlkioStats>> {
    let Some(text) = files::read_opt(d, "io.stat", FIELD)? else {
        return Ok(None);
    };
    let mut s = BlkioStats::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut s.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.io_serviced_recursive, "Read"),
                "wios" => (&mut s.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    Ok(Some(s))
}

/// The three pressure files of a v2 cgroup dir; None when none is there (no dir, or a kernel
/// without PSI: the files are missing, or refuse reads with EOPNOTSUPP when booted psi=0).
fn psi(d: &Path) -> Result<Option<PsiStats>> {
    let one = |file: &str| -> Result<Option<Psi>> {
        let path = d.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        Ok(Some(parse_psi(&text)))
    };
    let s = PsiStats {
        cpu: one("cpu.pressure")?,
        memory: one("memory.pressure")?,
        io: one("io.pressure")?,
    };
    Ok(if s.cpu.is_none() && s.memory.is_none() && s.io.is_none() {
        None
    } else {
        Some(s)
    })
}

/// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and a "full" line (cpu's "full" is all
/// zeros on kernels before 5.13, which had no such line: left at zero).
fn parse_psi(text: &str) -> Psi {
    let mut p = Psi::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let data = match it.next() {
            Some("some") => &mut p.some,
            Some("full") => &mut p.full,
            _ => continue,
        };
        for kv in it {
            match kv.split_once('=') {
                Some(("avg10", v)) => data.avg10 = v.parse().unwrap_or(0.0),
                Some(("avg60", v)) => data.avg60 = v.parse().unwrap_or(0.0),
                Some(("avg300", v)) => data.avg300 = v.parse().unwrap_or(0.0),
                Some(("total", v)) => data.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    p
}

/// Huge page sizes of this kernel as cgroup file names use them ("2MB"), read once.
fn page_sizes() -> &'static [String] {
    static SIZES: OnceLock<Vec<String>> = OnceLock::new();
    SIZES.get_or_init(|| {
        let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let kb: u64 = name
                    .strip_prefix("hugepages-")?
                    .strip_suffix("kB")?
                    .parse()
                    .ok()?;
                Some(if kb >= 1 << 20 {
                    format!("{}GB", kb >> 20)
                } else if kb >= 1 << 10 {
                    format!("{}MB", kb >> 10)
                } else {
                    format!("{kb}KB")
                })
            })
            .collect();
        v.sort();
        v
    })
}

fn hugetlb(d: &Path, v2: bool) -> Result<Option<BTreeMap<String, HugetlbStats>>> {
    let mut out = BTreeMap::new();
    for size in page_sizes() {
        let st = if v2 {
            let Some(usage) = files::read_u64_opt(d, &format!("hugetlb.{size}.current"), FIELD)?
            else {
                continue;
            };
            HugetlbStats {
                usage,
                // v2 keeps no peak for hugetlb; runc's "max" is the peak usage, so 0 = unknown.
                max: 0,
                failcnt: keyed(d, &format!("hugetlb.{size}.events"))?
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            }
        } else {
            let Some(usage) =
                files::read_u64_opt(d, &format!("hugetlb.{size}.usage_in_bytes"), FIELD)?
            else {
                continue;
            };
            HugetlbStats {
                usage,
                max: num(d, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: num(d, &format!("hugetlb.{size}.failcnt"))?,
            }
        };
        out.insert(size.clone(), st);
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_v1_lines() {
        let e = blkio_lines("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].major, e[0].minor, e[0].op.as_str(), e[0].value),
            (8, 0, "Read", 4096)
        );
    }

    #[test]
    fn psi_lines() {
        let p = parse_psi(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        );
        assert_eq!((p.some.avg10, p.some.total, p.full.total), (1.5, 12345, 7));
    }
}
