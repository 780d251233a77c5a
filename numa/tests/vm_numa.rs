//! Two-node proof, run inside a qemu guest with two NUMA nodes:
//!
//! ```text
//! cargo test -p rpaas-numa --test vm_numa --no-run      # prints the binary path
//! tests/vm/run-in-vm --numa 2 --cpus 2 --cgroup v2 -- target/debug/deps/vm_numa-HASH --include-ignored
//! tests/vm/run-in-vm --numa 2 --cpus 2 --cgroup v1 -- target/debug/deps/vm_numa-HASH --include-ignored
//! ```
//!
//! A process-level "container" (a cgroup plus a child process) is placed by the placer on
//! node 1, maps and touches 64 MiB of tmpfs, and `memory.numa_stat` must show ≥ 99 % of it on
//! node 1. Then it is moved to node 0 like `rpaas-run update` would (v2: the mems change
//! migrates; v1: `cpuset.memory_migrate=1` first) and ≥ 99 % must be on node 0.
//! Without `--include-ignored` it reports itself ignored, as libtest does (the host has one
//! node); with it outside the guest (`RUN_IN_VM` unset) it fails.
//! Negative control: `RPAAS_NUMA_VM_NO_MIGRATE=1` moves without asking for migration; on v1
//! the memory then stays on node 1 and the test fails (that is how we know it can).
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rpaas_numa::{
    apply, locality, ApplyOptions, CgroupRoots, IdSet, Locality, Placer, Policy, Request, SwapMax,
    Topology,
};

const CHILD_ENV: &str = "RPAAS_NUMA_VM_CHILD";
const SIZE: usize = 64 << 20;

fn main() {
    if let Ok(file) = std::env::var(CHILD_ENV) {
        child(Path::new(&file));
        return;
    }
    // Reported as libtest reports an #[ignore]d test: the host has one NUMA
    // node; the VM suite runs it with --include-ignored in a two-node guest.
    if !std::env::args().any(|a| a == "--include-ignored" || a == "--ignored") {
        println!("\nrunning 1 test\ntest place_allocate_and_move ... ignored, needs two NUMA nodes: runs in the VM suite");
        println!("\ntest result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n");
        return;
    }
    assert!(
        std::env::var_os("RUN_IN_VM").is_some(),
        "needs two NUMA nodes: run this binary with tests/vm/run-in-vm --numa 2"
    );
    place_allocate_and_move();
    println!("vm_numa: ok");
}

/// The "container": waits until the parent has put it in its cgroup, then maps and touches
/// SIZE bytes of a tmpfs file (mapped, so a cpuset mems change can migrate the pages), says
/// "ready" and holds the mapping until stdin closes.
fn child(file: &Path) {
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.lock().read_line(&mut line).expect("read go");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(file)
        .expect("create tmpfs file");
    f.set_len(SIZE as u64).expect("size tmpfs file");
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of our own file; only this function touches it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: addr..addr+SIZE is the mapping made above.
    let mem = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, SIZE) };
    for page in mem.chunks_mut(4096) {
        page[0] = 0xa5;
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    line.clear();
    let _ = stdin.lock().read_line(&mut line);
}

/// Kills the child, removes the file and the cgroups, also on panic.
struct Guard {
    child: Option<Child>,
    file: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.file);
        for d in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// numa_stat counts pages on the LRU lists; freshly touched or migrated pages can sit in
/// per-cpu batches for a moment, so read until SIZE is visible (bounded; not a timing check).
fn settled(roots: &CgroupRoots, cg: &Path) -> Locality {
    let mut loc = locality(roots, cg).expect("memory.numa_stat");
    for _ in 0..100 {
        if loc.total() >= (SIZE as u64) * 99 / 100 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        loc = locality(roots, cg).expect("memory.numa_stat");
    }
    loc
}

fn place_allocate_and_move() {
    let roots = CgroupRoots::detect(Path::new("/sys/fs/cgroup")).expect("cgroup layout");
    let layout = if roots.is_v2() { "v2" } else { "v1" };
    println!("vm_numa: cgroup {layout}");
    let topo = Topology::discover(Path::new("/sys")).expect("topology");
    assert!(
        topo.nodes.len() >= 2,
        "needs 2 NUMA nodes (run-in-vm --numa 2): {topo:?}"
    );
    for n in &topo.nodes {
        println!(
            "vm_numa: node {} cpus {} mem {} MiB",
            n.id,
            n.cpus,
            n.mem_total >> 20
        );
    }

    // The placer puts a first app on node 0 (tie, lowest id), so ours lands on node 1.
    let mut placer = Placer::new(topo.clone());
    let cpus_node0 = topo.nodes[0].cpus.len() as u64 * 1000;
    let filler = Request::new(cpus_node0, 64 << 20, Policy::SingleNode, false);
    assert_eq!(
        placer.place("filler", &filler).unwrap().placement.node,
        Some(topo.nodes[0].id)
    );
    let req = Request::new(1000, 128 << 20, Policy::SingleNode, false);
    let p = placer.place("rpaas-numa-vm", &req).unwrap().placement;
    let node1 = topo.nodes[1].id;
    assert_eq!(p.node, Some(node1), "{p:?}");

    // Two levels like the runtime's /rpaas/<id>: v1 must fill the empty parent first, v2 must
    // enable the controllers in it.
    let top = PathBuf::from(format!("/rpaas-numa-vm-{}", std::process::id()));
    let cg = top.join("ctr");
    let file = PathBuf::from(format!("/dev/shm/rpaas-numa-vm-{}", std::process::id()));
    let mut guard = Guard {
        child: None,
        file: file.clone(),
        dirs: vec![roots.cpuset_dir(&cg), roots.cpuset_dir(&top)],
    };
    if !roots.is_v2() {
        guard.dirs.push(roots.memory_dir(&cg));
        guard.dirs.push(roots.memory_dir(&top));
        std::fs::create_dir_all(roots.memory_dir(&cg)).expect("memory cgroup");
    }
    let opts = ApplyOptions {
        create: true,
        swappiness: (!roots.is_v2()).then_some(10),
        swap_max: roots.is_v2().then_some(SwapMax::Bytes(0)),
        ..Default::default()
    };
    let done = apply(&roots, &cg, &p.cpus, &p.mems, &opts).expect("apply placement");
    for w in &done.writes {
        println!("vm_numa: wrote {} = {}", w.path.display(), w.value);
    }

    // The swap knob of each version, as written (v1 swappiness, v2 swap.max).
    let (knob, want) = if roots.is_v2() {
        ("memory.swap.max", "0")
    } else {
        ("memory.swappiness", "10")
    };
    let knob_path = roots.memory_dir(&cg).join(knob);
    let got = std::fs::read_to_string(&knob_path).expect("read swap knob");
    assert_eq!(got.trim(), want, "{}", knob_path.display());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let pid = child.id().to_string();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    guard.child = Some(child);
    let procs: Vec<PathBuf> = if roots.is_v2() {
        vec![roots.cpuset_dir(&cg).join("cgroup.procs")]
    } else {
        vec![
            roots.cpuset_dir(&cg).join("cgroup.procs"),
            roots.memory_dir(&cg).join("cgroup.procs"),
        ]
    };
    for f in &procs {
        std::fs::write(f, &pid).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    stdin.write_all(b"go\n").unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let allowed: Vec<&str> = status
        .lines()
        .filter(|l| l.contains("_allowed_list"))
        .collect();
    println!("vm_numa: child {pid}: {allowed:?}");

    let on1 = settled(&roots, &cg);
    let pct1 = on1.percent_on([node1]);
    println!("vm_numa: placed on node {node1}: {on1:?} -> {pct1:.2}% on node {node1}");
    assert!(
        on1.total() >= (SIZE as u64) * 99 / 100,
        "64 MiB not charged: {on1:?}"
    );
    assert!(pct1 >= 99.0, "{pct1}% on node {node1}");

    // Move the live container to node 0, as `rpaas-run update` would.
    let node0 = topo.nodes[0].id;
    let mems0: IdSet = std::iter::once(node0).collect();
    let moved = ApplyOptions {
        migrate: std::env::var_os("RPAAS_NUMA_VM_NO_MIGRATE").is_none(),
        ..Default::default()
    };
    let done = apply(&roots, &cg, &topo.nodes[0].cpus, &mems0, &moved).expect("move");
    for w in &done.writes {
        println!("vm_numa: wrote {} = {}", w.path.display(), w.value);
    }
    let on0 = settled(&roots, &cg);
    let pct0 = on0.percent_on([node0]);
    println!("vm_numa: moved to node {node0}: {on0:?} -> {pct0:.2}% on node {node0}");
    assert!(pct0 >= 99.0, "{pct0}% on node {node0} after the move");
    drop(stdin);
}
