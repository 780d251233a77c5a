//! `rpaas-run numa …`: the host's NUMA topology, placement decisions and the books kept in
//! `<root>/numa/placements.json`, and where a container's memory really is.
use std::path::{Path, PathBuf};

use anyhow::Context;
use rpaas_numa::{
    locality, observe, parse_cpus, parse_size, rebuild, CgroupRoots, Placer, Policy, Request,
    StateFile, Topology,
};
use serde_json::json;

use crate::Global;

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum NumaCommand {
    /// Show the nodes (cpus, memory, distances, cores) and what is placed on them.
    Show {
        /// sysfs root to read (a fixture tree, for instance).
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Decide a node for a request. With --id the placement is recorded; without, it is a
    /// dry run against the recorded ones.
    Place {
        /// Cpus: a count (2), a fraction (1.5) or millicores (1500m).
        #[arg(long)]
        cpus: String,
        /// Memory: bytes or 512M, 2G, ...
        #[arg(long)]
        memory: String,
        /// single-node (refuse when nothing fits), preferred (fall back, say so) or none.
        #[arg(long, default_value = "single-node")]
        policy: String,
        /// Whole cpus of its own (SMT siblings together) instead of the shared pool.
        #[arg(long)]
        exclusive: bool,
        /// Record the placement under this container id.
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Forget a recorded placement (on delete).
    Release {
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the books from the cgroups of the containers under --root (after the state
    /// file was lost): each `<root>/<id>/state.json` whose cgroup still exists.
    Rebuild {
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        #[arg(long, default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Per-node memory of a container, from its cgroup's memory.numa_stat.
    Locality {
        id: String,
        /// Where the cgroup hierarchies are mounted.
        #[arg(long, default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Global, cmd: NumaCommand) -> anyhow::Result<i32> {
    let state = StateFile::new(&g.root.join("numa"));
    match cmd {
        NumaCommand::Show { sysfs, json } => show(&state, &sysfs, json),
        NumaCommand::Place {
            cpus,
            memory,
            policy,
            exclusive,
            id,
            sysfs,
            json,
        } => {
            let req = Request::new(
                parse_cpus(&cpus)?,
                parse_size(&memory)?,
                policy.parse::<Policy>()?,
                exclusive,
            );
            place(&state, &sysfs, &req, id.as_deref(), json)
        }
        NumaCommand::Release { id, sysfs, json } => release(&state, &sysfs, &id, json),
        NumaCommand::Rebuild {
            sysfs,
            cgroup_root,
            json,
        } => rebuild_books(g, &state, &sysfs, &cgroup_root, json),
        NumaCommand::Locality {
            id,
            cgroup_root,
            json,
        } => show_locality(g, &id, &cgroup_root, json),
    }
}

fn placer(state: &StateFile, sysfs: &Path) -> anyhow::Result<Placer> {
    let topo = Topology::discover(sysfs)?;
    Ok(state.placer(topo)?)
}

fn show(state: &StateFile, sysfs: &Path, as_json: bool) -> anyhow::Result<i32> {
    let placer = placer(state, sysfs)?;
    let topo = placer.topology();
    if as_json {
        let out = json!({
            "topology": topo,
            "loads": placer.loads(),
            "placements": placer.placements().collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!(
        "{} node(s), {} cpus{}",
        topo.nodes.len(),
        topo.total_cpus(),
        if topo.implicit {
            " (no NUMA in sysfs: one implicit node)"
        } else {
            ""
        }
    );
    for (node, load) in topo.nodes.iter().zip(placer.loads()) {
        let cores = topo
            .cores
            .iter()
            .filter(|c| c.first().is_some_and(|cpu| node.cpus.contains(cpu)))
            .count();
        println!(
            "node {}: cpus {} ({cores} cores), memory {} MiB, free {} MiB, distances {:?}",
            node.id,
            node.cpus,
            node.mem_total >> 20,
            node.mem_free >> 20,
            node.distances
        );
        let count = placer
            .placements()
            .filter(|p| p.node == Some(node.id))
            .count();
        println!(
            "  placed: {count}, shared {} millicores on pool {}, exclusive cpus [{}], memory {} MiB",
            load.shared_millicores,
            placer.shared_pool(node.id),
            load.exclusive,
            load.memory >> 20
        );
    }
    Ok(0)
}

fn place(
    state: &StateFile,
    sysfs: &Path,
    req: &Request,
    id: Option<&str>,
    as_json: bool,
) -> anyhow::Result<i32> {
    // Lock across read-decide-write so two placements cannot take the same room.
    let _lock = match id {
        Some(_) => Some(state.lock()?),
        None => None,
    };
    let mut placer = placer(state, sysfs)?;
    let decision = placer.place(id.unwrap_or("dry-run"), req)?;
    if id.is_some() {
        state.save(placer.placements())?;
    }
    let p = &decision.placement;
    if as_json {
        let out = json!({
            "id": id,
            "recorded": id.is_some(),
            "placement": p,
            "linux.resources.cpu": p.spec_cpuset(),
            "note": decision.note,
            "resized": decision.resized,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    match p.node {
        Some(n) => println!("node {n}: cpus {} mems {}", p.cpus, p.mems),
        None => println!("all nodes: cpus {} mems {}", p.cpus, p.mems),
    }
    if let Some(note) = &decision.note {
        println!("note: {note}");
    }
    for r in &decision.resized {
        println!("resize {}: cpus {}", r.id, r.cpus);
    }
    if id.is_none() {
        println!("(dry run: pass --id to record it)");
    }
    Ok(0)
}

fn release(state: &StateFile, sysfs: &Path, id: &str, as_json: bool) -> anyhow::Result<i32> {
    let _lock = state.lock()?;
    let mut placer = placer(state, sysfs)?;
    let (p, resized) = placer.release(id)?;
    state.save(placer.placements())?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "released": p, "resized": resized }))?
        );
    } else {
        println!("released {id} (cpus {} mems {})", p.cpus, p.mems);
        for r in &resized {
            println!("resize {}: cpus {}", r.id, r.cpus);
        }
    }
    Ok(0)
}

/// The container's cgroup: `cgroupPath` of `<root>/<id>/state.json` when the runtime
/// recorded one, else rpaas's default `/rpaas-<id>`.
fn cgroup_of(g: &Global, id: &str) -> anyhow::Result<PathBuf> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        anyhow::bail!("container id {id:?}: must be a plain name");
    }
    let path = g.root.join(id).join("state.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
            if let Some(cg) = v.get("cgroupPath").and_then(|c| c.as_str()) {
                return Ok(PathBuf::from(cg));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    Ok(PathBuf::from(rpaas_runtime::cgroups::default_path(id)))
}

fn show_locality(g: &Global, id: &str, cgroup_root: &Path, as_json: bool) -> anyhow::Result<i32> {
    let cgroup = cgroup_of(g, id)?;
    let roots = CgroupRoots::detect(cgroup_root)?;
    let loc = locality(&roots, &cgroup).with_context(|| format!("container {id}"))?;
    let total = loc.total();
    if as_json {
        let nodes: Vec<_> = loc
            .per_node
            .iter()
            .map(|(n, b)| json!({ "node": n, "bytes": b, "percent": loc.share(*n) * 100.0 }))
            .collect();
        let out =
            json!({ "id": id, "cgroup": cgroup, "file": loc.path, "total": total, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("{id}: {} MiB in {}", total >> 20, loc.path.display());
    for (node, bytes) in &loc.per_node {
        println!(
            "  node {node}: {} MiB ({:.1}%)",
            bytes >> 20,
            loc.share(*node) * 100.0
        );
    }
    Ok(0)
}

fn rebuild_books(
    g: &Global,
    state: &StateFile,
    sysfs: &Path,
    cgroup_root: &Path,
    as_json: bool,
) -> anyhow::Result<i32> {
    let _lock = state.lock()?;
    let topo = Topology::discover(sysfs)?;
    let roots = CgroupRoots::detect(cgroup_root)?;
    let mut observed = Vec::new();
    let mut skipped = Vec::new();
    let entries = match std::fs::read_dir(&g.root) {
        Ok(e) => e.collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", g.root.display())),
    };
    for entry in entries {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !entry.path().join("state.json").is_file() {
            continue;
        }
        let cgroup = cgroup_of(g, &id)?;
        if !roots.cpuset_dir(&cgroup).is_dir() {
            // Stopped or deleted: holds no cpus.
            skipped.push(id);
            continue;
        }
        observed.push(observe(&roots, &id, &cgroup).with_context(|| format!("container {id}"))?);
    }
    let placer = rebuild(topo, observed)?;
    state.save(placer.placements())?;
    let placements: Vec<_> = placer.placements().collect();
    if as_json {
        let out = json!({ "placements": placements, "skipped": skipped });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &placements {
            println!("{}: cpus {} mems {}", p.id, p.cpus, p.mems);
        }
        for id in &skipped {
            println!("{id}: no cgroup (not running), skipped");
        }
    }
    Ok(0)
}
