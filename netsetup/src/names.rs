//! Host-side names derived from the container id. Linux caps interface names at
//! 15 bytes, so a long id cannot be used as is: we hash it (FNV-1a, 64 bits) and
//! keep 48 bits in hex. Two ids mapping to one name is astronomically unlikely,
//! and still caught: every interface we make carries the full id in its alias
//! (`rpaas:<id>`), and attach refuses a name whose alias is someone else's.
use crate::error::{Error, Result};

/// The prefix of every interface alias we set.
pub const ALIAS_PREFIX: &str = "rpaas:";

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn short_hash(id: &str) -> String {
    format!("{:012x}", fnv1a(id.as_bytes()) & 0xffff_ffff_ffff)
}

/// The host end of the veth pair (`rpv` + 12 hex = 15 bytes).
pub fn host_veth(id: &str) -> String {
    format!("rpv{}", short_hash(id))
}

/// The temporary name of the container-side interface, used while it is being
/// configured in the target netns, before the rename to its final name.
pub fn temp_name(id: &str) -> String {
    format!("rpt{}", short_hash(id))
}

/// The alias every interface made for `id` carries.
pub fn alias(id: &str) -> String {
    format!("{ALIAS_PREFIX}{id}")
}

/// Ids are printable ASCII without spaces (they go into interface aliases,
/// whose kernel limit is 255 bytes).
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec {
            field: "id".into(),
            reason: format!("{id:?} must be 1 to 200 printable ASCII characters without spaces"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_fit_and_are_stable() {
        let id = "a-container-id-that-is-much-longer-than-fifteen-bytes-0123456789abcdef";
        assert_eq!(host_veth(id).len(), 15);
        assert_eq!(temp_name(id).len(), 15);
        assert_eq!(host_veth(id), host_veth(id));
        assert_ne!(host_veth(id), temp_name(id));
        assert_eq!(alias(id), format!("rpaas:{id}"));
    }

    #[test]
    fn no_collisions_among_many_similar_ids() {
        let mut seen = HashSet::new();
        for i in 0..100_000 {
            assert!(
                seen.insert(host_veth(&format!("web-{i}"))),
                "collision at web-{i}"
            );
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(validate_id("").is_err());
        assert!(validate_id("has space").is_err());
        assert!(validate_id(&"x".repeat(201)).is_err());
        validate_id("web-1_ok.2").unwrap();
    }
}
