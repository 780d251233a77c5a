//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the
//! container's process, set by init with set_mempolicy(2) at the end of its
//! setup. A task's memory policy is kept across execve and inherited by its
//! children, so the container's program and everything it forks allocate
//! under it.
//!
//! oci-spec 0.10 parses the field (`LinuxMemoryPolicy`: a mode, a node list
//! string, flags), so no raw JSON is read here; what the types cannot say
//! (the node list's syntax, which modes need or forbid nodes, flags that
//! exclude each other, nodes this host lacks) is checked by [`plan`] in
//! `create` before anything is made, each refusal naming its field.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Spec};

use crate::{Error, Result};

/// Nodes above this are refused: the kernel's MAX_NUMNODES is at most 1024
/// (CONFIG_NODES_SHIFT ≤ 10).
pub const MAX_NODES: usize = 1024;

const WORD_BITS: usize = std::mem::size_of::<libc::c_ulong>() * 8;

/// The modes and flags this runtime passes to the kernel (what `features` lists).
pub const MODES: [&str; 7] = [
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];
pub const FLAGS: [&str; 3] = [
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// A validated policy, ready for set_mempolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    mode: MemoryPolicyModeType,
    flags: libc::c_int,
    /// The node mask, one bit per node (empty for MPOL_DEFAULT / MPOL_LOCAL
    /// and for MPOL_PREFERRED without nodes, which means "local").
    mask: Vec<libc::c_ulong>,
    nodes: String,
}

/// Validate `linux.memoryPolicy`; `None` when the config has none.
pub fn plan(spec: &Spec) -> Result<Option<Policy>> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        Some(p) => from_spec(p, &online_nodes()).map(Some),
        None => Ok(None),
    }
}

/// Init's step: set the policy of the calling task (a no-op without
/// `linux.memoryPolicy`). The host's nodes were checked by [`plan`] in
/// `create`; init's /sys may be the container's or absent.
pub fn apply(spec: &Spec) -> Result<()> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        Some(p) => from_spec(p, &None)?.set(),
        None => Ok(()),
    }
}

fn mode_number(mode: MemoryPolicyModeType) -> libc::c_int {
    // The kernel's enum (include/uapi/linux/mempolicy.h); libc lacks the two newest.
    match mode {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    }
}

/// The host's online nodes (`/sys/devices/system/node/online`); `None` where
/// the kernel has no NUMA sysfs (the kernel then judges the mask itself).
fn online_nodes() -> Option<Vec<usize>> {
    let text = std::fs::read_to_string("/sys/devices/system/node/online").ok()?;
    parse_nodes(text.trim()).ok()
}

/// Parse a node list such as "0-1,3" (the format of cpuset.mems).
pub fn parse_nodes(list: &str) -> std::result::Result<Vec<usize>, String> {
    let mut nodes = Vec::new();
    if list.is_empty() {
        return Ok(nodes);
    }
    for part in list.split(',') {
        let num = |s: &str| -> std::result::Result<usize, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{part:?} is not a node number or a range like 0-3"));
            }
            match s.parse::<usize>() {
                Ok(n) if n < MAX_NODES => Ok(n),
                _ => Err(format!("node {s} is out of range (0-{})", MAX_NODES - 1)),
            }
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range {part:?} goes backwards"));
        }
        nodes.extend(lo..=hi);
    }
    nodes.sort_unstable();
    nodes.dedup();
    Ok(nodes)
}

fn from_spec(p: &LinuxMemoryPolicy, online: &Option<Vec<usize>>) -> Result<Policy> {
    const FIELD: &str = "linux.memoryPolicy";
    let mode = p.mode();
    let mode_name = mode.to_string();
    let text = p.nodes().as_deref().unwrap_or("").trim();
    let nodes = parse_nodes(text).map_err(|e| Error::spec(format!("{FIELD}.nodes"), e))?;

    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => libc::MPOL_F_NUMA_BALANCING,
            MemoryPolicyFlagType::MpolFRelativeNodes => libc::MPOL_F_RELATIVE_NODES,
            MemoryPolicyFlagType::MpolFStaticNodes => libc::MPOL_F_STATIC_NODES,
        };
    }
    let placement = libc::MPOL_F_STATIC_NODES | libc::MPOL_F_RELATIVE_NODES;
    if flags & placement == placement {
        return Err(Error::spec(
            format!("{FIELD}.flags"),
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        ));
    }
    if flags & libc::MPOL_F_NUMA_BALANCING != 0
        && !matches!(
            mode,
            MemoryPolicyModeType::MpolBind | MemoryPolicyModeType::MpolPreferredMany
        )
    {
        return Err(Error::spec(
            format!("{FIELD}.flags"),
            format!("MPOL_F_NUMA_BALANCING goes only with MPOL_BIND or MPOL_PREFERRED_MANY, not {mode_name}"),
        ));
    }
    match mode {
        MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal => {
            if !nodes.is_empty() {
                return Err(Error::spec(
                    format!("{FIELD}.nodes"),
                    format!("must be empty with {mode_name}"),
                ));
            }
            if mode == MemoryPolicyModeType::MpolLocal && flags & placement != 0 {
                return Err(Error::spec(
                    format!("{FIELD}.flags"),
                    "MPOL_LOCAL takes no node flags",
                ));
            }
        }
        // An empty MPOL_PREFERRED is the kernel's "allocate locally".
        MemoryPolicyModeType::MpolPreferred => {}
        _ => {
            if nodes.is_empty() {
                return Err(Error::spec(
                    format!("{FIELD}.nodes"),
                    format!("{mode_name} needs at least one node"),
                ));
            }
        }
    }
    // Relative nodes are indices into the allowed set, not node numbers.
    if flags & libc::MPOL_F_RELATIVE_NODES == 0 {
        if let Some(online) = online {
            if let Some(n) = nodes.iter().find(|n| !online.contains(n)) {
                return Err(Error::spec(
                    format!("{FIELD}.nodes"),
                    format!(
                        "node {n} is not online on this host (online: {})",
                        list(online)
                    ),
                ));
            }
        }
    }
    let mut mask = Vec::new();
    if let Some(&max) = nodes.last() {
        mask = vec![0; max / WORD_BITS + 1];
        for n in &nodes {
            mask[n / WORD_BITS] |= 1 << (n % WORD_BITS);
        }
    }
    Ok(Policy {
        mode,
        flags,
        mask,
        nodes: text.to_string(),
    })
}

fn list(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Policy {
    /// set_mempolicy(2) for the calling task.
    pub fn set(&self) -> Result<()> {
        let (ptr, maxnode) = if self.mask.is_empty() {
            (std::ptr::null(), 0)
        } else {
            // The kernel reads maxnode - 1 bits.
            (
                self.mask.as_ptr(),
                (self.mask.len() * WORD_BITS + 1) as libc::c_ulong,
            )
        };
        // SAFETY: the mask pointer is null or points at `mask.len()` words,
        // which cover the maxnode - 1 bits the kernel reads; nothing is written.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                mode_number(self.mode) | self.flags,
                ptr,
                maxnode,
            )
        };
        if rc != 0 {
            let errno = nix::errno::Errno::last();
            let why = match errno {
                nix::errno::Errno::EINVAL => {
                    " (no node of the list is in the container's cpuset.mems, or the kernel lacks this mode or flag)"
                }
                nix::errno::Errno::ENOSYS => " (the kernel has no NUMA support)",
                _ => "",
            };
            return Err(Error::spec(
                "linux.memoryPolicy",
                format!(
                    "set_mempolicy {} nodes {:?}: {errno}{why}",
                    self.mode, self.nodes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).expect("policy json")
    }

    fn check(json: &str) -> Result<Policy> {
        from_spec(&policy(json), &Some(vec![0, 1]))
    }

    #[test]
    fn node_lists_parse_like_cpuset_mems() {
        assert_eq!(parse_nodes("0-2,5,1").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_nodes("").unwrap(), Vec::<usize>::new());
        for bad in [
            "a",
            "1-",
            "-1",
            "3-1",
            "0,,1",
            "1024",
            " 1",
            "99999999999999999999",
        ] {
            assert!(parse_nodes(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bind_builds_the_mask() {
        let p =
            check(r#"{"mode":"MPOL_BIND","nodes":"0-1","flags":["MPOL_F_STATIC_NODES"]}"#).unwrap();
        assert_eq!(p.mask, vec![0b11]);
        assert_eq!(p.flags, libc::MPOL_F_STATIC_NODES);
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, field) in [
            (r#"{"mode":"MPOL_BIND"}"#, "linux.memoryPolicy.nodes"),
            (
                r#"{"mode":"MPOL_BIND","nodes":"7"}"#,
                "linux.memoryPolicy.nodes",
            ),
            (
                r#"{"mode":"MPOL_BIND","nodes":"x"}"#,
                "linux.memoryPolicy.nodes",
            ),
            (
                r#"{"mode":"MPOL_LOCAL","nodes":"0"}"#,
                "linux.memoryPolicy.nodes",
            ),
            (
                r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#,
                "linux.memoryPolicy.flags",
            ),
            (
                r#"{"mode":"MPOL_INTERLEAVE","nodes":"0","flags":["MPOL_F_NUMA_BALANCING"]}"#,
                "linux.memoryPolicy.flags",
            ),
        ] {
            let err = check(json).expect_err(json).to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn relative_nodes_are_not_host_nodes() {
        check(r#"{"mode":"MPOL_BIND","nodes":"5","flags":["MPOL_F_RELATIVE_NODES"]}"#).unwrap();
    }

    #[test]
    fn every_listed_mode_and_flag_parses() {
        for m in MODES {
            policy(&format!(r#"{{"mode":"{m}"}}"#));
        }
        for f in FLAGS {
            policy(&format!(r#"{{"mode":"MPOL_BIND","flags":["{f}"]}}"#));
        }
    }
}
