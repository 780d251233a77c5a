//! Bench (not a test): the cgroup part of container start, rpaas vs cgroups-rs 0.5 (the peer),
//! interleaved in one run, after a warm-up. One round = make the cgroup, apply a typical
//! PaaS resource set (memory limit, pids limit, cpu shares + quota), remove it.
//! Prints medians of wall and CPU time (user+sys of this thread) and the ratios.
//!
//!     cargo run --release -p rpaas-runtime --example cgroup_bench [rounds]
//!
//! Needs root. Cgroups live under /rpaas-bench-<pid> and are removed at the end (also on panic).

use std::time::{Duration, Instant};

use cgroups_rs::fs::{cgroup_builder::CgroupBuilder, hierarchies, MaxValue};
use oci_spec::runtime::LinuxResources;
use rpaas_runtime::cgroups::Cgroup;

const RESOURCES: &str = r#"{"memory":{"limit":67108864},"pids":{"limit":100},"cpu":{"shares":512,"quota":50000,"period":100000}}"#;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(f: impl FnOnce()) -> (Duration, Duration) {
    let (w0, c0) = (Instant::now(), thread_cpu());
    f();
    (w0.elapsed(), thread_cpu() - c0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Removes the bench's parent cgroup (and anything left under it) on exit.
struct Parent(Cgroup);
impl Drop for Parent {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup {}: {}", self.0.path(), e.chain());
        }
    }
}

/// Wall time of each of our phases: create, apply, destroy.
type Phases = [Duration; 3];

fn ours(prefix: &str, i: usize, res: &LinuxResources) -> Phases {
    let cg = Cgroup::new("b", Some(&format!("{prefix}/ours-{i}"))).expect("new");
    let t0 = Instant::now();
    cg.create().expect("create");
    let t1 = Instant::now();
    cg.apply(res).expect("apply");
    let t2 = Instant::now();
    cg.destroy().expect("destroy");
    [t1 - t0, t2 - t1, t2.elapsed()]
}

fn peer(prefix: &str, i: usize) {
    let cg = CgroupBuilder::new(&format!("{}/peer-{i}", prefix.trim_start_matches('/')))
        .memory()
        .memory_hard_limit(64 << 20)
        .done()
        .pid()
        .maximum_number_of_processes(MaxValue::Value(100))
        .done()
        .cpu()
        .shares(512)
        .quota(50_000)
        .period(100_000)
        .done()
        .build(hierarchies::auto())
        .expect("cgroups-rs build");
    cg.delete().expect("cgroups-rs delete");
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let prefix = format!("/rpaas-bench-{}", std::process::id());
    let _parent = Parent(Cgroup::new("bench", Some(&prefix)).expect("parent"));
    let res: LinuxResources = serde_json::from_str(RESOURCES).expect("resources");
    // Warm-up: layout detection, dentry caches, the shared parent dirs.
    for i in 0..20 {
        ours(&prefix, i, &res);
        peer(&prefix, i);
    }
    let (mut ow, mut oc, mut pw, mut pc) = (vec![], vec![], vec![], vec![]);
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        // Alternate who goes first so neither always runs on a warmer cache.
        let mut run_ours = || {
            let mut ph = Phases::default();
            let (w, c) = measure(|| ph = ours(&prefix, i, &res));
            for (all, one) in phases.iter_mut().zip(ph) {
                all.push(one);
            }
            ow.push(w);
            oc.push(c);
        };
        if i % 2 == 0 {
            run_ours();
            let (w, c) = measure(|| peer(&prefix, i));
            pw.push(w);
            pc.push(c);
        } else {
            let (w, c) = measure(|| peer(&prefix, i));
            pw.push(w);
            pc.push(c);
            run_ours();
        }
    }
    let (ow, oc, pw, pc) = (
        median(&mut ow),
        median(&mut oc),
        median(&mut pw),
        median(&mut pc),
    );
    println!("cgroup create+apply+destroy, {rounds} rounds, medians");
    println!("{:<14} {:>12} {:>12}", "", "wall", "cpu");
    println!("{:<14} {:>12?} {:>12?}", "rpaas", ow, oc);
    println!("{:<14} {:>12?} {:>12?}", "cgroups-rs 0.5", pw, pc);
    println!(
        "{:<14} {:>12.2} {:>12.2}",
        "ratio",
        ow.as_secs_f64() / pw.as_secs_f64(),
        oc.as_secs_f64() / pc.as_secs_f64()
    );
    let [c, a, d] = &mut phases;
    println!(
        "rpaas phases (wall medians): create {:?}, apply {:?}, destroy {:?}; {} hierarchies",
        median(c),
        median(a),
        median(d),
        rpaas_runtime::cgroups::layout().map_or(0, |l| l.roots().len())
    );
}
