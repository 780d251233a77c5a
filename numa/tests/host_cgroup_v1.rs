//! Root tests on this host's real cgroup v1 hierarchies (one NUMA node). They need cpuset and
//! memory v1 mounted (this host's hybrid layout) and fail without them (a pure v2 host is
//! tested by vm_numa.rs in the VM suite).
use std::path::{Path, PathBuf};
use std::process::Command;

use rpaas_numa::{
    apply, locality, observe, rebuild, ApplyOptions, CgroupRoots, Error, IdSet, Placer, Policy,
    Request, Topology,
};

const CG: &str = "/sys/fs/cgroup";

fn v1_roots() -> CgroupRoots {
    match CgroupRoots::detect(Path::new(CG)) {
        Ok(r @ CgroupRoots::V1 { .. }) => r,
        other => panic!("needs cgroup v1 cpuset+memory (this host's layout), found {other:?}"),
    }
}

/// Removes the test's cgroups (deepest first) in every hierarchy, also when a test panics.
/// Tasks still inside are killed first.
struct Cleanup {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Cleanup {
    fn new(name: &str) -> (Cleanup, PathBuf) {
        let rel = PathBuf::from(format!("/rpaas-numa-test-{}-{name}", std::process::id()));
        let mut dirs = Vec::new();
        for h in ["cpuset", "memory", "cpu"] {
            dirs.push(Path::new(CG).join(h).join(rel.strip_prefix("/").unwrap()));
        }
        (
            Cleanup {
                dirs,
                files: Vec::new(),
            },
            rel,
        )
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for top in &self.dirs {
            let mut all = Vec::new();
            let mut stack = vec![top.clone()];
            while let Some(d) = stack.pop() {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            stack.push(e.path());
                        }
                    }
                }
                all.push(d);
            }
            for d in all.iter().rev() {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                }
                for _ in 0..50 {
                    if std::fs::remove_dir(d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn apply_a_host_placement_and_allocate_locally() {
    let roots = v1_roots();
    let (mut guard, top) = Cleanup::new("alloc");
    // Two levels, like /rpaas/<id>: the empty v1 parent must be filled before the container.
    let cg = top.join("ctr");
    let topo = Topology::discover(Path::new("/sys")).unwrap();
    let mut placer = Placer::new(topo);
    let d = placer
        .place(
            "rpaas-numa-test",
            &Request::new(1000, 256 << 20, Policy::SingleNode, false),
        )
        .unwrap();
    let p = &d.placement;
    let opts = ApplyOptions {
        swappiness: Some(7),
        create: true,
        ..Default::default()
    };
    let done = apply(&roots, &cg, &p.cpus, &p.mems, &opts).unwrap();
    assert!(!done.writes.is_empty());

    let cpuset = roots.cpuset_dir(&cg);
    let memory = roots.memory_dir(&cg);
    assert_eq!(
        IdSet::parse(&read(cpuset.join("cpuset.cpus"))).unwrap(),
        p.cpus
    );
    assert_eq!(
        IdSet::parse(&read(cpuset.join("cpuset.mems"))).unwrap(),
        p.mems
    );
    assert_eq!(read(memory.join("memory.swappiness")), "7");
    let parent = roots.cpuset_dir(&top);
    let host_cpus = read(PathBuf::from(CG).join("cpuset/cpuset.cpus"));
    assert_eq!(
        read(parent.join("cpuset.cpus")),
        host_cpus,
        "parent filled from the root"
    );
    assert!(!read(parent.join("cpuset.mems")).is_empty());
    // Applying the same again writes no cpuset file (idempotent).
    let again = apply(&roots, &cg, &p.cpus, &p.mems, &ApplyOptions::default()).unwrap();
    assert!(again.writes.is_empty(), "{:?}", again.writes);

    // A process in the cgroup writes 64 MiB to tmpfs: all of it is charged on its node.
    let shm = PathBuf::from(format!("/dev/shm/rpaas-numa-x-{}", std::process::id()));
    guard.files.push(shm.clone());
    let script = format!(
        "echo $$ > {}/cgroup.procs && echo $$ > {}/cgroup.procs && \
         exec busybox dd if=/dev/zero of={} bs=1M count=64",
        cpuset.display(),
        memory.display(),
        shm.display()
    );
    let out = Command::new("busybox")
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loc = locality(&roots, &cg).unwrap();
    // numa_stat counts LRU pages; a few may still sit in per-cpu LRU batches, hence 62 MiB.
    assert!(
        loc.total() >= 62 << 20,
        "only {} bytes charged: {loc:?}",
        loc.total()
    );
    let pct = loc.percent_on(p.mems.iter());
    assert!(pct >= 99.0, "{pct}% local: {loc:?}");
    std::fs::remove_file(&shm).unwrap();
}

#[test]
fn a_cpuset_the_kernel_rejects_is_a_clear_error() {
    let roots = v1_roots();
    let (_guard, cg) = Cleanup::new("reject");
    let opts = ApplyOptions {
        create: true,
        ..Default::default()
    };
    let bad = IdSet::parse("4000").unwrap();
    let err = apply(&roots, &cg, &bad, &IdSet::parse("0").unwrap(), &opts).unwrap_err();
    assert!(matches!(err, Error::CgroupWrite { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cpuset.cpus") && msg.contains("4000"), "{msg}");
    let bad_node = IdSet::parse("63").unwrap();
    let host = IdSet::parse(&read(PathBuf::from(CG).join("cpuset/cpuset.cpus"))).unwrap();
    let err = apply(&roots, &cg, &host, &bad_node, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cpuset.mems") && err.contains("63"), "{err}");
}

#[test]
fn moving_with_sub_cgroups_widens_then_narrows() {
    let roots = v1_roots();
    let host = IdSet::parse(&read(PathBuf::from(CG).join("cpuset/cpuset.cpus"))).unwrap();
    assert!(host.len() >= 2, "needs 2 cpus in the root cpuset");
    let first: IdSet = host.iter().take(1).collect();
    let second: IdSet = host.iter().skip(1).take(1).collect();
    let mems = IdSet::parse("0").unwrap();
    let (_guard, cg) = Cleanup::new("move");
    let opts = ApplyOptions {
        create: true,
        ..Default::default()
    };
    apply(&roots, &cg, &first, &mems, &opts).unwrap();
    // The container made a sub-cgroup of its own on the old cpu (as systemd inside would).
    let sub = cg.join("inner");
    apply(&roots, &sub, &first, &mems, &opts).unwrap();
    let leaf = roots.cpuset_dir(&cg);
    // Writing the new cpu straight into the container is what v1 refuses:
    let direct = std::fs::write(leaf.join("cpuset.cpus"), second.to_string());
    assert!(
        direct.is_err(),
        "kernel accepted a parent cpuset excluding its child's"
    );

    let moved = ApplyOptions {
        migrate: true,
        ..Default::default()
    };
    let done = apply(&roots, &cg, &second, &mems, &moved).unwrap();
    assert_eq!(
        IdSet::parse(&read(leaf.join("cpuset.cpus"))).unwrap(),
        second
    );
    assert_eq!(
        IdSet::parse(&read(leaf.join("inner/cpuset.cpus"))).unwrap(),
        second
    );
    assert_eq!(read(leaf.join("cpuset.memory_migrate")), "1");
    assert_eq!(read(leaf.join("inner/cpuset.memory_migrate")), "1");
    // Order: the container was widened before its child, and narrowed after it.
    let cpus_writes: Vec<_> = done
        .writes
        .iter()
        .filter(|w| w.path.ends_with("cpuset.cpus"))
        .map(|w| (w.path.parent().unwrap().ends_with("inner"), w.value.clone()))
        .collect();
    let union = first.union(&second).to_string();
    assert_eq!(
        cpus_writes,
        vec![
            (false, union.clone()),
            (true, union),
            (true, second.to_string()),
            (false, second.to_string()),
        ]
    );
}

#[test]
fn observe_and_rebuild_from_a_real_cgroup() {
    let roots = v1_roots();
    let CgroupRoots::V1 {
        cpu: Some(cpu_root),
        ..
    } = &roots
    else {
        panic!("needs the v1 cpu controller");
    };
    let (_guard, cg) = Cleanup::new("rebuild");
    let topo = Topology::discover(Path::new("/sys")).unwrap();
    let mut placer = Placer::new(topo.clone());
    let p = placer
        .place(
            "rpaas-numa-web",
            &Request::new(1500, 512 << 20, Policy::SingleNode, false),
        )
        .unwrap()
        .placement;
    let opts = ApplyOptions {
        create: true,
        ..Default::default()
    };
    apply(&roots, &cg, &p.cpus, &p.mems, &opts).unwrap();
    // What the runtime writes from the spec's quota and memory limit.
    let cpu_dir = cpu_root.join(cg.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&cpu_dir).unwrap();
    std::fs::write(cpu_dir.join("cpu.cfs_period_us"), "100000").unwrap();
    std::fs::write(cpu_dir.join("cpu.cfs_quota_us"), "150000").unwrap();
    std::fs::create_dir_all(roots.memory_dir(&cg)).unwrap();
    std::fs::write(
        roots.memory_dir(&cg).join("memory.limit_in_bytes"),
        (512u64 << 20).to_string(),
    )
    .unwrap();

    let seen = observe(&roots, "rpaas-numa-web", &cg).unwrap();
    assert_eq!(seen.cpus, p.cpus);
    assert_eq!(seen.mems, p.mems);
    assert_eq!(seen.millicores, Some(1500));
    assert_eq!(seen.memory, Some(512 << 20));
    let rebuilt = rebuild(topo, vec![seen]).unwrap();
    assert_eq!(rebuilt.get("rpaas-numa-web"), Some(&p));
    assert_eq!(rebuilt.loads(), placer.loads());

    let err = observe(&roots, "ghost", Path::new("/rpaas-numa-test-none")).unwrap_err();
    assert!(err.to_string().contains("rpaas-numa-test-none"), "{err}");
}
