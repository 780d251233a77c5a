//! The kernel's list format for cpus and nodes ("0-5,12-17"), as used by sysfs `cpulist`,
//! `cpuset.cpus` and `cpuset.mems`, parsed into a sorted set and printed back in ranges.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A sorted set of cpu (or node) ids, as a bitmap like the kernel's cpumask: placement does
/// unions and differences of cpu sets on every decision, and words make those cheap.
/// Serialized as the kernel's list string so state files stay readable and diffable against
/// `cpuset.cpus`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdSet {
    /// Bit i of word w is id 64*w+i. No trailing zero words, so derived equality is set
    /// equality.
    words: Vec<u64>,
}

/// The largest id accepted; the kernel's NR_CPUS tops out at 8192, so anything bigger is a typo
/// and would otherwise make `0-4294967295` allocate gigabytes.
const MAX_ID: u32 = 65_535;

impl IdSet {
    pub fn new() -> Self {
        Self { words: Vec::new() }
    }

    /// Parses "0-5,12-17", "3", "" (empty set) and tolerates a trailing newline, as sysfs has.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |what: String| Error::List {
            input: input.to_string(),
            what,
        };
        let mut set = IdSet::new();
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
            for id in lo..=hi {
                set.insert(id);
            }
        }
        Ok(set)
    }

    fn trim(mut self) -> Self {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        self
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn contains(&self, id: u32) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Adds `id`; false if it was there. Ids above the kernel's range are ignored (false).
    pub fn insert(&mut self, id: u32) -> bool {
        if id > MAX_ID {
            return false;
        }
        let (w, b) = ((id / 64) as usize, id % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let had = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !had
    }

    pub fn remove(&mut self, id: u32) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        let had = self.contains(id);
        if had {
            self.words[w] &= !(1 << b);
            let trimmed = std::mem::take(self).trim();
            *self = trimmed;
        }
        had
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let b = rest.trailing_zeros();
                rest &= rest - 1;
                Some(w as u32 * 64 + b)
            })
        })
    }

    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    fn zip_with(&self, other: &IdSet, f: impl Fn(u64, u64) -> u64) -> IdSet {
        let n = self.words.len().max(other.words.len());
        let get = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
        IdSet {
            words: (0..n)
                .map(|i| f(get(&self.words, i), get(&other.words, i)))
                .collect(),
        }
        .trim()
    }

    pub fn union(&self, other: &IdSet) -> IdSet {
        self.zip_with(other, |a, b| a | b)
    }

    pub fn difference(&self, other: &IdSet) -> IdSet {
        self.zip_with(other, |a, b| a & !b)
    }

    pub fn intersection(&self, other: &IdSet) -> IdSet {
        self.zip_with(other, |a, b| a & b)
    }

    pub fn is_subset(&self, other: &IdSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    pub fn is_disjoint(&self, other: &IdSet) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .all(|(a, b)| a & b == 0)
    }
}

impl FromIterator<u32> for IdSet {
    fn from_iter<T: IntoIterator<Item = u32>>(iter: T) -> Self {
        let mut set = IdSet::new();
        for id in iter {
            set.insert(id);
        }
        set
    }
}

/// Prints the kernel's compact form: consecutive ids become ranges.
impl fmt::Display for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.iter().peekable();
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
    fn set_algebra_across_words() {
        let a = IdSet::parse("0-5,12-17,130").unwrap();
        let b = IdSet::parse("4-13").unwrap();
        assert_eq!(a.union(&b).to_string(), "0-17,130");
        assert_eq!(a.difference(&b).to_string(), "0-3,14-17,130");
        assert_eq!(a.intersection(&b).to_string(), "4-5,12-13");
        assert!(IdSet::parse("4-5").unwrap().is_subset(&a));
        assert!(!b.is_subset(&a));
        assert!(IdSet::parse("6-11,131").unwrap().is_disjoint(&a));
        // Equality ignores how the set was built (no trailing empty words).
        let mut c = IdSet::parse("1,200").unwrap();
        c.remove(200);
        assert_eq!(c, IdSet::parse("1").unwrap());
        assert_eq!(a.difference(&a), IdSet::new());
        assert_eq!(a.len(), 13);
        assert_eq!(a.first(), Some(0));
        assert_eq!(a.iter().last(), Some(130));
    }

    #[test]
    fn serde_roundtrip_is_the_kernel_string() {
        let s = IdSet::parse("6-11,18-23").unwrap();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"6-11,18-23\"");
        assert_eq!(serde_json::from_str::<IdSet>(&j).unwrap(), s);
    }
}
