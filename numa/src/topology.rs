//! The host's NUMA topology, read from sysfs: nodes with their cpus, memory and distances, and
//! which cpus are SMT siblings of one core. The sysfs root is a parameter so fixtures can
//! describe hosts we do not have (the seed's 2-socket box, an 8-node server).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cpulist::IdSet;
use crate::error::{Error, Result};

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: u32,
    pub cpus: IdSet,
    /// `MemTotal` of the node, bytes.
    pub mem_total: u64,
    /// `MemFree` of the node at discovery time, bytes (informational: placement budgets
    /// against `mem_total`, since free memory includes reclaimable cache and moves all the time).
    pub mem_free: u64,
    /// Distance to every node, indexed like `Topology::nodes` (the kernel's `distance` file).
    pub distances: Vec<u32>,
}

/// Nodes plus core (SMT sibling) groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub nodes: Vec<Node>,
    /// Every core as its set of hardware threads, sorted by first cpu. A cpu without topology
    /// information is its own core.
    pub cores: Vec<IdSet>,
    /// True when sysfs had no `devices/system/node` (a kernel without CONFIG_NUMA): one node 0
    /// was made up holding every online cpu.
    pub implicit: bool,
}

impl Topology {
    /// Reads `<sysfs>/devices/system/{node,cpu}`. `sysfs` is normally `/sys`.
    /// Without a node directory (non-NUMA kernel), node 0 is implied with all online cpus and the
    /// memory of `<sysfs>/../proc/meminfo` (that is `/proc/meminfo` for `/sys`; fixtures can
    /// ship one beside their `sys`).
    pub fn discover(sysfs: &Path) -> Result<Topology> {
        let node_dir = sysfs.join("devices/system/node");
        let cpu_dir = sysfs.join("devices/system/cpu");
        let online = online_cpus(&cpu_dir)?;
        let (nodes, implicit) = if node_dir.is_dir() {
            (read_nodes(&node_dir)?, false)
        } else {
            (vec![implicit_node(sysfs, &online)?], true)
        };
        if nodes.iter().all(|n| n.cpus.is_empty()) {
            return Err(Error::Topology {
                path: sysfs.to_path_buf(),
                what: "no node has any cpu".into(),
            });
        }
        let cores = read_cores(&cpu_dir, &nodes)?;
        Ok(Topology {
            nodes,
            cores,
            implicit,
        })
    }

    /// Builds a topology from parts (benches and tests that generate hosts in memory).
    pub fn from_parts(nodes: Vec<Node>, cores: Vec<IdSet>) -> Topology {
        Topology {
            nodes,
            cores,
            implicit: false,
        }
    }

    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn all_cpus(&self) -> IdSet {
        self.nodes
            .iter()
            .fold(IdSet::new(), |acc, n| acc.union(&n.cpus))
    }

    /// Nodes that have memory (memory-less nodes exist on some servers: cpus only).
    pub fn all_mems(&self) -> IdSet {
        self.nodes
            .iter()
            .filter(|n| n.mem_total > 0)
            .map(|n| n.id)
            .collect()
    }

    pub fn total_cpus(&self) -> usize {
        self.nodes.iter().map(|n| n.cpus.len()).sum()
    }

    /// The node whose cpus contain `cpu`.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.cpus.contains(cpu))
            .map(|n| n.id)
    }
}

fn read_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_list(path: &Path) -> Result<IdSet> {
    let text = read_string(path)?;
    IdSet::parse(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// `cpu/online`; without it (very old kernels, thin fixtures) every `cpuN` directory counts.
fn online_cpus(cpu_dir: &Path) -> Result<IdSet> {
    let online = cpu_dir.join("online");
    if online.exists() {
        return read_list(&online);
    }
    Ok(numbered_entries(cpu_dir, "cpu")?.into_keys().collect())
}

/// `prefix<N>` entries of a directory, by N.
fn numbered_entries(dir: &Path, prefix: &str) -> Result<BTreeMap<u32, PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(num) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if let Ok(n) = num.parse::<u32>() {
            out.insert(n, entry.path());
        }
    }
    Ok(out)
}

fn read_nodes(node_dir: &Path) -> Result<Vec<Node>> {
    let dirs = numbered_entries(node_dir, "node")?;
    let mut nodes = Vec::with_capacity(dirs.len());
    for (id, dir) in dirs {
        let cpus = read_list(&dir.join("cpulist"))?;
        let (mem_total, mem_free) = read_node_meminfo(&dir.join("meminfo"))?;
        let dist_path = dir.join("distance");
        let distances = read_string(&dist_path)?
            .split_whitespace()
            .map(|d| {
                d.parse::<u32>().map_err(|_| Error::Parse {
                    path: dist_path.clone(),
                    what: format!("distance {d:?} is not a number"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        nodes.push(Node {
            id,
            cpus,
            mem_total,
            mem_free,
            distances,
        });
    }
    if nodes.is_empty() {
        return Err(Error::Topology {
            path: node_dir.to_path_buf(),
            what: "directory exists but lists no nodeN".into(),
        });
    }
    Ok(nodes)
}

/// Node meminfo lines look like "Node 0 MemTotal:  32739 kB".
fn read_node_meminfo(path: &Path) -> Result<(u64, u64)> {
    let text = read_string(path)?;
    let total = meminfo_field(&text, "MemTotal:", path)?;
    let free = meminfo_field(&text, "MemFree:", path)?;
    Ok((total, free))
}

/// Finds `key` on a meminfo line (node or /proc form) and returns its kB value in bytes.
fn meminfo_field(text: &str, key: &str, path: &Path) -> Result<u64> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.by_ref().any(|w| w == key) {
            let kb = words.next().and_then(|v| v.parse::<u64>().ok());
            return kb.map(|kb| kb * 1024).ok_or_else(|| Error::Parse {
                path: path.to_path_buf(),
                what: format!("{key} has no number: {line:?}"),
            });
        }
    }
    Err(Error::Parse {
        path: path.to_path_buf(),
        what: format!("no {key} line"),
    })
}

fn implicit_node(sysfs: &Path, online: &IdSet) -> Result<Node> {
    let meminfo = sysfs.join("../proc/meminfo");
    let (mem_total, mem_free) = if meminfo.exists() {
        let text = read_string(&meminfo)?;
        let total = meminfo_field(&text, "MemTotal:", &meminfo)?;
        // MemFree, the same figure the node meminfo files give.
        let free = meminfo_field(&text, "MemFree:", &meminfo)?;
        (total, free)
    } else {
        return Err(Error::Topology {
            path: sysfs.to_path_buf(),
            what: format!(
                "no devices/system/node and no {} to size the implicit node",
                meminfo.display()
            ),
        });
    };
    Ok(Node {
        id: 0,
        cpus: online.clone(),
        mem_total,
        mem_free,
        distances: vec![10],
    })
}

/// Groups the nodes' cpus into cores from `cpuN/topology/thread_siblings_list`.
fn read_cores(cpu_dir: &Path, nodes: &[Node]) -> Result<Vec<IdSet>> {
    let all = nodes.iter().fold(IdSet::new(), |acc, n| acc.union(&n.cpus));
    let mut seen = IdSet::new();
    let mut cores = Vec::new();
    for cpu in all.iter() {
        if seen.contains(cpu) {
            continue;
        }
        let path = cpu_dir.join(format!("cpu{cpu}/topology/thread_siblings_list"));
        let siblings = if path.exists() {
            // Offline siblings are not ours to hand out; keep only the cpus the nodes list.
            read_list(&path)?.intersection(&all)
        } else {
            IdSet::new()
        };
        let mut core = siblings;
        core.insert(cpu);
        for c in core.iter() {
            seen.insert(c);
        }
        cores.push(core);
    }
    Ok(cores)
}
