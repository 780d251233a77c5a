//! What a container asks for: cpus (count or millicores), memory, policy, exclusive cores.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How strictly a container must sit on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// One node with room, or a refusal.
    #[default]
    SingleNode,
    /// One node with room, else the least loaded node (over-committed), and the decision says so.
    Preferred,
    /// No pinning: all cpus and all memory nodes.
    None,
}

impl FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "single-node" => Ok(Policy::SingleNode),
            "preferred" => Ok(Policy::Preferred),
            "none" => Ok(Policy::None),
            other => Err(Error::BadRequest {
                field: "policy",
                what: format!("{other:?} is not single-node, preferred or none"),
            }),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::SingleNode => "single-node",
            Policy::Preferred => "preferred",
            Policy::None => "none",
        })
    }
}

/// A placement request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// CPU in thousandths of a cpu (Kubernetes' millicores): 1500 = 1.5 cpus.
    pub millicores: u64,
    /// Memory in bytes.
    pub memory: u64,
    pub policy: Policy,
    /// Whole cpus of its own (siblings kept together) instead of the node's shared pool.
    pub exclusive: bool,
}

impl Request {
    pub fn new(millicores: u64, memory: u64, policy: Policy, exclusive: bool) -> Request {
        Request {
            millicores,
            memory,
            policy,
            exclusive,
        }
    }

    /// Whole cpus asked for when exclusive (the request must then be a whole number).
    pub fn whole_cpus(&self) -> Result<usize> {
        if self.millicores == 0 || !self.millicores.is_multiple_of(1000) {
            return Err(Error::BadRequest {
                field: "cpus",
                what: format!(
                    "exclusive cores need a whole number of cpus, got {}",
                    fmt_millicores(self.millicores)
                ),
            });
        }
        Ok((self.millicores / 1000) as usize)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cpus{} + {} ({})",
            fmt_millicores(self.millicores),
            if self.exclusive { " exclusive" } else { "" },
            fmt_bytes(self.memory),
            self.policy
        )
    }
}

/// Parses "2", "1.5" or "1500m" into millicores.
pub fn parse_cpus(s: &str) -> Result<u64> {
    let bad = || Error::BadRequest {
        field: "cpus",
        what: format!("{s:?} is not a cpu count (2, 1.5 or 1500m)"),
    };
    let t = s.trim();
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let int: u64 = int.parse().map_err(|_| bad())?;
        let frac_millis: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<3}").parse().map_err(|_| bad())?
        };
        int.checked_mul(1000)
            .and_then(|v| v.checked_add(frac_millis))
            .ok_or_else(bad)?
    };
    if millis == 0 {
        return Err(Error::BadRequest {
            field: "cpus",
            what: "must be more than 0".into(),
        });
    }
    Ok(millis)
}

/// Parses "512M", "2G", "1Gi", "1048576" into bytes (binary units, as docker's --memory does).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::BadRequest {
        field: "memory",
        what: format!("{s:?} is not a size (bytes, or with K/M/G/T suffix)"),
    };
    let t = s.trim();
    let t = t.strip_suffix('B').unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

pub fn fmt_millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{}.{:03}", m / 1000, m % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if b >= size && b.is_multiple_of(size) {
            return format!("{} {unit}", b / size);
        }
    }
    if b >= 1 << 20 {
        return format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_forms() {
        assert_eq!(parse_cpus("2").unwrap(), 2000);
        assert_eq!(parse_cpus("1.5").unwrap(), 1500);
        assert_eq!(parse_cpus("0.25").unwrap(), 250);
        assert_eq!(parse_cpus("250m").unwrap(), 250);
        for bad in ["", "0", "x", "1.2345", "-1", "1.x"] {
            assert!(
                parse_cpus(bad).unwrap_err().to_string().contains("cpus"),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots")
            .unwrap_err()
            .to_string()
            .contains("memory"));
        assert_eq!(fmt_bytes(32 << 30), "32 GiB");
        assert_eq!(fmt_millicores(1500), "1.5");
    }

    #[test]
    fn policy_names() {
        assert_eq!("preferred".parse::<Policy>().unwrap(), Policy::Preferred);
        assert!("best"
            .parse::<Policy>()
            .unwrap_err()
            .to_string()
            .contains("policy"));
    }
}
