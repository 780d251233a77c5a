//! What a container's network should look like, and its validation. Nothing
//! here touches the kernel: a spec that passes `validate` is well-formed, so
//! attach fails later only for reasons the kernel or the LAN gives.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sysctl;

/// An address with its prefix length, e.g. `10.231.0.5/24` or `fd00::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpCidr {
    /// The network address (host bits cleared), for routes.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = a.parse().map_err(|e| format!("{a:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("prefix {p:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max}"));
        }
        Ok(IpCidr { addr, prefix })
    }
}

/// macvlan modes (see ip-link(8)). `Bridge` lets siblings on one master talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    #[default]
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl FromStr for MacvlanMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bridge" => Ok(Self::Bridge),
            "private" => Ok(Self::Private),
            "vepa" => Ok(Self::Vepa),
            "passthru" => Ok(Self::Passthru),
            other => Err(format!(
                "{other:?}: expected bridge, private, vepa or passthru"
            )),
        }
    }
}

/// How the container's interface reaches the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A veth pair; the host end joins `bridge` (which holds the uplink), so the
    /// host can reach its containers.
    Bridge { bridge: String },
    /// A macvlan child of `master` (the NIC or a VLAN sub-interface). Fastest,
    /// but the host cannot reach its own macvlan children: health checks must
    /// run inside the container netns.
    Macvlan { master: String, mode: MacvlanMode },
}

/// An extra route: `dest` via `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dest: IpCidr,
    pub via: IpAddr,
}

/// The container's interface, addresses, routes and per-netns sysctls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachSpec {
    /// The container id; host-side names and the interface alias derive from it.
    pub id: String,
    pub mode: Mode,
    /// The name inside the container (default `eth0`).
    #[serde(default = "default_ifname")]
    pub ifname: String,
    /// IPv4 and/or IPv6 addresses with prefix.
    pub addresses: Vec<IpCidr>,
    /// Default gateways (at most one per family).
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    pub mtu: Option<u32>,
    /// The MAC; when absent it is derived from the first address, so a reused IP
    /// keeps its MAC and neighbours' ARP caches stay right.
    pub mac: Option<[u8; 6]>,
    /// `net.*` sysctls for the container netns, over [`default_sysctls`].
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Check the LAN for our addresses first (ARP probe for IPv4, DAD for IPv6).
    /// Costs about a second; off by default (addresses are then added `nodad`).
    #[serde(default)]
    pub probe_duplicates: bool,
}

fn default_ifname() -> String {
    "eth0".to_string()
}

/// The PaaS's TCP keepalive values: a new netns starts from the kernel's
/// defaults (7200/75/9), far too slow to notice a vanished peer.
pub fn default_sysctls() -> BTreeMap<String, String> {
    [
        ("net.ipv4.tcp_keepalive_time", "300"),
        ("net.ipv4.tcp_keepalive_intvl", "30"),
        ("net.ipv4.tcp_keepalive_probes", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

impl AttachSpec {
    /// A spec with the defaults: `eth0`, no routes, default sysctls only.
    pub fn new(id: &str, mode: Mode, addresses: Vec<IpCidr>) -> AttachSpec {
        AttachSpec {
            id: id.to_string(),
            mode,
            ifname: default_ifname(),
            addresses,
            gateways: Vec::new(),
            routes: Vec::new(),
            mtu: None,
            mac: None,
            sysctls: BTreeMap::new(),
            probe_duplicates: false,
        }
    }

    /// The sysctls to write: the defaults overlaid with the spec's.
    pub fn effective_sysctls(&self) -> BTreeMap<String, String> {
        let mut all = default_sysctls();
        all.extend(self.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// The MAC to set: given, or derived from the first address.
    pub fn effective_mac(&self) -> Option<[u8; 6]> {
        self.mac
            .or_else(|| self.addresses.first().map(|a| mac_from_ip(a.addr)))
    }

    /// Check everything that can be checked without the kernel.
    pub fn validate(&self) -> Result<()> {
        crate::names::validate_id(&self.id)?;
        validate_ifname("ifname", &self.ifname)?;
        match &self.mode {
            Mode::Bridge { bridge } => validate_ifname("mode.bridge", bridge)?,
            Mode::Macvlan { master, .. } => validate_ifname("mode.master", master)?,
        }
        if self.addresses.is_empty() {
            return Err(invalid("addresses", "at least one address is required"));
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let bad = match a.addr {
                IpAddr::V4(v) => {
                    v.is_unspecified() || v.is_multicast() || v.is_broadcast() || v.is_loopback()
                }
                IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
            };
            if bad {
                return Err(invalid(
                    format!("addresses[{i}]"),
                    format!("{a} is not a unicast host address"),
                ));
            }
        }
        let mut fams = [false, false];
        for (i, gw) in self.gateways.iter().enumerate() {
            let f = usize::from(gw.is_ipv6());
            if fams[f] {
                return Err(invalid(
                    format!("gateways[{i}]"),
                    format!("a second default gateway for the family of {gw}"),
                ));
            }
            fams[f] = true;
            if !self
                .addresses
                .iter()
                .any(|a| a.addr.is_ipv6() == gw.is_ipv6())
            {
                return Err(invalid(
                    format!("gateways[{i}]"),
                    format!("no address of the family of {gw}"),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.dest.addr.is_ipv6() != r.via.is_ipv6() {
                return Err(invalid(
                    format!("routes[{i}]"),
                    format!("{} via {}: families differ", r.dest, r.via),
                ));
            }
        }
        if let Some(mtu) = self.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(invalid("mtu", format!("{mtu} is outside 68..=65535")));
            }
        }
        if let Some(mac) = self.mac {
            if mac[0] & 1 == 1 || mac == [0; 6] {
                return Err(invalid(
                    "mac",
                    format!("{} is not a unicast address", format_mac(&mac)),
                ));
            }
        }
        for (k, v) in &self.sysctls {
            sysctl::validate(k, v).map_err(|reason| invalid(format!("sysctls.{k}"), reason))?;
        }
        Ok(())
    }
}

/// Interface names: 1..=15 bytes, no '/', ':' or whitespace (dev_valid_name).
pub(crate) fn validate_ifname(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 {
        return Err(invalid(field, format!("{name:?} must be 1 to 15 bytes")));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    Ok(())
}

/// A locally administered unicast MAC from an IP: `02:72` then the last four
/// bytes of the address (like the 0a:58 scheme some CNI plugins use).
pub fn mac_from_ip(ip: IpAddr) -> [u8; 6] {
    let o: [u8; 4] = match ip {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(v) => {
            let b = v.octets();
            [b[12], b[13], b[14], b[15]]
        }
    };
    [0x02, 0x72, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> std::result::Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?}: expected six hex bytes separated by ':'"));
    }
    let mut mac = [0u8; 6];
    for (slot, p) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(p, 16).map_err(|e| format!("{s:?}: {p:?}: {e}"))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AttachSpec {
        AttachSpec::new(
            "web-1",
            Mode::Bridge {
                bridge: "br0".into(),
            },
            vec![
                "10.231.0.5/24".parse().unwrap(),
                "fd00:231::5/64".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn cidr_parse_and_network() {
        let c: IpCidr = "10.231.7.9/20".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.231.0.0");
        let c6: IpCidr = "fd00:231::5/64".parse().unwrap();
        assert_eq!(c6.network().to_string(), "fd00:231::");
        assert!("10.0.0.1/33".parse::<IpCidr>().unwrap_err().contains("/33"));
        assert!("10.0.0.1".parse::<IpCidr>().is_err());
        let z: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(z.network().to_string(), "0.0.0.0");
    }

    #[test]
    fn mac_derived_from_ip_is_stable_and_local() {
        let s = spec();
        let mac = s.effective_mac().unwrap();
        assert_eq!(format_mac(&mac), "02:72:0a:e7:00:05");
        assert_eq!(parse_mac("02:72:0a:e7:00:05").unwrap(), mac);
        assert!(parse_mac("02:72").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = spec();
        s.validate().unwrap();
        s.ifname = "a-very-long-interface".into();
        assert!(s.validate().unwrap_err().to_string().contains("ifname"));
        let mut s = spec();
        s.gateways = vec!["10.231.0.1".parse().unwrap(), "10.231.0.2".parse().unwrap()];
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("gateways[1]"));
        let mut s = spec();
        s.sysctls.insert("kernel.pid_max".into(), "1".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sysctls.kernel.pid_max"));
        let mut s = spec();
        s.mtu = Some(10);
        assert!(s.validate().unwrap_err().to_string().contains("mtu"));
        let mut s = spec();
        s.mac = Some([1, 0, 0, 0, 0, 1]);
        assert!(s.validate().unwrap_err().to_string().contains("mac"));
    }

    #[test]
    fn sysctl_defaults_are_overridden_by_the_spec() {
        let mut s = spec();
        s.sysctls
            .insert("net.ipv4.tcp_keepalive_time".into(), "60".into());
        let eff = s.effective_sysctls();
        assert_eq!(eff["net.ipv4.tcp_keepalive_time"], "60");
        assert_eq!(eff["net.ipv4.tcp_keepalive_probes"], "5");
    }
}
