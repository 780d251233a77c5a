//! The five capability sets of the container process (`process.capabilities`).
//!
//! `parse_capabilities` runs in `create` before clone and turns the spec into
//! `caps` crate sets; `apply_capabilities` runs in the init after setuid.
//! Capabilities the running kernel does not know are skipped like runc does
//! (a newer spec on an older kernel must still run); capabilities the kernel
//! knows but that this process cannot hold any more (e.g. CAP_SYS_RESOURCE when
//! the host's bounding set lacks it) are skipped with a warning too, because
//! no process started from here could ever get them back.

use std::str::FromStr;

use ::caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::{Error, Result};

/// The five sets, resolved to capabilities this kernel knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Validate `process.capabilities` and resolve it against the running kernel.
///
/// An effective capability that is not permitted is an error here: the kernel
/// would refuse it at capset time, much later and with a far worse message.
pub fn parse_capabilities(c: &LinuxCapabilities) -> Result<CapSets> {
    // cap_last_cap is one read; the prctl probe is one system call per
    // capability (41), and is kept for a host without /proc.
    let kernel = ::caps::runtime::procfs_all_supported(None)
        .unwrap_or_else(|_| ::caps::runtime::thread_all_supported());
    let sets = CapSets {
        bounding: resolve("bounding", c.bounding().as_ref(), &kernel)?,
        effective: resolve("effective", c.effective().as_ref(), &kernel)?,
        permitted: resolve("permitted", c.permitted().as_ref(), &kernel)?,
        inheritable: resolve("inheritable", c.inheritable().as_ref(), &kernel)?,
        ambient: resolve("ambient", c.ambient().as_ref(), &kernel)?,
    };
    if let Some(cap) = sorted(&sets.effective)
        .into_iter()
        .find(|cap| !sets.permitted.contains(cap))
    {
        return Err(Error::spec(
            "process.capabilities.effective",
            format!("{cap} is not in process.capabilities.permitted"),
        ));
    }
    Ok(sets)
}

/// Map one spec set to `caps` capabilities; unknown-to-kernel ones are dropped.
fn resolve(set: &str, caps: Option<&Capabilities>, kernel: &CapsHashSet) -> Result<CapsHashSet> {
    let mut names: Vec<String> = caps
        .into_iter()
        .flatten()
        .map(|c| format!("CAP_{c}"))
        .collect();
    // HashSet order is random; sort so errors and logs are reproducible.
    names.sort();
    let mut out = CapsHashSet::new();
    for name in names {
        let cap = capability_from_name(&name).ok_or_else(|| {
            Error::spec(
                format!("process.capabilities.{set}"),
                format!("unknown capability {name}"),
            )
        })?;
        if kernel.contains(&cap) {
            out.insert(cap);
        } else {
            tracing::debug!(capability = %name, set, "skipped: unknown to the running kernel");
        }
    }
    Ok(out)
}

/// `CAP_FOO`, `cap_foo` or `FOO` (the spellings oci-spec accepts) to a capability.
pub(crate) fn capability_from_name(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.trim_start_matches("CAP_");
    Capability::from_str(&format!("CAP_{bare}")).ok()
}

/// PR_SET_KEEPCAPS: keep the permitted set across setuid away from uid 0.
pub fn keep_caps_across_setuid() -> Result<()> {
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS, 1)", e))
}

/// Undo `keep_caps_across_setuid` once the ids are set, so that the container
/// process cannot keep capabilities across its own later setuid calls.
pub fn clear_keep_caps() -> Result<()> {
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS, 0)", e))
}

/// Apply all five sets to the calling (single-threaded) process.
///
/// Works both before and after setuid (with keep-caps): the permitted set is
/// first made effective so that CAP_SETPCAP is available to shrink the
/// bounding set, then the base sets are written from the least to the most
/// restrictive constraint, then ambient is rebuilt.
pub fn apply_capabilities(sets: &CapSets) -> Result<()> {
    let old_p = read(CapSet::Permitted)?;
    let old_i = read(CapSet::Inheritable)?;
    // Setuid cleared the effective set; CAP_SETPCAP must be effective to drop bounding caps.
    set(CapSet::Effective, &old_p)?;

    let old_bset = read(CapSet::Bounding)?;
    for cap in sorted(&old_bset) {
        if !sets.bounding.contains(&cap) {
            ::caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                Error::security(format!("process.capabilities.bounding: drop {cap}"), e)
            })?;
        }
    }
    // What is left, without reading it back (41 more prctl calls): every
    // drop above succeeded, and the bounding set can only shrink.
    let bset: CapsHashSet = old_bset.intersection(&sets.bounding).copied().collect();

    let permitted = reachable("permitted", &sets.permitted, &old_p);
    // capset(2): new inheritable ⊆ old inheritable ∪ bounding, and without
    // CAP_SETPCAP also ⊆ old inheritable ∪ old permitted.
    let mut allowed_i: CapsHashSet = if old_p.contains(&Capability::CAP_SETPCAP) {
        bset.clone()
    } else {
        bset.intersection(&old_p).copied().collect()
    };
    allowed_i.extend(old_i.iter().copied());
    let inheritable = reachable("inheritable", &sets.inheritable, &allowed_i);
    let effective = reachable("effective", &sets.effective, &permitted);

    // Inheritable first while the old permitted set is still effective, then
    // effective before permitted (effective must stay ⊆ permitted at each step).
    set(CapSet::Inheritable, &inheritable)?;
    set(CapSet::Effective, &effective)?;
    set(CapSet::Permitted, &permitted)?;

    apply_ambient(&sets.ambient, &permitted, &inheritable)
}

/// Clear the ambient set, then raise each asked capability that the kernel
/// allows (ambient ⊆ permitted ∩ inheritable); others are skipped like runc.
fn apply_ambient(
    ambient: &CapsHashSet,
    permitted: &CapsHashSet,
    inheritable: &CapsHashSet,
) -> Result<()> {
    if let Err(e) = ::caps::clear(None, CapSet::Ambient) {
        if ambient.is_empty() {
            // Kernels before 4.3 have no ambient set: nothing to clear then.
            tracing::debug!("ambient capabilities not supported: {e}");
            return Ok(());
        }
        return Err(Error::security("process.capabilities.ambient: clear", e));
    }
    for cap in sorted(ambient) {
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            ::caps::raise(None, CapSet::Ambient, cap).map_err(|e| {
                Error::security(format!("process.capabilities.ambient: raise {cap}"), e)
            })?;
        } else {
            tracing::warn!(capability = %cap, "ambient capability skipped: not both permitted and inheritable");
        }
    }
    Ok(())
}

/// `wanted ∩ allowed`, warning about what is left out.
fn reachable(set: &str, wanted: &CapsHashSet, allowed: &CapsHashSet) -> CapsHashSet {
    for cap in sorted(wanted) {
        if !allowed.contains(&cap) {
            tracing::warn!(capability = %cap, set, "capability skipped: this process cannot hold it (host bounding set?)");
        }
    }
    wanted.intersection(allowed).copied().collect()
}

fn read(set: CapSet) -> Result<CapsHashSet> {
    ::caps::read(None, set).map_err(|e| Error::security(format!("read {set:?} capabilities"), e))
}

fn set(which: CapSet, value: &CapsHashSet) -> Result<()> {
    ::caps::set(None, which, value).map_err(|e| {
        Error::security(
            format!("set {which:?} capabilities to [{}]", names(value)),
            e,
        )
    })
}

fn sorted(set: &CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

fn names(set: &CapsHashSet) -> String {
    sorted(set)
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxCapabilities {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_oci_capability_maps_to_a_caps_capability() {
        // Each name the caps crate knows must survive the oci-spec round trip.
        for cap in ::caps::all() {
            let json = format!(r#"{{"bounding":["{cap}"]}}"#);
            let c: LinuxCapabilities = serde_json::from_str(&json).unwrap();
            let oci = c.bounding().as_ref().unwrap().iter().next().unwrap();
            assert_eq!(capability_from_name(&format!("CAP_{oci}")), Some(cap));
        }
    }

    #[test]
    fn parses_all_five_sets() {
        let c = spec(
            r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],
                "permitted":["CAP_KILL","CAP_CHOWN"],"inheritable":["CAP_CHOWN"],
                "ambient":["CAP_CHOWN"]}"#,
        );
        let s = parse_capabilities(&c).unwrap();
        assert_eq!(
            s.bounding,
            [Capability::CAP_KILL, Capability::CAP_CHOWN].into()
        );
        assert_eq!(s.effective, [Capability::CAP_KILL].into());
        assert_eq!(s.inheritable, [Capability::CAP_CHOWN].into());
        assert_eq!(s.ambient, [Capability::CAP_CHOWN].into());
    }

    #[test]
    fn effective_outside_permitted_is_refused_with_the_field() {
        let c = spec(r#"{"effective":["CAP_KILL","CAP_CHOWN"],"permitted":["CAP_CHOWN"]}"#);
        let e = parse_capabilities(&c).unwrap_err().to_string();
        assert!(e.contains("process.capabilities.effective"), "{e}");
        assert!(e.contains("CAP_KILL"), "{e}");
    }

    #[test]
    fn missing_sets_are_empty() {
        let s = parse_capabilities(&spec("{}")).unwrap();
        assert_eq!(s, CapSets::default());
    }

    #[test]
    fn names_in_any_spelling() {
        assert_eq!(capability_from_name("cap_kill"), Some(Capability::CAP_KILL));
        assert_eq!(capability_from_name("KILL"), Some(Capability::CAP_KILL));
        assert_eq!(capability_from_name("CAP_FOO"), None);
    }
}
