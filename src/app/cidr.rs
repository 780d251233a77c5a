//! Addresses in JSON as text (`"10.231.0.5/24"`), the way people write them.

use std::str::FromStr;

use rpaas_netsetup::IpCidr;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(c: &IpCidr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(c)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpCidr, D::Error> {
    let text = String::deserialize(d)?;
    IpCidr::from_str(&text).map_err(serde::de::Error::custom)
}

/// `Option<IpCidr>` as text.
pub mod opt {
    use super::*;

    pub fn serialize<S: Serializer>(c: &Option<IpCidr>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => s.collect_str(c),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpCidr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| IpCidr::from_str(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `Vec<IpCidr>` as a list of text.
pub mod list {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(v: &[IpCidr], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for c in v {
            seq.serialize_element(&c.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpCidr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| IpCidr::from_str(t).map_err(serde::de::Error::custom))
            .collect()
    }
}
