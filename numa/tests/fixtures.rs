//! Topology and placement on the sysfs fixtures (no root needed).
use std::path::PathBuf;

use rpaas_numa::{rebuild, Error, IdSet, Observed, Placer, Policy, Request, StateFile, Topology};

const GIB: u64 = 1 << 30;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("sys")
}

fn seed() -> Topology {
    Topology::discover(&fixture("seed-2socket")).unwrap()
}

fn set(s: &str) -> IdSet {
    IdSet::parse(s).unwrap()
}

#[test]
fn seed_host_topology_matches_numactl() {
    let t = seed();
    assert!(!t.implicit);
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.nodes[0].cpus, set("0-5,12-17"));
    assert_eq!(t.nodes[1].cpus, set("6-11,18-23"));
    assert_eq!(t.nodes[0].mem_total, 32739 << 20);
    assert_eq!(t.nodes[1].mem_total, 32768 << 20);
    assert_eq!(t.nodes[0].mem_free, 15488 << 20);
    assert_eq!(t.nodes[0].distances, vec![10, 20]);
    assert_eq!(t.nodes[1].distances, vec![20, 10]);
    // 12 cores of 2 threads: i and i+12.
    assert_eq!(t.cores.len(), 12);
    assert!(t.cores.iter().all(|c| c.len() == 2));
    assert!(t.cores.contains(&set("3,15")));
    assert_eq!(t.node_of_cpu(18), Some(1));
}

#[test]
fn single_node_host() {
    let t = Topology::discover(&fixture("single-node")).unwrap();
    assert_eq!(t.nodes.len(), 1);
    assert_eq!(t.nodes[0].cpus, set("0-1"));
    assert_eq!(t.cores, vec![set("0"), set("1")]);
    let mut p = Placer::new(t);
    let d = p
        .place("a", &Request::new(1500, GIB, Policy::SingleNode, false))
        .unwrap();
    assert_eq!(d.placement.spec_cpuset().cpus, "0-1");
    assert_eq!(d.placement.spec_cpuset().mems, "0");
}

#[test]
fn sysfs_without_nodes_is_one_implicit_node() {
    let t = Topology::discover(&fixture("no-nodes")).unwrap();
    assert!(t.implicit);
    assert_eq!(t.nodes.len(), 1);
    assert_eq!(t.nodes[0].id, 0);
    assert_eq!(t.nodes[0].cpus, set("0-3"));
    assert_eq!(t.nodes[0].mem_total, 4 * GIB);
    let mut p = Placer::new(t);
    let d = p
        .place("a", &Request::new(4000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_eq!(d.placement.cpus, set("0-3"));
}

#[test]
fn sysfs_with_nothing_is_a_clear_error() {
    let root = fixture("empty");
    let err = Topology::discover(&root).unwrap_err().to_string();
    assert!(err.contains("devices/system/cpu"), "{err}");
    let missing = Topology::discover(&PathBuf::from("/nonexistent-rpaas")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent-rpaas"),
        "{missing}"
    );
}

#[test]
fn seed_host_packs_two_12_cpu_apps_one_per_node_and_refuses_a_third() {
    let mut p = Placer::new(seed());
    let req = Request::new(12_000, 16 * GIB, Policy::SingleNode, false);
    let a = p.place("app-a", &req).unwrap();
    let b = p.place("app-b", &req).unwrap();
    assert_eq!(a.placement.node, Some(0));
    assert_eq!(a.placement.cpus, set("0-5,12-17"));
    assert_eq!(a.placement.mems, set("0"));
    assert_eq!(b.placement.node, Some(1));
    assert_eq!(b.placement.cpus, set("6-11,18-23"));
    assert_eq!(b.placement.mems, set("1"));
    assert!(a.note.is_none() && b.note.is_none());

    let err = p.place("app-c", &req).unwrap_err();
    assert!(matches!(err, Error::NoNodeFits { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("12 cpus") && msg.contains("node 0 free 0 of 12 cpus"),
        "{msg}"
    );
    assert!(
        p.get("app-c").is_none(),
        "a refused request must not be booked"
    );
}

#[test]
fn memory_also_decides_the_node() {
    let mut p = Placer::new(seed());
    // 2 cpus but 30 GiB: node 0 then has no room for another 30 GiB.
    let big = Request::new(2000, 30 * GIB, Policy::SingleNode, false);
    assert_eq!(p.place("m1", &big).unwrap().placement.node, Some(0));
    assert_eq!(p.place("m2", &big).unwrap().placement.node, Some(1));
    assert!(p.place("m3", &big).is_err());
}

#[test]
fn preferred_falls_back_and_says_so() {
    let mut p = Placer::new(seed());
    let full = Request::new(12_000, 8 * GIB, Policy::SingleNode, false);
    p.place("a", &full).unwrap();
    let b = p
        .place(
            "b",
            &Request::new(11_000, 8 * GIB, Policy::SingleNode, false),
        )
        .unwrap();
    assert_eq!(b.placement.node, Some(1));
    let pref = Request::new(4000, GIB, Policy::Preferred, false);
    let d = p.place("c", &pref).unwrap();
    // Node 1 has 1 cpu left, node 0 none: the least loaded is node 1.
    assert_eq!(d.placement.node, Some(1));
    let note = d.note.expect("a fallback must say so");
    assert!(
        note.contains("no node has room") && note.contains("node 1"),
        "{note}"
    );
    assert_eq!(d.placement.mems, set("1"));

    // Bigger than any node (but not the host): spans both nodes, and says so.
    let mut q = Placer::new(seed());
    let d = q
        .place("wide", &Request::new(16_000, GIB, Policy::Preferred, false))
        .unwrap();
    assert_eq!(d.placement.node, None);
    assert_eq!(d.placement.cpus, set("0-23"));
    assert_eq!(d.placement.mems, set("0-1"));
    assert!(d.note.unwrap().contains("spans all nodes"));
}

#[test]
fn policy_none_is_unpinned() {
    let mut p = Placer::new(seed());
    let d = p
        .place("free", &Request::new(2000, GIB, Policy::None, false))
        .unwrap();
    assert_eq!(d.placement.node, None);
    assert_eq!(d.placement.spec_cpuset().cpus, "0-23");
    assert_eq!(d.placement.spec_cpuset().mems, "0-1");
    let err = p
        .place("x", &Request::new(2000, GIB, Policy::None, true))
        .unwrap_err();
    assert!(err.to_string().contains("exclusive"), "{err}");
}

#[test]
fn more_cpus_than_the_host_is_a_clear_error() {
    let mut p = Placer::new(seed());
    for policy in [Policy::SingleNode, Policy::Preferred, Policy::None] {
        let err = p
            .place("huge", &Request::new(25_000, GIB, policy, false))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cpus") && msg.contains("25") && msg.contains("24"),
            "{msg}"
        );
    }
    let err = p.place(
        "fat",
        &Request::new(1000, 100 * GIB, Policy::Preferred, false),
    );
    assert!(err.unwrap_err().to_string().contains("memory"));
}

#[test]
fn exclusive_cores_keep_smt_siblings_together() {
    let mut p = Placer::new(seed());
    let shared = p
        .place(
            "shared",
            &Request::new(2000, GIB, Policy::SingleNode, false),
        )
        .unwrap();
    assert_eq!(shared.placement.cpus, set("0-5,12-17"));

    let d = p
        .place("ex4", &Request::new(4000, GIB, Policy::SingleNode, true))
        .unwrap();
    // Least loaded is node 1 (node 0 has the shared app): two whole cores there.
    assert_eq!(d.placement.node, Some(1));
    assert_eq!(d.placement.cpus, set("6-7,18-19"));
    assert!(d.placement.exclusive);

    // An odd count: one whole core + one thread of an intact core; the next single takes
    // that thread's sibling instead of breaking another core.
    let d3 = p
        .place("ex3", &Request::new(3000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_eq!(d3.placement.node, Some(0));
    assert_eq!(d3.placement.cpus, set("0,1,12"));
    let d1 = p
        .place("ex1", &Request::new(1000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_eq!(d1.placement.node, Some(1));
    let d1b = p
        .place("ex1b", &Request::new(1000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_eq!(d1b.placement.node, Some(0));
    assert_eq!(
        d1b.placement.cpus,
        set("13"),
        "the sibling of cpu 1 goes first"
    );
    for pl in p
        .placements()
        .filter(|pl| pl.exclusive && pl.cpus.len() % 2 == 0)
    {
        for cpu in pl.cpus.iter() {
            let sib = if cpu < 12 { cpu + 12 } else { cpu - 12 };
            assert!(pl.cpus.contains(sib), "{} split core {cpu}/{sib}", pl.id);
        }
    }

    // The shared app's cpuset shrank as exclusive cpus left node 0's pool, and it was told.
    assert!(d3
        .resized
        .iter()
        .any(|r| r.id == "shared" && r.cpus == set("2-5,13-17")));
    assert_eq!(p.get("shared").unwrap().cpus, set("2-5,14-17"));

    // Exclusive cpus are never handed out twice.
    let mut seen = IdSet::new();
    for pl in p.placements().filter(|pl| pl.exclusive) {
        assert!(pl.cpus.is_disjoint(&seen));
        seen = seen.union(&pl.cpus);
    }

    // Releasing gives the cpus back to the pool and widens the shared app again.
    let (_, resized) = p.release("ex3").unwrap();
    assert!(resized
        .iter()
        .any(|r| r.id == "shared" && r.cpus == set("0-5,12,14-17")));
    assert_eq!(p.get("shared").unwrap().cpus, set("0-5,12,14-17"));
}

#[test]
fn exclusive_needs_whole_cpus_and_a_pool_left_for_shared_apps() {
    let mut p = Placer::new(seed());
    let err = p
        .place("x", &Request::new(1500, GIB, Policy::SingleNode, true))
        .unwrap_err();
    assert!(err.to_string().contains("whole number"), "{err}");
    // 10 shared cpus on each node: exclusive may take only 2 per node.
    p.place("s0", &Request::new(10_000, GIB, Policy::SingleNode, false))
        .unwrap();
    p.place("s1", &Request::new(10_000, GIB, Policy::SingleNode, false))
        .unwrap();
    assert!(p
        .place("e3", &Request::new(3000, GIB, Policy::SingleNode, true))
        .is_err());
    let e2 = p
        .place("e2", &Request::new(2000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_eq!(e2.placement.cpus.len(), 2);
    let other = p
        .place("e2o", &Request::new(2000, GIB, Policy::SingleNode, true))
        .unwrap();
    assert_ne!(other.placement.node, e2.placement.node);
    // Preferred exclusive with no cores left anywhere lands, over-committed, in a shared pool.
    let d = p
        .place("e2b", &Request::new(2000, GIB, Policy::Preferred, true))
        .unwrap();
    let note = d.note.unwrap();
    assert!(
        note.contains("over-committed, in the shared pool"),
        "{note}"
    );
    assert!(!d.placement.exclusive);
}

#[test]
fn release_and_rebuild_give_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateFile::new(dir.path());
    let mut p = Placer::new(seed());
    let reqs = [
        (
            "web-1",
            Request::new(2000, 4 * GIB, Policy::SingleNode, false),
        ),
        (
            "web-2",
            Request::new(1500, 2 * GIB, Policy::SingleNode, false),
        ),
        (
            "db-1",
            Request::new(4000, 8 * GIB, Policy::SingleNode, true),
        ),
        ("batch", Request::new(3000, GIB, Policy::Preferred, false)),
        ("tmp", Request::new(2000, GIB, Policy::SingleNode, true)),
        (
            "cache",
            Request::new(1000, 512 << 20, Policy::SingleNode, false),
        ),
    ];
    for (id, r) in &reqs {
        p.place(id, r).unwrap();
    }
    p.release("tmp").unwrap();
    p.release("web-2").unwrap();
    assert!(p.release("web-2").is_err(), "double release must fail");
    state.save(p.placements()).unwrap();

    // Restart 1: from the state file.
    let loaded = state.placer(seed()).unwrap();
    assert_eq!(
        loaded.placements().collect::<Vec<_>>(),
        p.placements().collect::<Vec<_>>()
    );
    assert_eq!(loaded.loads(), p.loads());

    // Restart 2: state lost; rebuilt from what the cgroups hold (cpuset, quota, limit).
    let observed: Vec<Observed> = p
        .placements()
        .map(|pl| Observed {
            id: pl.id.clone(),
            cpus: pl.cpus.clone(),
            mems: pl.mems.clone(),
            millicores: Some(pl.millicores),
            memory: Some(pl.memory),
        })
        .collect();
    let rebuilt = rebuild(seed(), observed).unwrap();
    assert_eq!(
        rebuilt.placements().collect::<Vec<_>>(),
        p.placements().collect::<Vec<_>>()
    );
    assert_eq!(rebuilt.loads(), p.loads());

    // And the next decision is the same on all three.
    let next = Request::new(2000, GIB, Policy::SingleNode, true);
    let (mut a, mut b, mut c) = (p.clone(), loaded, rebuilt);
    let da = a.place("n", &next).unwrap().placement;
    assert_eq!(b.place("n", &next).unwrap().placement, da);
    assert_eq!(c.place("n", &next).unwrap().placement, da);
}

#[test]
fn state_file_is_replaced_atomically_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateFile::new(&dir.path().join("numa"));
    assert!(
        state.load().unwrap().is_empty(),
        "no file yet = no placements"
    );
    let _lock = state.lock().unwrap();
    let mut p = Placer::new(seed());
    p.place("a", &Request::new(1000, GIB, Policy::SingleNode, false))
        .unwrap();
    state.save(p.placements()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path().join("numa"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "temp file left: {names:?}"
    );
    let text = std::fs::read_to_string(state.path()).unwrap();
    assert!(text.contains("\"cpus\": \"0-5,12-17\""), "{text}");

    std::fs::write(state.path(), "{ not json").unwrap();
    let err = state.load().unwrap_err().to_string();
    assert!(err.contains("placements.json"), "{err}");

    // Books from another host (cpu 30 does not exist here) are refused.
    std::fs::write(
        state.path(),
        r#"{"version":1,"placements":[{"id":"x","node":0,"cpus":"30","mems":"0","exclusive":true,"millicores":1000,"memory":0}]}"#,
    )
    .unwrap();
    let err = state.placer(seed()).unwrap_err().to_string();
    assert!(err.contains("\"x\"") && err.contains("30"), "{err}");
}
