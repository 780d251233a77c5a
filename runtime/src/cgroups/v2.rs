//! cgroup v2: create (with controller delegation), apply, freeze. Also the hybrid host's
//! cgroup2 side (hugetlb, unified keys) reuses these helpers.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxRdma, LinuxResources};

use super::v1::{amount, pids_value};
use super::{devices, files, tree};
use crate::{Error, Result};

const F: &str = "linux.resources";

pub(super) fn create(root: &Path, controllers: &[String], rel: &str) -> Result<()> {
    enable_along(root, rel, controllers)?;
    tree::mkdir_p(&root.join(rel))?;
    Ok(())
}

/// Makes every ancestor of `rel` (from the root down to its parent) exist and delegate
/// `controllers` to its children through `cgroup.subtree_control`. One read per level; a
/// write only when something is missing (the usual case after the first container).
pub(super) fn enable_along(root: &Path, rel: &str, controllers: &[String]) -> Result<()> {
    if controllers.is_empty() {
        return Ok(());
    }
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tree::mkdir_p(&dir)?;
        }
        enable(&dir, controllers)?;
        dir.push(part);
    }
    Ok(())
}

fn enable(dir: &Path, controllers: &[String]) -> Result<()> {
    const FIELD: &str = "cgroup create (subtree_control)";
    let enabled = files::read(dir, "cgroup.subtree_control", FIELD)?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<&String> = controllers
        .iter()
        .filter(|c| !enabled.contains(&c.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if files::write(dir, "cgroup.subtree_control", &all.join(" "), FIELD).is_ok() {
        return Ok(());
    }
    // One controller can be refused (e.g. "cpu" while realtime tasks sit in a child): enable
    // the others one by one and say which failed; apply() reports it if the spec needs it.
    for c in missing {
        if let Err(e) = files::write(dir, "cgroup.subtree_control", &format!("+{c}"), FIELD) {
            tracing::warn!("cannot delegate the {c} controller: {}", e.chain());
        }
    }
    Ok(())
}

pub(super) fn apply(dir: &Path, controllers: &[String], res: &LinuxResources) -> Result<()> {
    let need = |c: &str, field: &str| -> Result<()> {
        if controllers.iter().any(|x| x == c) {
            Ok(())
        } else {
            Err(Error::spec(
                field,
                format!("the {c} controller is not available on this cgroup v2 host"),
            ))
        }
    };
    if let Some(m) = res.memory() {
        memory(dir, m, &need)?;
    }
    if let Some(c) = res.cpu() {
        cpu(dir, c, &need)?;
    }
    if let Some(p) = res.pids() {
        need("pids", &format!("{F}.pids"))?;
        files::write(
            dir,
            "pids.max",
            &pids_value(p.limit()),
            &format!("{F}.pids.limit"),
        )?;
    }
    if let Some(b) = res.block_io() {
        io(dir, b, &need)?;
    }
    if let Some(h) = res.hugepage_limits() {
        if !h.is_empty() {
            need("hugetlb", &format!("{F}.hugepageLimits"))?;
            hugetlb(dir, h)?;
        }
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() {
            return Err(Error::spec(
                format!("{F}.network.classID"),
                "net_cls is cgroup v1 only; not supported on cgroup v2",
            ));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::spec(
                format!("{F}.network.priorities"),
                "net_prio is cgroup v1 only; not supported on cgroup v2",
            ));
        }
    }
    if let Some(rules) = res.devices() {
        devices::check_v2(rules)?;
    }
    if let Some(r) = res.rdma() {
        if !r.is_empty() {
            need("rdma", &format!("{F}.rdma"))?;
            rdma(dir, r)?;
        }
    }
    // Last, so an explicit unified key wins over the value derived from a typed field.
    if let Some(u) = res.unified() {
        unified(dir, u)?;
    }
    Ok(())
}

fn max_or(v: i64) -> String {
    if v == -1 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

fn memory(dir: &Path, m: &LinuxMemory, need: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
    let fl = format!("{F}.memory.limit");
    let fs = format!("{F}.memory.swap");
    if m.swappiness().is_some() {
        // v2 has no per-cgroup swappiness. An error rather than a warning: the numa crate and
        // users set it on purpose, and a silently ignored knob misleads them. (cgroups-rs would
        // even write it to memory.swap.max.)
        return Err(Error::spec(
            format!("{F}.memory.swappiness"),
            "not supported on cgroup v2 (no memory.swappiness); limit swap with memory.swap instead",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(Error::spec(
            format!("{F}.memory.disableOOMKiller"),
            "not supported on cgroup v2 (the OOM killer cannot be disabled per cgroup)",
        ));
    }
    if m.kernel().is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0) {
        tracing::warn!("{F}.memory.kernel/kernelTCP are ignored on cgroup v2");
    }
    let limit = amount(m.limit(), &fl)?;
    let swap = amount(m.swap(), &fs)?;
    let reservation = amount(m.reservation(), &format!("{F}.memory.reservation"))?;
    if limit.is_none() && swap.is_none() && reservation.is_none() {
        return Ok(());
    }
    need("memory", &format!("{F}.memory"))?;
    if let (Some(l), true) = (limit, m.check_before_update() == Some(true)) {
        let cur = files::read(dir, "memory.current", &fl)?;
        let cur = files::parse_u64(&cur, &dir.join("memory.current"), &fl)?;
        if l > 0 && cur > l as u64 {
            return Err(Error::spec(
                &fl,
                format!("{l} is below the current usage {cur} (checkBeforeUpdate)"),
            ));
        }
    }
    if let Some(l) = limit {
        files::write(dir, "memory.max", &max_or(l), &fl)?;
    }
    // The spec's swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
    let swap_max = match (swap, limit) {
        (None, Some(-1)) => Some(-1),
        (None, _) => None,
        (Some(-1), _) => Some(-1),
        (Some(s), Some(l)) if l > 0 => {
            if s < l {
                return Err(Error::spec(
                    &fs,
                    format!("memory+swap {s} is below the memory limit {l}"),
                ));
            }
            Some(s - l)
        }
        (Some(s), _) => {
            // An update of swap alone, or unlimited memory: relate it to the current limit.
            let cur = files::read(dir, "memory.max", &fs)?;
            match cur.trim() {
                "max" => Some(s),
                c => {
                    let c = files::parse_u64(c, &dir.join("memory.max"), &fs)? as i64;
                    if s < c {
                        return Err(Error::spec(
                            &fs,
                            format!("memory+swap {s} is below the memory limit {c}"),
                        ));
                    }
                    Some(s - c)
                }
            }
        }
    };
    if let Some(sw) = swap_max {
        match files::write(dir, "memory.swap.max", &max_or(sw), &fs) {
            Ok(()) => {}
            // No swap support in the kernel: only "no swap" / "unlimited" are honourable.
            Err(e) if files::is_not_found(&e) && (sw == 0 || sw == -1) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(r) = reservation {
        files::write(
            dir,
            "memory.low",
            &max_or(r),
            &format!("{F}.memory.reservation"),
        )?;
    }
    Ok(())
}

/// cpu.shares (v1, 2..=262144, default 1024) to cpu.weight (v2, 1..=10000, default 100): the
/// linear map runc (libcontainer/cgroups ConvertCPUSharesToCgroupV2Value, up to runc 1.3) and
/// crun up to 1.22 use; crun 1.8, our peer here, uses it too. 1024 → 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio.weight (10..=1000) to io.weight (1..=10000), runc's linear map.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

fn cpu(dir: &Path, c: &LinuxCpu, need: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
    if c.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(Error::spec(
            format!("{F}.cpu.realtimeRuntime"),
            "realtime scheduling budgets are not supported on cgroup v2",
        ));
    }
    if c.realtime_period().is_some_and(|r| r != 0) {
        return Err(Error::spec(
            format!("{F}.cpu.realtimePeriod"),
            "realtime scheduling budgets are not supported on cgroup v2",
        ));
    }
    let shares = c.shares().filter(|&s| s != 0);
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    if shares.is_some()
        || quota.is_some()
        || period.is_some()
        || c.burst().is_some()
        || c.idle().is_some()
    {
        need("cpu", &format!("{F}.cpu"))?;
    }
    if let Some(s) = shares {
        let w = shares_to_weight(s);
        files::write(
            dir,
            "cpu.weight",
            &w.to_string(),
            &format!("{F}.cpu.shares"),
        )?;
    }
    if quota.is_some() || period.is_some() {
        let field = format!(
            "{F}.cpu.{}",
            if quota.is_some() { "quota" } else { "period" }
        );
        // cpu.max is "quota period" in one file: keep the half the spec does not give.
        let (q, p) = match (quota, period) {
            (Some(q), Some(p)) => (q, p),
            _ => {
                let cur = files::read(dir, "cpu.max", &field)?;
                let mut it = cur.split_whitespace();
                let cq = match it.next() {
                    Some("max") | None => -1,
                    Some(v) => v.parse::<i64>().unwrap_or(-1),
                };
                let cp = it
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(100_000);
                (quota.unwrap_or(cq), period.unwrap_or(cp))
            }
        };
        let q = if q > 0 {
            q.to_string()
        } else {
            "max".to_string()
        };
        files::write(dir, "cpu.max", &format!("{q} {p}"), &field)?;
    }
    if let Some(b) = c.burst() {
        files::write(
            dir,
            "cpu.max.burst",
            &b.to_string(),
            &format!("{F}.cpu.burst"),
        )?;
    }
    if let Some(i) = c.idle() {
        files::write(dir, "cpu.idle", &i.to_string(), &format!("{F}.cpu.idle"))?;
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if let Some(v) = cpus {
        need("cpuset", &format!("{F}.cpu.cpus"))?;
        files::write(dir, "cpuset.cpus", v, &format!("{F}.cpu.cpus"))?;
    }
    if let Some(v) = mems {
        need("cpuset", &format!("{F}.cpu.mems"))?;
        files::write(dir, "cpuset.mems", v, &format!("{F}.cpu.mems"))?;
    }
    Ok(())
}

fn io(dir: &Path, b: &LinuxBlockIo, need: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
    let weight = b.weight().filter(|&w| w != 0);
    let wd = b.weight_device().as_deref().unwrap_or_default();
    let throttles = [
        (
            "throttleReadBpsDevice",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ];
    let any_throttle = throttles
        .iter()
        .any(|t| t.2.as_ref().is_some_and(|v| !v.is_empty()));
    if b.leaf_weight().is_some_and(|w| w != 0) {
        tracing::warn!("{F}.blockIO.leafWeight is ignored on cgroup v2");
    }
    if weight.is_none() && wd.is_empty() && !any_throttle {
        return Ok(());
    }
    need("io", &format!("{F}.blockIO"))?;
    // BFQ takes the v1 scale (1..=1000) as is; io.weight needs the conversion.
    let bfq = dir.join("io.bfq.weight").exists();
    // io.weight comes from iocost, io.bfq.weight from BFQ (a module); either may be absent.
    let no_weight = |e: Error, field: String| {
        if files::is_not_found(&e) {
            Error::spec(
                field,
                "this kernel has no io weight knob (neither io.bfq.weight nor io.weight)",
            )
        } else {
            e
        }
    };
    if let Some(w) = weight {
        let field = format!("{F}.blockIO.weight");
        if bfq {
            files::write(dir, "io.bfq.weight", &w.to_string(), &field)?;
        } else {
            let v = format!("default {}", blkio_to_io_weight(w));
            files::write(dir, "io.weight", &v, &field).map_err(|e| no_weight(e, field))?;
        }
    }
    for (i, d) in wd.iter().enumerate() {
        let field = format!("{F}.blockIO.weightDevice[{i}]");
        if let Some(w) = d.weight() {
            let (file, v) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_to_io_weight(w))
            };
            let line = format!("{}:{} {v}", d.major(), d.minor());
            files::write(dir, file, &line, &field).map_err(|e| no_weight(e, field.clone()))?;
        }
    }
    for (name, key, devs) in throttles {
        for (i, t) in devs.as_deref().unwrap_or_default().iter().enumerate() {
            let line = format!("{}:{} {key}={}", t.major(), t.minor(), t.rate());
            files::write(dir, "io.max", &line, &format!("{F}.blockIO.{name}[{i}]"))?;
        }
    }
    Ok(())
}

/// Validates a hugepage size as the kernel names it in file names ("2MB", "1GB", "64KB").
pub(super) fn page_size<'a>(s: &'a str, field: &str) -> Result<&'a str> {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'B']);
    let ok = s.len() > 2
        && s.ends_with("B")
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && s[digits.len()..].len() == 2;
    if ok {
        Ok(s)
    } else {
        Err(Error::spec(
            format!("{field}.pageSize"),
            format!("{s:?} is not a page size like \"2MB\" or \"1GB\""),
        ))
    }
}

/// A missing hugetlb.<size>.* file means the kernel has no such page size.
pub(super) fn unknown_page_size(e: Error, field: &str, size: &str) -> Error {
    if files::is_not_found(&e) {
        Error::spec(
            format!("{field}.pageSize"),
            format!("the kernel has no {size} huge pages (/sys/kernel/mm/hugepages)"),
        )
    } else {
        e
    }
}

pub(super) fn hugetlb(dir: &Path, limits: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let field = format!("{F}.hugepageLimits[{i}]");
        let size = page_size(l.page_size(), &field)?;
        files::write(
            dir,
            &format!("hugetlb.{size}.max"),
            &max_or(l.limit()),
            &format!("{field}.limit"),
        )
        .map_err(|e| unknown_page_size(e, &field, size))?;
    }
    Ok(())
}

pub(super) fn rdma(dir: &Path, r: &HashMap<String, LinuxRdma>) -> Result<()> {
    let opt = |v: Option<u32>| v.map_or("max".to_string(), |n| n.to_string());
    for (dev, l) in r {
        let line = format!(
            "{dev} hca_handle={} hca_object={}",
            opt(l.hca_handles()),
            opt(l.hca_objects())
        );
        files::write(dir, "rdma.max", &line, &format!("{F}.rdma[{dev:?}]"))?;
    }
    Ok(())
}

/// `linux.resources.unified`: raw v2 key/values, written as given. Keys must name a file of
/// this cgroup (no '/', no "..") and not the membership/lifecycle files that would let a spec
/// move processes or kill the cgroup.
pub(super) fn unified(dir: &Path, u: &HashMap<String, String>) -> Result<()> {
    for (k, v) in u {
        let field = format!("{F}.unified[{k:?}]");
        if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(Error::spec(field, "is not a cgroup interface file name"));
        }
        if matches!(
            k.as_str(),
            "cgroup.procs" | "cgroup.threads" | "cgroup.kill" | "cgroup.subtree_control"
        ) {
            return Err(Error::spec(
                field,
                "may not be set through linux.resources.unified",
            ));
        }
        files::write(dir, k, v, &field).map_err(|e| {
            if files::is_not_found(&e) {
                Error::spec(
                    &field,
                    format!(
                        "{k} does not exist in {} (controller not enabled?)",
                        dir.display()
                    ),
                )
            } else {
                e
            }
        })?;
    }
    Ok(())
}

/// Writes `cgroup.freeze` and waits until `cgroup.events` says `frozen` matches. Bounded; on
/// timeout the freeze is undone.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    const FIELD: &str = "cgroup freeze";
    files::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" }, FIELD)?;
    let mut delay = Duration::from_micros(100);
    let mut waited = Duration::ZERO;
    while is_frozen(dir)? != frozen {
        if waited >= Duration::from_secs(10) {
            if frozen {
                files::write(dir, "cgroup.freeze", "0", FIELD)?;
            }
            return Err(Error::cgroup(
                dir.display().to_string(),
                format!(
                    "cgroup.events did not report frozen={} after {waited:?}",
                    u8::from(frozen)
                ),
            ));
        }
        std::thread::sleep(delay);
        waited += delay;
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool> {
    let ev = files::read(dir, "cgroup.events", "cgroup freeze")?;
    let frozen = files::flat_keyed(&ev).any(|(k, v)| k == "frozen" && v == 1);
    Ok(frozen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn blkio_conversion() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 1 + (490 * 9999) / 990);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size("2MB", "f").unwrap(), "2MB");
        assert_eq!(page_size("1GB", "f").unwrap(), "1GB");
        let e = page_size("2M", "linux.resources.hugepageLimits[0]").unwrap_err();
        assert!(e.to_string().contains("hugepageLimits[0].pageSize"), "{e}");
        assert!(page_size("../x", "f").is_err());
        assert!(page_size("MB", "f").is_err());
    }
}
