//! NUMA bench: placement decision time on a generated 8-node / 256-cpu host holding 500
//! containers (target < 50 µs per decision), and the cost of writing cpuset.cpus+mems into a
//! new cgroup on this host, against the bare mkdir + two writes it cannot go below.
//!
//! Run: `cargo run --release -p rpaas-benches --bin numa_place` (root for the cgroup part).
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rpaas_numa::{apply, ApplyOptions, CgroupRoots, IdSet, Placer, Policy, Request, Topology};

const NODES: u32 = 8;
const CPUS: u32 = 256;
const CONTAINERS: usize = 500;
const DECISIONS: usize = 5000;
const APPLIES: usize = 300;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sysfs = dir.path().join("sys");
    write_sysfs(&sysfs)?;
    let discover = median(&sample(50, || {
        black_box(Topology::discover(&sysfs).map(|_| ()))
    })?);
    let topo = Topology::discover(&sysfs)?;
    println!(
        "host: {} nodes, {} cpus, {} cores; discover from sysfs: median {:?}",
        topo.nodes.len(),
        topo.total_cpus(),
        topo.cores.len(),
        discover
    );

    let mut placer = Placer::new(topo);
    let mut rng = Lcg(0x5eed);
    let mut fallbacks = 0;
    for i in 0..CONTAINERS {
        let d = placer.place(&format!("c{i}"), &random_request(&mut rng))?;
        fallbacks += usize::from(d.note.is_some());
    }
    println!("filled: {CONTAINERS} containers placed ({fallbacks} fell back)");

    // Each decision places one more container and releases it, so the host stays at 500.
    let mut times = Vec::with_capacity(DECISIONS);
    for i in 0..DECISIONS {
        let req = random_request(&mut rng);
        let t = Instant::now();
        let d = placer.place("probe", &req);
        times.push(t.elapsed());
        black_box(d.with_context(|| format!("decision {i}"))?);
        placer.release("probe")?;
    }
    let med = median(&times);
    let p99 = percentile(&times, 99);
    println!(
        "decision ({DECISIONS} samples): median {med:?}, p99 {p99:?}; target 50µs: median is {:.3}x the target",
        med.as_secs_f64() / 50e-6
    );

    apply_cost()?;
    Ok(())
}

/// 8 nodes x 16 cores x 2 threads: node k has cpus 16k..16k+15 and their siblings +128.
fn write_sysfs(sysfs: &Path) -> anyhow::Result<()> {
    let per = CPUS / NODES / 2;
    let node_dir = sysfs.join("devices/system/node");
    for k in 0..NODES {
        let d = node_dir.join(format!("node{k}"));
        std::fs::create_dir_all(&d)?;
        let lo = k * per;
        let cpus = format!(
            "{}-{},{}-{}",
            lo,
            lo + per - 1,
            lo + CPUS / 2,
            lo + CPUS / 2 + per - 1
        );
        std::fs::write(d.join("cpulist"), cpus)?;
        let kb = 64u64 << 20;
        std::fs::write(
            d.join("meminfo"),
            format!(
                "Node {k} MemTotal: {kb} kB\nNode {k} MemFree: {} kB\n",
                kb / 2
            ),
        )?;
        let dist: Vec<String> = (0..NODES)
            .map(|j| if j == k { "10" } else { "21" }.to_string())
            .collect();
        std::fs::write(d.join("distance"), dist.join(" "))?;
    }
    let cpu_dir = sysfs.join("devices/system/cpu");
    std::fs::create_dir_all(&cpu_dir)?;
    std::fs::write(cpu_dir.join("online"), format!("0-{}", CPUS - 1))?;
    for c in 0..CPUS {
        let t = cpu_dir.join(format!("cpu{c}/topology"));
        std::fs::create_dir_all(&t)?;
        let a = c % (CPUS / 2);
        std::fs::write(
            t.join("thread_siblings_list"),
            format!("{a},{}", a + CPUS / 2),
        )?;
    }
    Ok(())
}

/// A deterministic generator, so every run measures the same sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One in eight exclusive (1 or 2 cpus), the rest 100-500 millicores shared; 128 MiB-1 GiB:
/// 500 of them fill about 225 of the 256 cpus.
fn random_request(rng: &mut Lcg) -> Request {
    let memory = (128 + rng.next(897)) << 20;
    if rng.next(8) == 0 {
        Request::new((1 + rng.next(2)) * 1000, memory, Policy::Preferred, true)
    } else {
        Request::new(100 + rng.next(401), memory, Policy::Preferred, false)
    }
}

fn sample<T>(n: usize, mut f: impl FnMut() -> T) -> anyhow::Result<Vec<Duration>> {
    Ok((0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect())
}

fn median(v: &[Duration]) -> Duration {
    percentile(v, 50)
}

fn percentile(v: &[Duration], p: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get((s.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or_default()
}

/// Removes the bench cgroup if an iteration failed half-way.
struct Gone(Vec<PathBuf>);

impl Drop for Gone {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Per new container: mkdir + cpuset.cpus + cpuset.mems (+ rmdir), via `apply` and bare.
fn apply_cost() -> anyhow::Result<()> {
    let roots = match CgroupRoots::detect(Path::new("/sys/fs/cgroup")) {
        Ok(r) => r,
        Err(e) => {
            println!("apply: skipped ({e})");
            return Ok(());
        }
    };
    let host_cpus = std::fs::read_to_string(
        roots
            .cpuset_dir(Path::new("/x"))
            .with_file_name("cpuset.cpus"),
    )
    .ok()
    .and_then(|t| IdSet::parse(&t).ok())
    .unwrap_or_else(|| std::iter::once(0).collect());
    let cpus: IdSet = host_cpus.iter().take(1).collect();
    let mems: IdSet = std::iter::once(0).collect();
    let cg = PathBuf::from(format!("/rpaas-numa-bench-{}", std::process::id()));
    let dir = roots.cpuset_dir(&cg);
    let _gone = Gone(vec![dir.clone()]);
    let opts = ApplyOptions {
        create: true,
        ..Default::default()
    };
    let mut ours = Vec::with_capacity(APPLIES);
    let mut bare = Vec::with_capacity(APPLIES);
    for _ in 0..APPLIES {
        // Alternate so both see the same machine state.
        let t = Instant::now();
        apply(&roots, &cg, &cpus, &mems, &opts)?;
        ours.push(t.elapsed());
        std::fs::remove_dir(&dir).with_context(|| format!("rmdir {}", dir.display()))?;

        let t = Instant::now();
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("cpuset.cpus"), cpus.to_string())?;
        std::fs::write(dir.join("cpuset.mems"), mems.to_string())?;
        bare.push(t.elapsed());
        std::fs::remove_dir(&dir)?;
    }
    let (o, b) = (median(&ours), median(&bare));
    println!(
        "apply at create ({}, {APPLIES} samples): rpaas-numa median {o:?}, bare mkdir+2 writes median {b:?}, ratio {:.2}x",
        if roots.is_v2() { "cgroup v2" } else { "cgroup v1" },
        o.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
