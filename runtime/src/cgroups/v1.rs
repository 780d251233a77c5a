//! cgroup v1 (and the unified part of the hybrid layout): create, apply, freeze.
//!
//! One directory per mounted hierarchy; each resource goes to its controller's hierarchy. A
//! resource whose controller is not mounted is an error naming the field (silently dropping a
//! limit is worse), except hugetlb on hybrid hosts, which falls back to the cgroup2 mount
//! when the kernel offers it there (this host: hugetlb is not a v1 hierarchy, which is why
//! crun 1.8 refuses to start here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use super::{devices, files, tree, v2, Layout};
use crate::{Error, Result};

const F: &str = "linux.resources";

pub(super) fn create(layout: &Layout, rel: &str) -> Result<()> {
    for root in layout.roots() {
        let dir = root.join(rel);
        tree::mkdir_p(&dir)?;
        if Some(root) == layout.v1_mount("cpuset") {
            ensure_cpuset(&dir, root)?;
        }
    }
    Ok(())
}

/// A new v1 cpuset dir starts with empty cpus/mems and refuses tasks (ENOSPC) until they are
/// set. Copy them down from the nearest populated ancestor. Reading the leaf first keeps the
/// common case (parent has `cgroup.clone_children`=1, set below, so the kernel already copied
/// them at mkdir) at two reads.
fn ensure_cpuset(dir: &Path, root: &Path) -> Result<()> {
    const FIELD: &str = "cgroup create (cpuset)";
    let cpus = files::read(dir, "cpuset.cpus", FIELD)?;
    let mems = files::read(dir, "cpuset.mems", FIELD)?;
    if !cpus.trim().is_empty() && !mems.trim().is_empty() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if p.starts_with(root) && p != dir => p,
        _ => return Ok(()),
    };
    ensure_cpuset(parent, root)?;
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = files::read(parent, file, FIELD)?;
        files::write(dir, file, value.trim(), FIELD)?;
    }
    // Children made under this dir later inherit cpus/mems from the kernel at mkdir time.
    files::write(dir, "cgroup.clone_children", "1", FIELD)?;
    Ok(())
}

/// The directory of `rel` in the hierarchy of `controller`, or an error naming `field`.
fn dir(layout: &Layout, rel: &str, controller: &str, field: &str) -> Result<PathBuf> {
    layout
        .v1_mount(controller)
        .map(|m| m.join(rel))
        .ok_or_else(|| {
            Error::spec(
                field,
                format!(
                    "the {controller} cgroup controller is not mounted on this host (cgroup v1)"
                ),
            )
        })
}

pub(super) fn apply(layout: &Layout, rel: &str, res: &LinuxResources) -> Result<()> {
    if let Some(m) = res.memory() {
        memory(layout, rel, m)?;
    }
    if let Some(c) = res.cpu() {
        cpu(layout, rel, c)?;
    }
    if let Some(p) = res.pids() {
        let d = dir(layout, rel, "pids", &format!("{F}.pids"))?;
        files::write(
            &d,
            "pids.max",
            &pids_value(p.limit()),
            &format!("{F}.pids.limit"),
        )?;
    }
    if let Some(b) = res.block_io() {
        blkio(layout, rel, b)?;
    }
    if let Some(h) = res.hugepage_limits() {
        hugetlb(layout, rel, h)?;
    }
    if let Some(n) = res.network() {
        network(layout, rel, n)?;
    }
    if let Some(rules) = res.devices() {
        if !rules.is_empty() {
            let d = dir(layout, rel, "devices", &format!("{F}.devices"))?;
            // [devices.allow, devices.deny], each opened once for all rules.
            let mut open: [Option<std::fs::File>; 2] = [None, None];
            for (i, r) in rules.iter().enumerate() {
                let field = format!("{F}.devices[{i}]");
                let line = devices::v1_rule(r, &field)?;
                let (k, file) = if r.allow() {
                    (0, "devices.allow")
                } else {
                    (1, "devices.deny")
                };
                files::write_each(&d, file, &mut open[k], &line, &field)?;
            }
        }
    }
    if let Some(rdma) = res.rdma() {
        if !rdma.is_empty() {
            let d = dir(layout, rel, "rdma", &format!("{F}.rdma"))?;
            v2::rdma(&d, rdma)?;
        }
    }
    if let Some(u) = res.unified() {
        if !u.is_empty() {
            match layout {
                // runc also writes unified keys to the cgroup2 side of a hybrid host.
                Layout::V1 {
                    unified: Some(root),
                    ..
                } => v2::unified(&root.join(rel), u)?,
                _ => {
                    return Err(Error::spec(
                        format!("{F}.unified"),
                        "needs cgroup v2 (this host has cgroup v1 without a cgroup2 mount)",
                    ))
                }
            }
        }
    }
    Ok(())
}

pub(super) fn pids_value(limit: i64) -> String {
    // runtime-spec: 0 or -1 (any value <= 0) means unlimited.
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// A memory amount from the spec: `None` when unset (absent or 0, as runc reads it), -1 for
/// unlimited, else a positive byte count; below -1 is an error.
pub(super) fn amount(v: Option<i64>, field: &str) -> Result<Option<i64>> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if n >= -1 => Ok(Some(n)),
        Some(n) => Err(Error::spec(
            field,
            format!("{n} is neither -1 (unlimited) nor a byte count"),
        )),
    }
}

fn memory(layout: &Layout, rel: &str, m: &LinuxMemory) -> Result<()> {
    let fl = format!("{F}.memory.limit");
    let fs = format!("{F}.memory.swap");
    let limit = amount(m.limit(), &fl)?;
    let mut swap = amount(m.swap(), &fs)?;
    let reservation = amount(m.reservation(), &format!("{F}.memory.reservation"))?;
    let kernel_tcp = amount(m.kernel_tcp(), &format!("{F}.memory.kernelTCP"))?;
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::spec(
                format!("{F}.memory.swappiness"),
                format!("{s} is outside 0..=100"),
            ));
        }
    }
    if m.kernel().is_some_and(|k| k != 0) {
        // Kernel memory limits are deprecated (and gone from cgroup v2); runc ignores them too.
        tracing::warn!("{F}.memory.kernel is ignored (kernel memory limits are deprecated)");
    }
    let oom = m.disable_oom_killer() == Some(true);
    if limit.is_none()
        && swap.is_none()
        && reservation.is_none()
        && kernel_tcp.is_none()
        && m.swappiness().is_none()
        && !oom
    {
        return Ok(());
    }
    let d = dir(layout, rel, "memory", &format!("{F}.memory"))?;

    if let (Some(l), true) = (limit, m.check_before_update() == Some(true)) {
        let usage = files::read(&d, "memory.usage_in_bytes", &fl)?;
        let usage = files::parse_u64(&usage, &d.join("memory.usage_in_bytes"), &fl)?;
        if l > 0 && usage > l as u64 {
            return Err(Error::spec(
                &fl,
                format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    // runc: an unlimited memory with no swap given means unlimited swap as well.
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(Error::spec(
                &fs,
                format!("memory+swap {s} is below the memory limit {l}"),
            ));
        }
    }
    let memsw_exists = swap.is_some() && d.join("memory.memsw.limit_in_bytes").exists();
    if let (Some(s), false) = (swap, memsw_exists) {
        // Without swap accounting only "no swap beyond the limit" can be honoured.
        if s != -1 && Some(s) != limit {
            return Err(Error::spec(
                &fs,
                "swap accounting is off in this kernel (no memory.memsw.limit_in_bytes)",
            ));
        }
        swap = None;
    }
    let write_limit = |l: i64| files::write(&d, "memory.limit_in_bytes", &l.to_string(), &fl);
    let write_swap = |s: i64| files::write(&d, "memory.memsw.limit_in_bytes", &s.to_string(), &fs);
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps limit <= memsw at every instant: raise memsw first when it
            // grows (or goes unlimited), else lower the limit first.
            let cur = files::read(&d, "memory.memsw.limit_in_bytes", &fs)?;
            let cur = files::parse_u64(&cur, &d.join("memory.memsw.limit_in_bytes"), &fs)?;
            if s == -1 || s as u64 >= cur {
                write_swap(s)?;
                write_limit(l)?;
            } else {
                write_limit(l)?;
                write_swap(s)?;
            }
        }
        (Some(l), None) => write_limit(l)?,
        (None, Some(s)) => write_swap(s)?,
        (None, None) => {}
    }
    if let Some(r) = reservation {
        files::write(
            &d,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            &format!("{F}.memory.reservation"),
        )?;
    }
    if let Some(k) = kernel_tcp {
        files::write(
            &d,
            "memory.kmem.tcp.limit_in_bytes",
            &k.to_string(),
            &format!("{F}.memory.kernelTCP"),
        )?;
    }
    if let Some(s) = m.swappiness() {
        files::write(
            &d,
            "memory.swappiness",
            &s.to_string(),
            &format!("{F}.memory.swappiness"),
        )?;
    }
    if oom {
        files::write(
            &d,
            "memory.oom_control",
            "1",
            &format!("{F}.memory.disableOOMKiller"),
        )?;
    }
    Ok(())
}

fn cpu(layout: &Layout, rel: &str, c: &LinuxCpu) -> Result<()> {
    let shares = c.shares().filter(|&s| s != 0);
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    let rt_runtime = c.realtime_runtime().filter(|&r| r != 0);
    let rt_period = c.realtime_period().filter(|&p| p != 0);
    if shares.is_some()
        || quota.is_some()
        || period.is_some()
        || rt_runtime.is_some()
        || rt_period.is_some()
        || c.burst().is_some()
        || c.idle().is_some()
    {
        let d = dir(layout, rel, "cpu", &format!("{F}.cpu"))?;
        let w =
            |file: &str, v: String, f: &str| files::write(&d, file, &v, &format!("{F}.cpu.{f}"));
        if let Some(s) = shares {
            w("cpu.shares", s.to_string(), "shares")?;
        }
        match (period, quota) {
            (Some(p), Some(q)) => {
                // A shorter period can be refused while the old quota exceeds it: then set the
                // quota first.
                if let Err(e) = w("cpu.cfs_period_us", p.to_string(), "period") {
                    w("cpu.cfs_quota_us", q.to_string(), "quota")?;
                    w("cpu.cfs_period_us", p.to_string(), "period").map_err(|_| e)?;
                } else {
                    w("cpu.cfs_quota_us", q.to_string(), "quota")?;
                }
            }
            (Some(p), None) => w("cpu.cfs_period_us", p.to_string(), "period")?,
            (None, Some(q)) => w("cpu.cfs_quota_us", q.to_string(), "quota")?,
            (None, None) => {}
        }
        if let Some(b) = c.burst() {
            w("cpu.cfs_burst_us", b.to_string(), "burst")?;
        }
        // Period before runtime, as runc does: the runtime is checked against the period.
        if let Some(p) = rt_period {
            w("cpu.rt_period_us", p.to_string(), "realtimePeriod")?;
        }
        if let Some(r) = rt_runtime {
            w("cpu.rt_runtime_us", r.to_string(), "realtimeRuntime")?;
        }
        if let Some(i) = c.idle() {
            w("cpu.idle", i.to_string(), "idle")?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let d = dir(layout, rel, "cpuset", &format!("{F}.cpu.cpus"))?;
        if let Some(v) = cpus {
            files::write(&d, "cpuset.cpus", v, &format!("{F}.cpu.cpus"))?;
        }
        if let Some(v) = mems {
            files::write(&d, "cpuset.mems", v, &format!("{F}.cpu.mems"))?;
        }
    }
    Ok(())
}

fn blkio(layout: &Layout, rel: &str, b: &LinuxBlockIo) -> Result<()> {
    let weight = b.weight().filter(|&w| w != 0);
    let leaf = b.leaf_weight().filter(|&w| w != 0);
    let wd = b.weight_device().as_deref().unwrap_or_default();
    let throttles = [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    let any_throttle = throttles
        .iter()
        .any(|t| t.2.as_ref().is_some_and(|v| !v.is_empty()));
    if weight.is_none() && leaf.is_none() && wd.is_empty() && !any_throttle {
        return Ok(());
    }
    let d = dir(layout, rel, "blkio", &format!("{F}.blockIO"))?;
    // Prefer BFQ's knobs (the only weight files on kernels without CFQ, like this one).
    let bfq = d.join("blkio.bfq.weight").exists();
    let (wfile, wdfile) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    // Neither file exists when no proportional-weight scheduler is loaded (bfq is a module).
    let no_weight = |e: Error, field: String| {
        if files::is_not_found(&e) {
            Error::spec(
                field,
                "this kernel has no blkio weight knob (load the BFQ I/O scheduler: blkio.bfq.weight)",
            )
        } else {
            e
        }
    };
    if let Some(w) = weight {
        let field = format!("{F}.blockIO.weight");
        files::write(&d, wfile, &w.to_string(), &field).map_err(|e| no_weight(e, field))?;
    }
    if let Some(w) = leaf {
        files::write(
            &d,
            "blkio.leaf_weight",
            &w.to_string(),
            &format!("{F}.blockIO.leafWeight"),
        )?;
    }
    for (i, dev) in wd.iter().enumerate() {
        let field = format!("{F}.blockIO.weightDevice[{i}]");
        if let Some(w) = dev.weight() {
            let line = format!("{}:{} {w}", dev.major(), dev.minor());
            files::write(&d, wdfile, &line, &field).map_err(|e| no_weight(e, field.clone()))?;
        }
        if let Some(w) = dev.leaf_weight() {
            let line = format!("{}:{} {w}", dev.major(), dev.minor());
            files::write(&d, "blkio.leaf_weight_device", &line, &field)?;
        }
    }
    for (name, file, devs) in throttles {
        for (i, t) in devs.as_deref().unwrap_or_default().iter().enumerate() {
            let line = format!("{}:{} {}", t.major(), t.minor(), t.rate());
            files::write(&d, file, &line, &format!("{F}.blockIO.{name}[{i}]"))?;
        }
    }
    Ok(())
}

fn hugetlb(
    layout: &Layout,
    rel: &str,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    if let Some(m) = layout.v1_mount("hugetlb") {
        let d = m.join(rel);
        for (i, l) in limits.iter().enumerate() {
            let field = format!("{F}.hugepageLimits[{i}]");
            let size = v2::page_size(l.page_size(), &field)?;
            let file = format!("hugetlb.{size}.limit_in_bytes");
            files::write(&d, &file, &l.limit().to_string(), &format!("{field}.limit"))
                .map_err(|e| v2::unknown_page_size(e, &field, size))?;
        }
        return Ok(());
    }
    // Hybrid host without a v1 hugetlb hierarchy: the controller is on the cgroup2 mount.
    if let Layout::V1 {
        unified: Some(root),
        unified_controllers,
        ..
    } = layout
    {
        if unified_controllers.iter().any(|c| c == "hugetlb") {
            v2::enable_along(root, rel, &["hugetlb".to_string()])?;
            return v2::hugetlb(&root.join(rel), limits);
        }
    }
    Err(Error::spec(
        format!("{F}.hugepageLimits"),
        "the hugetlb controller is neither mounted as cgroup v1 nor available on cgroup2",
    ))
}

fn network(layout: &Layout, rel: &str, n: &LinuxNetwork) -> Result<()> {
    if let Some(id) = n.class_id() {
        let field = format!("{F}.network.classID");
        let d = dir(layout, rel, "net_cls", &field)?;
        files::write(&d, "net_cls.classid", &id.to_string(), &field)?;
    }
    let prios = n.priorities().as_deref().unwrap_or_default();
    if !prios.is_empty() {
        let d = dir(layout, rel, "net_prio", &format!("{F}.network.priorities"))?;
        for (i, p) in prios.iter().enumerate() {
            let line = format!("{} {}", p.name(), p.priority());
            files::write(
                &d,
                "net_prio.ifpriomap",
                &line,
                &format!("{F}.network.priorities[{i}]"),
            )?;
        }
    }
    Ok(())
}

/// Writes FROZEN/THAWED to `freezer.state` and waits until the kernel reports that state.
/// Freezing can stay in FREEZING while tasks are in uninterruptible sleep; re-writing FROZEN
/// makes the kernel retry. Bounded: on timeout the cgroup is thawed again and an error returned.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    const FIELD: &str = "cgroup freezer";
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let mut delay = Duration::from_micros(100);
    let mut waited = Duration::ZERO;
    loop {
        files::write(dir, "freezer.state", want, FIELD)?;
        let state = files::read(dir, "freezer.state", FIELD)?;
        if state.trim() == want {
            return Ok(());
        }
        if waited >= Duration::from_secs(5) {
            if frozen {
                // Leave no half-frozen container behind.
                files::write(dir, "freezer.state", "THAWED", FIELD)?;
            }
            return Err(Error::cgroup(
                dir.display().to_string(),
                format!("freezer.state still {:?} after {waited:?}", state.trim()),
            ));
        }
        std::thread::sleep(delay);
        waited += delay;
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(files::read(dir, "freezer.state", "cgroup freezer")?.trim() == "FROZEN")
}
