//! Start latency of rpaas-run against crun and runc (issues 2 and 3).
//!
//! On one busybox-static bundle built here, interleaved in the order of
//! [`balanced_order`] after a warm-up, medians of wall time and CPU time
//! (user+sys of every process a step started, from the children rusage of
//! this process, which is the subreaper of all of them), and the ratios:
//!  (a) `run` of /bin/true;
//!  (b) `create` + `start` + wait for the init to exit + `delete`;
//!  (c) 20 × `run -d sleep 1000` then 20 × `delete -f` (one batch).
//! Then the extra start latency of keeper mode (`run -d --keeper`) over a
//! plain `run -d` for rpaas-run alone.
//!
//! Rows: `rpaas-run` as built, `crun`, `runc`. State roots and the bundle
//! live on a private tmpfs (as /run is on a normal host).
//!
//! Run as root: `make bench` (or `make build && cargo run --release -p rpaas-benches`).
//! Env: RPAAS_RUN (the binary; default target/dist/rpaas-run of `make build`),
//! RPAAS_BENCH_ITERS (default 21), RPAAS_BENCH_WARMUP (3), RPAAS_BENCH_BATCHES (5).

mod runtime_support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use runtime_support::*;

/// Containers per batch in case (c).
const BATCH: usize = 20;

/// Wall and CPU of one measured step.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// The order of the measured steps over `n` runtimes: a de Bruijn sequence of
/// order 2 (taken as a cycle, every ordered pair of runtimes is in it once), so
/// each runtime's step follows each runtime's step, its own included, equally
/// often. A step leaves kernel work to kworkers (network namespace teardown,
/// cgroup release, RCU callbacks) that runs during the next step and slows it,
/// and runc leaves the most: in a plain round (rpaas-run, crun, runc, …)
/// rpaas-run always came right after runc, and a rotated round keeps that
/// (it is the same cycle). A pause before each step instead measured cold
/// starts: every runtime's wall time doubled.
/// For 3 runtimes: 0 0 1 0 2 1 1 2 2.
fn balanced_order(n: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n * n);
    for a in 0..n {
        order.push(a);
        for b in a + 1..n {
            order.extend([a, b]);
        }
    }
    order
}

/// Time `step`, then reap what it left exiting so its CPU is counted.
fn measure(step: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Sample> {
    reap_all(Duration::ZERO);
    let cpu0 = children_cpu();
    let t = Instant::now();
    step()?;
    let wall = t.elapsed();
    let live = reap_all(Duration::from_secs(2));
    if live > 0 {
        bail!("{live} processes still running after the step");
    }
    Ok(Sample {
        wall,
        cpu: children_cpu().saturating_sub(cpu0),
    })
}

/// (a) `run` of /bin/true (the runtime waits for it and deletes it).
fn case_run(rt: &Runtime, bundle: &Path, id: &str) -> anyhow::Result<Sample> {
    let b = bundle.to_string_lossy();
    measure(|| rt.run(&["run", "--bundle", &b, id]))
}

/// (b) create + start + wait for exit + delete.
fn case_lifecycle(rt: &Runtime, bundle: &Path, id: &str) -> anyhow::Result<Sample> {
    let b = bundle.to_string_lossy();
    let pid_file = rt.root.path().join(format!("{id}.pid"));
    let p = pid_file.to_string_lossy();
    let s = measure(|| {
        rt.run(&["create", "--bundle", &b, "--pid-file", &p, id])?;
        rt.run(&["start", id])?;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("read {p}"))?
            .trim()
            .parse()
            .with_context(|| format!("pid in {p}"))?;
        // Init was reparented to us (the subreaper) when `create` exited.
        wait_pid(pid)?;
        rt.run(&["delete", id])
    })?;
    std::fs::remove_file(&pid_file).ok();
    Ok(s)
}

/// (c) 20 × `run -d sleep 1000`, then 20 × `delete -f`.
fn case_batch(rt: &Runtime, bundle: &Path, tag: &str) -> anyhow::Result<Sample> {
    let b = bundle.to_string_lossy();
    let ids: Vec<String> = (0..BATCH).map(|i| format!("{tag}-{i}")).collect();
    measure(|| {
        for id in &ids {
            rt.run(&["run", "--detach", "--bundle", &b, id])?;
        }
        for id in &ids {
            rt.run(&["delete", "--force", id])?;
        }
        Ok(())
    })
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The runtimes that work here: rpaas-run first, then the peers that run a
/// container; each missing peer with the reason.
fn runtimes(
    scratch: &Scratch,
    bundle_true: &Path,
) -> anyhow::Result<(Vec<Runtime>, Vec<String>, bool)> {
    let base = scratch.path();
    let rpaas = find_rpaas_run()?;
    let mut rts = vec![Runtime::new("rpaas-run", rpaas, base)?];
    let mut missing = Vec::new();
    let mut mounted_hugetlb = false;
    for name in ["crun", "runc"] {
        let Some(bin) = which(name) else {
            missing.push(format!("{name}: not installed"));
            continue;
        };
        if name == "crun" {
            match ensure_hugetlb_v1() {
                Ok(m) => mounted_hugetlb = m,
                Err(e) => {
                    missing.push(format!("crun: {e:#}"));
                    continue;
                }
            }
        }
        rts.push(Runtime::new(name, bin, base)?);
    }
    // A runtime that can't run the bundle is reported missing, not measured.
    let mut working = Vec::new();
    for rt in rts {
        match case_run(&rt, bundle_true, &format!("rpaas-bench-probe-{}", rt.name)) {
            Ok(_) => working.push(rt),
            Err(e) if rt.name == "rpaas-run" => {
                return Err(e.context("rpaas-run can't run the bundle"))
            }
            Err(e) => missing.push(format!("{}: fails on the bundle: {e:#}", rt.name)),
        }
    }
    Ok((working, missing, mounted_hugetlb))
}

struct Row {
    case: &'static str,
    runtime: String,
    wall: Duration,
    cpu: Duration,
}

fn print_table(rows: &[Row]) {
    let peer = |case: &str, name: &str| rows.iter().find(|r| r.case == case && r.runtime == name);
    let ratio = |a: Duration, b: Option<Duration>| match b {
        Some(b) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    };
    println!(
        "{:<28} {:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "case", "runtime", "wall ms", "cpu ms", "wall/crun", "cpu/crun", "wall/runc", "cpu/runc"
    );
    for r in rows {
        let crun = peer(r.case, "crun");
        let runc = peer(r.case, "runc");
        println!(
            "{:<28} {:<10} {:>10.2} {:>10.2} {:>9} {:>9} {:>9} {:>9}",
            r.case,
            r.runtime,
            ms(r.wall),
            ms(r.cpu),
            ratio(r.wall, crun.map(|c| c.wall)),
            ratio(r.cpu, crun.map(|c| c.cpu)),
            ratio(r.wall, runc.map(|c| c.wall)),
            ratio(r.cpu, runc.map(|c| c.cpu)),
        );
    }
}

/// Print whether `name` meets `limit` × crun's median for `case`.
fn verdict(rows: &[Row], name: &str, case: &str, what: &str, limit: f64) {
    let get = |name: &str| rows.iter().find(|r| r.case == case && r.runtime == name);
    let (Some(ours), Some(crun)) = (get(name), get("crun")) else {
        println!(
            "target {case}: {name} {what} <= {limit}x crun: cannot judge ({name} or crun missing)"
        );
        return;
    };
    let (a, b) = match what {
        "cpu" => (ours.cpu, crun.cpu),
        _ => (ours.wall, crun.wall),
    };
    let r = a.as_secs_f64() / b.as_secs_f64();
    let met = if r <= limit { "MET" } else { "NOT MET" };
    println!("target {case}: {name} {what} <= {limit}x crun: {r:.2}x -> {met}");
}

/// Issue 3: the extra start latency of `run -d --keeper` over `run -d`.
fn keeper_latency(
    rt: &Runtime,
    bundle_sleep: &Path,
    warm: usize,
    iters: usize,
) -> anyhow::Result<()> {
    let b = bundle_sleep.to_string_lossy();
    let (mut plain, mut keeper, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warm + iters {
        let mut pair = [Duration::ZERO; 2];
        for (k, extra) in [&[][..], &["--keeper"][..]].iter().enumerate() {
            let id = format!("rpaas-bench-keeper-{i}-{k}");
            let mut args = vec!["run", "--detach"];
            args.extend(extra.iter());
            args.extend(["--bundle", &b, &id]);
            let t = Instant::now();
            rt.run(&args)?;
            pair[k] = t.elapsed();
            rt.run(&["delete", "--force", &id])?;
            reap_all(Duration::from_secs(2));
        }
        if i >= warm {
            plain.push(pair[0]);
            keeper.push(pair[1]);
            diffs.push(pair[1].as_secs_f64() - pair[0].as_secs_f64());
        }
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let extra_ms = diffs[diffs.len() / 2] * 1000.0;
    println!();
    println!("keeper mode start latency (rpaas-run, {iters} pairs, interleaved):");
    println!("  run -d          median {:>8.2} ms", ms(median(&plain)));
    println!("  run -d --keeper median {:>8.2} ms", ms(median(&keeper)));
    let met = if extra_ms <= 1.0 { "MET" } else { "NOT MET" };
    println!("  extra (median of paired differences) {extra_ms:.2} ms; target <= 1 ms: {met}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the runtime bench needs root");
    }
    set_subreaper()?;
    let iters = env_usize("RPAAS_BENCH_ITERS", 21).max(1);
    let warm = env_usize("RPAAS_BENCH_WARMUP", 3);
    let batches = env_usize("RPAAS_BENCH_BATCHES", 5).max(1);

    let scratch = Scratch::new()?;
    let bundles = Bundles::new(scratch.path())?;
    let b_true = bundles.bundle("true", &["/bin/true"])?;
    let b_sleep = bundles.bundle("sleep", &["/bin/sleep", "1000"])?;

    let (rts, missing, mounted_hugetlb) = runtimes(&scratch, &b_true)?;
    println!(
        "runtimes: {}",
        rts.iter()
            .map(|r| format!("{} ({})", r.name, r.bin.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for m in &missing {
        println!("missing peer: {m}");
    }
    println!(
        "{iters} iterations after {warm} warm-up, {batches} batches of {BATCH}; interleaved\n"
    );

    let mut rows = Vec::new();
    let cases: [(&'static str, usize); 3] = [
        ("run /bin/true", iters),
        ("create+start+wait+delete", iters),
        ("20x run -d + 20x delete -f", batches),
    ];
    for (c, (case, n)) in cases.iter().enumerate() {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); rts.len()];
        let warm_n = if c == 2 { 1 } else { warm };
        let order = balanced_order(rts.len());
        let mut seen = vec![0usize; rts.len()];
        // Each runtime comes rts.len() times in one pass over the order.
        for _ in 0..(warm_n + n).div_ceil(rts.len()) {
            for &k in &order {
                let rt = &rts[k];
                let i = seen[k];
                seen[k] += 1;
                let id = format!("rpaas-bench-{}-{c}-{i}", rt.name);
                let s = match c {
                    0 => case_run(rt, &b_true, &id),
                    1 => case_lifecycle(rt, &b_true, &id),
                    _ => case_batch(rt, &b_sleep, &id),
                }
                .with_context(|| format!("{case} with {}", rt.name))?;
                if i >= warm_n {
                    samples[k].push(s);
                }
            }
        }
        for (k, rt) in rts.iter().enumerate() {
            let walls: Vec<Duration> = samples[k].iter().map(|s| s.wall).collect();
            let cpus: Vec<Duration> = samples[k].iter().map(|s| s.cpu).collect();
            rows.push(Row {
                case,
                runtime: rt.name.clone(),
                wall: median(&walls),
                cpu: median(&cpus),
            });
        }
    }
    print_table(&rows);
    println!();
    verdict(&rows, "rpaas-run", "run /bin/true", "cpu", 0.8);
    verdict(&rows, "rpaas-run", "run /bin/true", "wall", 0.9);
    verdict(
        &rows,
        "rpaas-run",
        "20x run -d + 20x delete -f",
        "wall",
        1.0,
    );
    verdict(&rows, "rpaas-run", "20x run -d + 20x delete -f", "cpu", 1.0);

    // A small difference of two noisy medians: more pairs than the other cases.
    keeper_latency(&rts[0], &b_sleep, warm, (iters * 3).max(41))?;

    for rt in &rts {
        let left = rt.leftovers();
        if !left.is_empty() {
            println!("warning: {} left state for {left:?} (deleted now)", rt.name);
        }
    }
    drop(rts);
    drop(bundles);
    drop(scratch);
    if mounted_hugetlb {
        // Put the host back as we found it (hugetlb on the cgroup2 side).
        let _ = std::process::Command::new("umount")
            .arg("/sys/fs/cgroup/hugetlb")
            .status();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::balanced_order;

    #[test]
    fn every_runtime_follows_every_runtime_once_per_cycle() {
        for n in 1..=4 {
            let order = balanced_order(n);
            assert_eq!(order.len(), n * n);
            let mut pairs: Vec<(usize, usize)> = (0..order.len())
                .map(|i| (order[i], order[(i + 1) % order.len()]))
                .collect();
            pairs.sort();
            pairs.dedup();
            assert_eq!(pairs.len(), n * n, "n={n}: {order:?}");
        }
    }
}
