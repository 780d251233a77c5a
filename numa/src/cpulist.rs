//! The kernel's list format for cpus and nodes ("0-5,12-17"), as used by sysfs `cpulist`,
//! `cpuset.cpus` and `cpuset.mems`, parsed into a sorted set and printed back in ranges.
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A sorted set of cpu (or node) ids. Serialized as the kernel's list string so state files
/// stay readable and diffable against `cpuset.cpus`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdSet(BTreeSet<u32>);

/// The largest id accepted; the kernel's NR_CPUS tops out at 8192, so anything bigger is a typo
/// and would otherwise make `0-4294967295` allocate gigabytes.
const MAX_ID: u32 = 65_535;

impl IdSet {
    pub fn new() -> Self {
        Self(BTreeSet::new())
    }

    /// Parses "0-5,12-17", "3", "" (empty set) and tolerates a trailing newline, as sysfs has.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |what: String| Error::List {
            input: input.to_string(),
            what,
        };
        let mut set = BTreeSet::new();
        for part in input.trim().split(',').filter(|p| !p.trim().is_empty()) {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let lo: u32 = lo
                .trim()
                .parse()
                .map_err(|_| bad(format!("{part:?} is not a number or range")))?;
            let hi: u32 = hi
                .trim()
                .parse()
                .map_err(|_| bad(format!("{part:?} is not a number or range")))?;
            if lo > hi {
                return Err(bad(format!("range {part:?} runs backwards")));
            }
            if hi > MAX_ID {
                return Err(bad(format!("id {hi} is above {MAX_ID}")));
            }
            set.extend(lo..=hi);
        }
        Ok(Self(set))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.contains(&id)
    }

    pub fn insert(&mut self, id: u32) -> bool {
        self.0.insert(id)
    }

    pub fn remove(&mut self, id: u32) -> bool {
        self.0.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }

    pub fn union(&self, other: &IdSet) -> IdSet {
        IdSet(self.0.union(&other.0).copied().collect())
    }

    pub fn difference(&self, other: &IdSet) -> IdSet {
        IdSet(self.0.difference(&other.0).copied().collect())
    }

    pub fn intersection(&self, other: &IdSet) -> IdSet {
        IdSet(self.0.intersection(&other.0).copied().collect())
    }

    pub fn is_subset(&self, other: &IdSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_disjoint(&self, other: &IdSet) -> bool {
        self.0.is_disjoint(&other.0)
    }
}

impl FromIterator<u32> for IdSet {
    fn from_iter<T: IntoIterator<Item = u32>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Prints the kernel's compact form: consecutive ids become ranges.
impl fmt::Display for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(lo) = iter.next() {
            let mut hi = lo;
            while iter.peek() == Some(&(hi + 1)) {
                hi += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdSet({self})")
    }
}

impl Serialize for IdSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_ranges() {
        let s = IdSet::parse("0-5,12-17\n").unwrap();
        assert_eq!(s.len(), 12);
        assert!(s.contains(13) && !s.contains(6));
        assert_eq!(s.to_string(), "0-5,12-17");
        assert_eq!(IdSet::parse("3,1,2,7").unwrap().to_string(), "1-3,7");
        assert!(IdSet::parse("").unwrap().is_empty());
        assert!(IdSet::parse(" \n").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_with_the_input_named() {
        for bad in ["a", "5-3", "1-", "0-99999999", "1,,x"] {
            let err = IdSet::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn serde_roundtrip_is_the_kernel_string() {
        let s = IdSet::parse("6-11,18-23").unwrap();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"6-11,18-23\"");
        assert_eq!(serde_json::from_str::<IdSet>(&j).unwrap(), s);
    }
}
