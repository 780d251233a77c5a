//! Placement: which node a container runs on, and which of its cpus.
//!
//! Model (the Kubernetes static CPU manager's, per node): a node's cpus are split into cpus
//! given to exclusive containers and a shared pool. Shared containers get the whole pool as
//! their cpuset and are budgeted in millicores against it; exclusive containers get whole
//! cpus, whole cores first so SMT siblings stay together. Memory is budgeted against the
//! node's `MemTotal`. When exclusive cpus leave or return to a pool, the shared containers of
//! that node get a new cpuset; the decision lists them so the caller can update their cgroups.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cpulist::IdSet;
use crate::error::{Error, Result};
use crate::request::{fmt_bytes, fmt_millicores, Policy, Request};
use crate::topology::Topology;

/// Where a container was put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub id: String,
    /// The node it is pinned to; `None` when it spans all nodes (policy none, or a preferred
    /// request larger than any node). Spanning containers are not budgeted on any node.
    pub node: Option<u32>,
    /// Its `cpuset.cpus`.
    pub cpus: IdSet,
    /// Its `cpuset.mems`.
    pub mems: IdSet,
    pub exclusive: bool,
    pub millicores: u64,
    pub memory: u64,
}

/// The strings the runtime puts in a spec's `linux.resources.cpu.{cpus,mems}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecCpuset {
    pub cpus: String,
    pub mems: String,
}

impl Placement {
    pub fn spec_cpuset(&self) -> SpecCpuset {
        SpecCpuset {
            cpus: self.cpus.to_string(),
            mems: self.mems.to_string(),
        }
    }
}

/// The outcome of `Placer::place`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub placement: Placement,
    /// Set when the request did not get what it asked for (preferred fallback), saying why.
    pub note: Option<String>,
    /// Shared containers whose cpuset changed because exclusive cpus left their pool.
    pub resized: Vec<Resized>,
}

/// A container whose cpuset must be rewritten (`rpaas-run update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resized {
    pub id: String,
    pub cpus: IdSet,
}

/// What is used on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    pub node: u32,
    /// Millicores of shared containers (may exceed the pool after a preferred fallback).
    pub shared_millicores: u64,
    pub memory: u64,
    /// Cpus given to exclusive containers.
    pub exclusive: IdSet,
}

/// Topology + placements. Everything the decisions need is kept incrementally, so a decision
/// costs O(nodes + cores of the chosen node), not O(containers).
#[derive(Debug, Clone)]
pub struct Placer {
    topo: Topology,
    placements: BTreeMap<String, Placement>,
    /// Indexed like `topo.nodes`.
    loads: Vec<NodeLoad>,
}

impl Placer {
    pub fn new(topo: Topology) -> Placer {
        let loads = topo
            .nodes
            .iter()
            .map(|n| NodeLoad {
                node: n.id,
                ..NodeLoad::default()
            })
            .collect();
        Placer {
            topo,
            placements: BTreeMap::new(),
            loads,
        }
    }

    /// A placer holding earlier placements (from the state file or a rebuild). Each one is
    /// checked against this topology, so a state file from another host is refused.
    pub fn with_placements(topo: Topology, placements: Vec<Placement>) -> Result<Placer> {
        let mut placer = Placer::new(topo);
        for p in placements {
            placer.insert(p)?;
        }
        // Cpusets are kept as recorded (they are what the cgroups hold); the next exclusive
        // change on a node reports any shared one that differs from its pool as resized.
        Ok(placer)
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn placements(&self) -> impl Iterator<Item = &Placement> {
        self.placements.values()
    }

    pub fn get(&self, id: &str) -> Option<&Placement> {
        self.placements.get(id)
    }

    pub fn loads(&self) -> &[NodeLoad] {
        &self.loads
    }

    /// The shared pool of a node: its cpus minus the exclusive ones.
    pub fn shared_pool(&self, node: u32) -> IdSet {
        match self.index(node) {
            Some(i) => self.topo.nodes[i].cpus.difference(&self.loads[i].exclusive),
            None => IdSet::new(),
        }
    }

    fn index(&self, node: u32) -> Option<usize> {
        self.topo.nodes.iter().position(|n| n.id == node)
    }

    /// Adds a known placement to the books (no decision made).
    fn insert(&mut self, p: Placement) -> Result<()> {
        if self.placements.contains_key(&p.id) {
            return Err(Error::Placement {
                id: p.id,
                what: "is already placed".into(),
            });
        }
        let all = self.topo.all_cpus();
        if !p.cpus.is_subset(&all) || p.cpus.is_empty() {
            return Err(Error::Placement {
                id: p.id.clone(),
                what: format!("cpus {} are not all cpus of this host ({all})", p.cpus),
            });
        }
        if let Some(node) = p.node {
            let i = self.index(node).ok_or_else(|| Error::Placement {
                id: p.id.clone(),
                what: format!("node {node} does not exist on this host"),
            })?;
            let load = &mut self.loads[i];
            if p.exclusive {
                if !p.cpus.is_disjoint(&load.exclusive) {
                    return Err(Error::Placement {
                        id: p.id.clone(),
                        what: format!(
                            "exclusive cpus {} overlap other exclusive cpus {}",
                            p.cpus, load.exclusive
                        ),
                    });
                }
                load.exclusive = load.exclusive.union(&p.cpus);
            } else {
                load.shared_millicores += p.millicores;
            }
            load.memory += p.memory;
        }
        self.placements.insert(p.id.clone(), p);
        Ok(())
    }

    /// Decides where `id` goes and records it.
    pub fn place(&mut self, id: &str, req: &Request) -> Result<Decision> {
        if self.placements.contains_key(id) {
            return Err(Error::Placement {
                id: id.to_string(),
                what: "is already placed; release it first".into(),
            });
        }
        self.check_possible(req)?;
        let (placement, note) = match req.policy {
            Policy::None => {
                if req.exclusive {
                    return Err(Error::BadRequest {
                        field: "exclusive",
                        what: "exclusive cores need policy single-node or preferred".into(),
                    });
                }
                (self.spanning(id, req), None)
            }
            Policy::SingleNode => match self.best_node(req) {
                Some(i) => (self.on_node(id, req, i, req.exclusive)?, None),
                None => {
                    return Err(Error::NoNodeFits {
                        request: req.to_string(),
                        detail: self.free_summary(),
                    })
                }
            },
            Policy::Preferred => match self.best_node(req) {
                Some(i) => (self.on_node(id, req, i, req.exclusive)?, None),
                None => self.fallback(id, req)?,
            },
        };
        let resized = if placement.exclusive {
            self.insert(placement.clone())?;
            self.refresh_shared(placement.node)
        } else {
            self.insert(placement.clone())?;
            Vec::new()
        };
        Ok(Decision {
            placement,
            note,
            resized,
        })
    }

    /// Forgets `id`; returns the shared containers whose cpuset grew back.
    pub fn release(&mut self, id: &str) -> Result<(Placement, Vec<Resized>)> {
        let p = self.placements.remove(id).ok_or_else(|| Error::Placement {
            id: id.to_string(),
            what: "is not placed".into(),
        })?;
        let mut resized = Vec::new();
        if let Some(i) = p.node.and_then(|n| self.index(n)) {
            let load = &mut self.loads[i];
            load.memory = load.memory.saturating_sub(p.memory);
            if p.exclusive {
                load.exclusive = load.exclusive.difference(&p.cpus);
                resized = self.refresh_shared(p.node);
            } else {
                load.shared_millicores = load.shared_millicores.saturating_sub(p.millicores);
            }
        }
        Ok((p, resized))
    }

    /// Requests no policy can ever satisfy on this host.
    fn check_possible(&self, req: &Request) -> Result<()> {
        let host_cpus = self.topo.total_cpus() as u64;
        if req.millicores > host_cpus * 1000 {
            return Err(Error::BadRequest {
                field: "cpus",
                what: format!(
                    "{} cpus asked, the host has {host_cpus}",
                    fmt_millicores(req.millicores)
                ),
            });
        }
        if req.exclusive {
            req.whole_cpus()?;
        }
        let host_mem: u64 = self.topo.nodes.iter().map(|n| n.mem_total).sum();
        if req.memory > host_mem {
            return Err(Error::BadRequest {
                field: "memory",
                what: format!(
                    "{} asked, the host has {}",
                    fmt_bytes(req.memory),
                    fmt_bytes(host_mem)
                ),
            });
        }
        Ok(())
    }

    /// Free cpu millicores and memory of node index `i`, for shared or exclusive use.
    fn free(&self, i: usize, exclusive: bool) -> (i128, i128) {
        let node = &self.topo.nodes[i];
        let load = &self.loads[i];
        let pool = node.cpus.len() as i128 - load.exclusive.len() as i128;
        let cpu = if exclusive {
            // Exclusive cpus leave the pool, which must still hold the shared containers:
            // what can be taken is the pool minus the whole cpus the shared ones need.
            let needed = (load.shared_millicores as i128 + 999) / 1000;
            (pool - needed) * 1000
        } else {
            pool * 1000 - load.shared_millicores as i128
        };
        (cpu, node.mem_total as i128 - load.memory as i128)
    }

    /// The least loaded node that fits, or None. Least loaded = the largest smaller share of
    /// free cpu and free memory, so containers spread over sockets; ties go to the lower id.
    fn best_node(&self, req: &Request) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, node) in self.topo.nodes.iter().enumerate() {
            if node.cpus.is_empty() || node.mem_total == 0 {
                continue;
            }
            let (cpu, mem) = self.free(i, req.exclusive);
            if cpu < req.millicores as i128 || mem < req.memory as i128 {
                continue;
            }
            let score = self.score(i);
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    fn score(&self, i: usize) -> f64 {
        let node = &self.topo.nodes[i];
        let (cpu, mem) = self.free(i, false);
        let cpu_share = cpu as f64 / (node.cpus.len().max(1) as f64 * 1000.0);
        let mem_share = mem as f64 / (node.mem_total.max(1) as f64);
        cpu_share.min(mem_share)
    }

    fn on_node(&self, id: &str, req: &Request, i: usize, exclusive: bool) -> Result<Placement> {
        let node = &self.topo.nodes[i];
        let cpus = if exclusive {
            self.pick_exclusive(i, req.whole_cpus()?)
        } else {
            self.shared_pool(node.id)
        };
        Ok(Placement {
            id: id.to_string(),
            node: Some(node.id),
            cpus,
            mems: std::iter::once(node.id).collect(),
            exclusive,
            millicores: req.millicores,
            memory: req.memory,
        })
    }

    /// Every shared cpu of every node, every memory node.
    fn spanning(&self, id: &str, req: &Request) -> Placement {
        let cpus = self
            .topo
            .nodes
            .iter()
            .fold(IdSet::new(), |acc, n| acc.union(&self.shared_pool(n.id)));
        Placement {
            id: id.to_string(),
            node: None,
            cpus,
            mems: self.topo.all_mems(),
            exclusive: false,
            millicores: req.millicores,
            memory: req.memory,
        }
    }

    /// Policy preferred when no node has room.
    fn fallback(&self, id: &str, req: &Request) -> Result<(Placement, Option<String>)> {
        let fits_a_node = self
            .topo
            .nodes
            .iter()
            .any(|n| n.cpus.len() as u64 * 1000 >= req.millicores && n.mem_total >= req.memory);
        if !fits_a_node {
            let p = self.spanning(id, req);
            let note = format!(
                "no node is big enough for {req}; spans all nodes (cpus {}, mems {})",
                p.cpus, p.mems
            );
            return Ok((p, Some(note)));
        }
        let i = (0..self.topo.nodes.len())
            .filter(|&i| {
                let node = &self.topo.nodes[i];
                node.mem_total > 0 && !self.shared_pool(node.id).is_empty()
            })
            .max_by(|&a, &b| {
                self.score(a)
                    .total_cmp(&self.score(b))
                    .then(self.topo.nodes[b].id.cmp(&self.topo.nodes[a].id))
            })
            .ok_or_else(|| Error::NoNodeFits {
                request: req.to_string(),
                detail: "every cpu is exclusively taken".into(),
            })?;
        let p = self.on_node(id, req, i, false)?;
        // Exclusive cpus cannot be over-committed: such a request lands in the shared pool.
        let note =
            format!(
            "no node has room for {req}; placed on node {} (least loaded), over-committed{}: {}",
            self.topo.nodes[i].id,
            if req.exclusive { ", in the shared pool" } else { "" },
            self.free_summary()
        );
        Ok((p, Some(note)))
    }

    /// Whole free cores first (ascending), then the odd cpus: first from cores already broken
    /// up, so intact cores stay intact for the next exclusive request.
    fn pick_exclusive(&self, i: usize, want: usize) -> IdSet {
        let pool = self.shared_pool(self.topo.nodes[i].id);
        let mut picked = IdSet::new();
        let mut remaining = want;
        let mut partial: Vec<IdSet> = Vec::new();
        let mut whole: Vec<IdSet> = Vec::new();
        for core in &self.topo.cores {
            let free = core.intersection(&pool);
            if free.is_empty() {
                continue;
            }
            if free.len() == core.len() {
                whole.push(free);
            } else {
                partial.push(free);
            }
        }
        // Whole cores that fit entirely.
        for core in &whole {
            if remaining >= core.len() {
                for c in core.iter() {
                    picked.insert(c);
                }
                remaining -= core.len();
            }
        }
        // The rest: broken cores first, then split an intact one.
        let untouched: Vec<IdSet> = whole
            .into_iter()
            .filter(|c| c.is_disjoint(&picked))
            .collect();
        for core in partial.iter().chain(untouched.iter()) {
            for c in core.iter() {
                if remaining == 0 {
                    break;
                }
                picked.insert(c);
                remaining -= 1;
            }
        }
        picked
    }

    /// Rewrites the cpusets of shared containers on `node` (or on every node when `None`,
    /// plus the spanning ones) to the current pools; returns the ones that changed.
    fn refresh_shared(&mut self, node: Option<u32>) -> Vec<Resized> {
        let pools: BTreeMap<u32, IdSet> = self
            .topo
            .nodes
            .iter()
            .map(|n| (n.id, self.shared_pool(n.id)))
            .collect();
        let all_shared = pools.values().fold(IdSet::new(), |acc, p| acc.union(p));
        let mut resized = Vec::new();
        for p in self.placements.values_mut() {
            if p.exclusive {
                continue;
            }
            let want = match p.node {
                Some(n) if node.is_none() || node == Some(n) => match pools.get(&n) {
                    Some(pool) => pool.clone(),
                    None => continue,
                },
                Some(_) => continue,
                None => all_shared.clone(),
            };
            if p.cpus != want && !want.is_empty() {
                p.cpus = want.clone();
                resized.push(Resized {
                    id: p.id.clone(),
                    cpus: want,
                });
            }
        }
        resized
    }

    /// "node 0: 1.5/12 cpus, 2 GiB/32 GiB; node 1: ..." for error messages.
    pub fn free_summary(&self) -> String {
        self.topo
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (cpu, mem) = self.free(i, false);
                format!(
                    "node {} free {} of {} cpus, {} of {}",
                    n.id,
                    fmt_millicores(cpu.max(0) as u64),
                    n.cpus.len(),
                    fmt_bytes(mem.max(0) as u64),
                    fmt_bytes(n.mem_total)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
