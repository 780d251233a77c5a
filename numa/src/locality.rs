//! Where a container's memory really is, per node, from `memory.numa_stat`.
//!
//! v1 prints pages: `total=N N0=a N1=b` (the cgroup itself) and `hierarchical_total=...`
//! (with its sub-cgroups), one line per LRU family. v2 prints bytes: `anon N0=a N1=b`,
//! `file ...` (file includes shmem/tmpfs), always hierarchical. We count what a container
//! owns on the LRUs: v1 `hierarchical_total`, v2 `anon + file`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::{check_cgroup_path, CgroupRoots};

/// Bytes of a cgroup's memory on each node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locality {
    pub path: PathBuf,
    pub per_node: BTreeMap<u32, u64>,
}

impl Locality {
    pub fn total(&self) -> u64 {
        self.per_node.values().sum()
    }

    /// Share of the memory on `node`, 0.0..=1.0 (1.0 for a cgroup that has none yet).
    pub fn share(&self, node: u32) -> f64 {
        let total = self.total();
        if total == 0 {
            return 1.0;
        }
        self.per_node.get(&node).copied().unwrap_or(0) as f64 / total as f64
    }

    /// Percent on the nodes in `nodes` (its cpuset.mems): the "locality" an operator watches.
    pub fn percent_on(&self, nodes: impl IntoIterator<Item = u32>) -> f64 {
        nodes.into_iter().map(|n| self.share(n)).sum::<f64>() * 100.0
    }
}

/// Reads the `memory.numa_stat` of cgroup `cgroup` under `roots`.
pub fn locality(roots: &CgroupRoots, cgroup: &Path) -> Result<Locality> {
    check_cgroup_path(cgroup)?;
    let path = roots.memory_dir(cgroup).join("memory.numa_stat");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let per_node = if roots.is_v2() {
        parse_v2(&text, &path)?
    } else {
        parse_v1(&text, &path, page_size())?
    };
    Ok(Locality { path, per_node })
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(4096)
}

/// "N0=12 N1=34" → {0: 12, 1: 34}
fn node_values(fields: &[&str], path: &Path) -> Result<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for f in fields {
        let Some((node, value)) = f.strip_prefix('N').and_then(|f| f.split_once('=')) else {
            continue;
        };
        let (Ok(node), Ok(value)) = (node.parse::<u32>(), value.parse::<u64>()) else {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                what: format!("bad per-node field {f:?}"),
            });
        };
        out.insert(node, value);
    }
    Ok(out)
}

pub fn parse_v1(text: &str, path: &Path, page: u64) -> Result<BTreeMap<u32, u64>> {
    // Prefer the hierarchical line: a container may have sub-cgroups of its own.
    for key in ["hierarchical_total=", "total="] {
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first().is_some_and(|f| f.starts_with(key)) {
                let pages = node_values(&fields[1..], path)?;
                return Ok(pages.into_iter().map(|(n, p)| (n, p * page)).collect());
            }
        }
    }
    Err(Error::Parse {
        path: path.to_path_buf(),
        what: "no total= line (is this a v1 memory.numa_stat?)".into(),
    })
}

pub fn parse_v2(text: &str, path: &Path) -> Result<BTreeMap<u32, u64>> {
    let mut out: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if matches!(fields.first(), Some(&"anon") | Some(&"file")) {
            seen = true;
            for (n, v) in node_values(&fields[1..], path)? {
                *out.entry(n).or_default() += v;
            }
        }
    }
    if !seen {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            what: "no anon/file lines (is this a v2 memory.numa_stat?)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_pages_to_bytes_prefers_hierarchical() {
        let text = "total=10 N0=10 N1=0\nfile=4 N0=4 N1=0\nanon=6 N0=6 N1=0\n\
                    hierarchical_total=30 N0=10 N1=20\n";
        let m = parse_v1(text, Path::new("x"), 4096).unwrap();
        assert_eq!(m[&0], 10 * 4096);
        assert_eq!(m[&1], 20 * 4096);
    }

    #[test]
    fn v2_sums_anon_and_file_only() {
        let text = "anon N0=100 N1=1000\nfile N0=0 N1=3000\nshmem N0=0 N1=3000\n\
                    kernel_stack N0=8192 N1=0\n";
        let m = parse_v2(text, Path::new("x")).unwrap();
        assert_eq!(m[&0], 100);
        assert_eq!(m[&1], 4000);
        let l = Locality {
            path: "x".into(),
            per_node: m,
        };
        assert!((l.percent_on([1]) - 97.56).abs() < 0.01);
    }

    #[test]
    fn wrong_format_names_the_file() {
        let e = parse_v2("total=1 N0=1\n", Path::new("/cg/memory.numa_stat")).unwrap_err();
        assert!(e.to_string().contains("/cg/memory.numa_stat"));
        let e = parse_v1("anon N0=x\n", Path::new("/cg/v1"), 4096).unwrap_err();
        assert!(e.to_string().contains("/cg/v1"));
    }
}
