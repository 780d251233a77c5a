//! The host's address pool: the lowest free address of a range, where "used"
//! is whatever an instance record holds. Nothing else is stored, so an address
//! is free again the moment the record that held it is gone.

use std::collections::HashSet;
use std::net::IpAddr;

use rpaas_netsetup::IpCidr;

use crate::config::HostNetwork;
use crate::error::{Error, Result};

/// Whether `addr` lies in `subnet`.
pub fn contains(subnet: &IpCidr, addr: IpAddr) -> bool {
    let probe = IpCidr {
        addr,
        prefix: subnet.prefix,
    };
    addr.is_ipv4() == subnet.addr.is_ipv4() && probe.network() == subnet.network()
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, like: IpAddr) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => u32::try_from(v).ok().map(|x| IpAddr::V4(x.into())),
        IpAddr::V6(_) => Some(IpAddr::V6(v.into())),
    }
}

/// The range handed out: the configured one, or the subnet without its network
/// and broadcast addresses.
fn range(net: &HostNetwork) -> (u128, u128) {
    if let Some(r) = net.pool {
        return (to_u128(r.first), to_u128(r.last));
    }
    let bits: u32 = if net.subnet.addr.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(net.subnet.prefix);
    let base = to_u128(net.subnet.network());
    let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    (base + 1, base + size.saturating_sub(2))
}

/// The lowest address of the pool that is not `used` and not the gateway.
pub fn allocate(net: &HostNetwork, used: &HashSet<IpAddr>) -> Result<IpCidr> {
    let (first, last) = range(net);
    let gw = net.gateway.map(to_u128);
    let mut v = first;
    while v <= last {
        if Some(v) != gw {
            if let Some(a) = from_u128(v, net.subnet.addr) {
                if !used.contains(&a) {
                    return Ok(IpCidr {
                        addr: a,
                        prefix: net.subnet.prefix,
                    });
                }
            }
        }
        v += 1;
    }
    Err(Error::Resource {
        field: "hostConfig.network.pool".into(),
        reason: format!("exhausted: every address of {} is in use", net.subnet),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AddressRange, HostNetMode};

    fn net(pool: Option<(&str, &str)>) -> HostNetwork {
        HostNetwork {
            mode: HostNetMode::Bridge,
            bridge: Some("br0".into()),
            master: None,
            macvlan_mode: None,
            subnet: "10.9.0.0/29".parse().unwrap(),
            gateway: Some("10.9.0.1".parse().unwrap()),
            pool: pool.map(|(a, b)| AddressRange {
                first: a.parse().unwrap(),
                last: b.parse().unwrap(),
            }),
            host_netns: None,
            mtu: None,
        }
    }

    #[test]
    fn lowest_free_skipping_gateway_and_used() {
        let n = net(None);
        let mut used = HashSet::new();
        let a = allocate(&n, &used).unwrap();
        assert_eq!(a.to_string(), "10.9.0.2/29");
        used.insert(a.addr);
        assert_eq!(allocate(&n, &used).unwrap().to_string(), "10.9.0.3/29");
        for i in 3..=6 {
            used.insert(format!("10.9.0.{i}").parse().unwrap());
        }
        // .7 is the broadcast address of a /29.
        let e = allocate(&n, &used).unwrap_err().to_string();
        assert!(e.contains("network.pool") && e.contains("exhausted"), "{e}");
    }

    #[test]
    fn configured_range_and_membership() {
        let n = net(Some(("10.9.0.5", "10.9.0.6")));
        assert_eq!(
            allocate(&n, &HashSet::new()).unwrap().to_string(),
            "10.9.0.5/29"
        );
        assert!(contains(&n.subnet, "10.9.0.6".parse().unwrap()));
        assert!(!contains(&n.subnet, "10.9.0.8".parse().unwrap()));
    }
}
