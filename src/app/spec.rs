//! What an agent asks for: an app (`AppSpec`), read from JSON with camelCase keys.
//! Unknown fields are refused with their path (`resources.cpu`), and `validate`
//! checks everything that can be checked without touching the host, so a bad spec
//! is refused before anything is created.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use rpaas_netsetup::{IpCidr, MacvlanMode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One app: an image run as `instances` identical instances named `<name>-<n>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    pub name: String,
    /// An image name in the host's image store (imported or prefetched), or a
    /// registry reference pulled at deploy when the store lacks it.
    pub image: String,
    #[serde(default = "one")]
    pub instances: u32,
    /// Replaces the image's Entrypoint + Cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// "name", "uid" or "uid:gid", resolved in the image's /etc/passwd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Files written into each instance's writable layer (never bind-mounted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub numa: NumaSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    /// `nofile`, `nproc`, … → a number (soft = hard) or `{soft, hard}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rlimits: BTreeMap<String, Rlimit>,
    #[serde(default)]
    pub stop: StopSpec,
    /// Startup, liveness and readiness probes (run by `Host::supervise`).
    #[serde(default, skip_serializing_if = "crate::probe::HealthSpec::is_empty")]
    pub health: crate::probe::HealthSpec,
    /// When an ended or unhealthy instance is started again, and the backoff.
    #[serde(default, skip_serializing_if = "crate::probe::RestartSpec::is_default")]
    pub restart: crate::probe::RestartSpec,
}

fn one() -> u32 {
    1
}

/// A file for the writable layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    /// A file on the host, read at each instance's creation.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub dest: PathBuf,
    /// Octal string ("0644") or number; default 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// "uid" or "uid:gid" (numbers); default 0:0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A file mode: `"0640"` or `416`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Mode {
    Number(u32),
    Octal(String),
}

/// A size: bytes, or a string with a K/M/G/T suffix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    pub fn bytes(&self, field: &str) -> Result<u64> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => rpaas_numa::parse_size(t).map_err(|_| Error::Spec {
                field: field.to_string(),
                reason: format!("{t:?} is not a size (bytes, or with a K/M/G/T suffix)"),
            }),
        }
    }
}

/// Limits of each instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU in millicores (1000 = one cpu): the CFS quota, and the NUMA budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Memory + swap (cgroup v1 `memsw`); -1 unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// cgroup v1 only (v2 has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// How an instance sits on the host's NUMA nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NumaSpec {
    /// `single-node`, `preferred` or `none`; default: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<rpaas_numa::Policy>,
    /// Whole cpus of its own (needs `resources.cpus` in whole cpus).
    #[serde(default)]
    pub exclusive: bool,
}

/// How the instance reaches the LAN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// The host's default (`HostConfig.network.mode`), or none without one.
    #[default]
    Default,
    Bridge,
    Macvlan,
    /// Its own netns with loopback only.
    None,
}

/// The instance's public interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub mode: NetMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvlan_mode: Option<MacvlanMode>,
    /// One address per instance, in instance order (`<name>-1` gets the first);
    /// empty: taken from the host's pool.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::app::cidr::list"
    )]
    pub addresses: Vec<IpCidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `net.*` sysctls of the instance's netns, over the host's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

/// An extra route of the instance: `dest` (an address with prefix) via `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(with = "crate::app::cidr")]
    pub dest: IpCidr,
    pub via: IpAddr,
}

impl From<Route> for rpaas_netsetup::RouteSpec {
    fn from(r: Route) -> Self {
        rpaas_netsetup::RouteSpec {
            dest: r.dest,
            via: r.via,
        }
    }
}

/// An rlimit: one number for soft and hard, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rlimit {
    Both(u64),
    Pair { soft: u64, hard: u64 },
}

impl Rlimit {
    pub fn soft_hard(self) -> (u64, u64) {
        match self {
            Rlimit::Both(n) => (n, n),
            Rlimit::Pair { soft, hard } => (soft, hard),
        }
    }
}

/// How an instance is stopped: `signal`, then SIGKILL after `grace` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopSpec {
    #[serde(default = "default_stop_signal")]
    pub signal: String,
    #[serde(default = "default_grace")]
    pub grace: f64,
}

fn default_stop_signal() -> String {
    "SIGTERM".into()
}

fn default_grace() -> f64 {
    10.0
}

impl Default for StopSpec {
    fn default() -> StopSpec {
        StopSpec {
            signal: default_stop_signal(),
            grace: default_grace(),
        }
    }
}

/// The rlimit names the runtime knows, as `RLIMIT_<NAME>`.
const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Spec {
        field: field.into(),
        reason: reason.into(),
    }
}

impl AppSpec {
    /// Parse JSON, naming the path of a field that does not fit.
    pub fn from_json(bytes: &[u8]) -> Result<AppSpec> {
        let spec: AppSpec = parse_json(bytes)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Everything that can be checked without the host.
    pub fn validate(&self) -> Result<()> {
        validate_app_name(&self.name)?;
        if self.image.trim().is_empty() {
            return Err(bad("image", "is empty"));
        }
        if let Some(c) = &self.command {
            if c.is_empty() || c[0].is_empty() {
                return Err(bad("command", "needs at least a program"));
            }
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(bad(format!("env.{k}"), "not a variable name"));
            }
        }
        if let Some(w) = &self.working_dir {
            if !w.starts_with('/') {
                return Err(bad("workingDir", format!("{w:?} is not absolute")));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            f.validate(&format!("files[{i}]"))?;
        }
        self.resources.validate()?;
        if self.numa.exclusive {
            match self.resources.cpus {
                Some(m) if m > 0 && m % 1000 == 0 => {}
                _ => {
                    return Err(bad(
                        "numa.exclusive",
                        "needs resources.cpus in whole cpus (a multiple of 1000)",
                    ))
                }
            }
        }
        self.network.validate(self.instances)?;
        for (k, v) in &self.rlimits {
            if !RLIMITS.contains(&k.as_str()) {
                return Err(bad(
                    format!("rlimits.{k}"),
                    format!("unknown limit; one of {}", RLIMITS.join(", ")),
                ));
            }
            let (s, h) = v.soft_hard();
            if s > h {
                return Err(bad(format!("rlimits.{k}"), format!("soft {s} > hard {h}")));
            }
        }
        if crate::signal::parse(&self.stop.signal).is_none() {
            return Err(bad(
                "stop.signal",
                format!("{:?} is not a signal", self.stop.signal),
            ));
        }
        if !(self.stop.grace.is_finite() && (0.0..=3600.0).contains(&self.stop.grace)) {
            return Err(bad("stop.grace", "must be 0 to 3600 seconds"));
        }
        self.health.validate()?;
        self.restart.validate()?;
        Ok(())
    }

    /// Memory limit in bytes, if any.
    pub fn memory_bytes(&self) -> Result<Option<u64>> {
        self.resources
            .memory
            .as_ref()
            .map(|m| m.bytes("resources.memory"))
            .transpose()
    }
}

/// Parse JSON into `T`, naming the path of what does not fit and refusing
/// trailing data.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            "(document)".into()
        } else {
            path
        };
        bad(field, first_clause(&inner.to_string()))
    })?;
    de.end()
        .map_err(|e| bad("(document)", format!("trailing data: {e}")))?;
    Ok(v)
}

/// serde_json's message without its " at line L column C" tail (the path says where).
fn first_clause(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// App names become instance names (`<app>-<n>`), container ids, cgroup and
/// interface-name parts: short, lower-case, DNS-label-like.
pub fn validate_app_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "name",
            format!("{name:?}: use 1-40 of a-z, 0-9 and '-', starting with a letter"),
        ))
    }
}

impl FileEntry {
    fn validate(&self, field: &str) -> Result<()> {
        if !self.dest.is_absolute() {
            return Err(bad(
                format!("{field}.dest"),
                format!("{} is not absolute", self.dest.display()),
            ));
        }
        self.mode_bits(field)?;
        self.owner_ids(field)?;
        Ok(())
    }

    pub fn mode_bits(&self, field: &str) -> Result<u32> {
        let m = match &self.mode {
            None => 0o644,
            Some(Mode::Number(n)) => *n,
            Some(Mode::Octal(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .map_err(|_| bad(format!("{field}.mode"), format!("{s:?} is not octal")))?,
        };
        if m > 0o7777 {
            return Err(bad(format!("{field}.mode"), format!("{m:o} is over 7777")));
        }
        Ok(m)
    }

    pub fn owner_ids(&self, field: &str) -> Result<(u32, u32)> {
        let Some(o) = &self.owner else {
            return Ok((0, 0));
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|n| *n != u32::MAX)
                .ok_or_else(|| bad(format!("{field}.owner"), format!("{o:?} is not uid[:gid]")))
        };
        match o.split_once(':') {
            Some((u, g)) => Ok((num(u)?, num(g)?)),
            None => {
                let u = num(o)?;
                Ok((u, u))
            }
        }
    }
}

impl Resources {
    fn validate(&self) -> Result<()> {
        if let Some(c) = self.cpus {
            if c == 0 || c > 1_000_000 {
                return Err(bad("resources.cpus", "millicores must be 1 to 1000000"));
            }
        }
        if let Some(m) = &self.memory {
            let b = m.bytes("resources.memory")?;
            if b < (4 << 20) {
                return Err(bad(
                    "resources.memory",
                    format!("{b} bytes is below 4 MiB: the container could not start"),
                ));
            }
        }
        if let Some(s) = self.memory_swap {
            if s < -1 || s == 0 {
                return Err(bad("resources.memorySwap", "must be -1 or a positive size"));
            }
        }
        if let Some(s) = self.swappiness {
            if s > 100 {
                return Err(bad("resources.swappiness", "must be 0 to 100"));
            }
        }
        if let Some(p) = self.pids {
            if p == 0 || p < -1 {
                return Err(bad("resources.pids", "must be -1 or a positive count"));
            }
        }
        Ok(())
    }
}

impl NetworkSpec {
    fn validate(&self, instances: u32) -> Result<()> {
        match self.mode {
            NetMode::Bridge if self.master.is_some() => {
                return Err(bad("network.master", "is for macvlan mode"))
            }
            NetMode::Macvlan if self.bridge.is_some() => {
                return Err(bad("network.bridge", "is for bridge mode"))
            }
            NetMode::None if !self.addresses.is_empty() => {
                return Err(bad("network.addresses", "mode none takes no address"))
            }
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.addresses.iter().enumerate() {
            if !seen.insert(a.addr) {
                return Err(bad(format!("network.addresses[{i}]"), format!("{a} twice")));
            }
        }
        if !self.addresses.is_empty() && (self.addresses.len() as u64) < u64::from(instances) {
            return Err(bad(
                "network.addresses",
                format!(
                    "{} addresses for {instances} instances (give one each, or none to use the pool)",
                    self.addresses.len()
                ),
            ));
        }
        if let Some(mtu) = self.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(bad("network.mtu", format!("{mtu} is outside 68..=65535")));
            }
        }
        for (k, v) in &self.sysctls {
            rpaas_netsetup::sysctl::validate(k, v)
                .map_err(|r| bad(format!("network.sysctls.{k}"), r))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AppSpec> {
        AppSpec::from_json(s.as_bytes())
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = parse(r#"{"name":"web","image":"demo/web:1.0"}"#).expect("parse");
        assert_eq!(s.instances, 1);
        assert_eq!(s.stop.signal, "SIGTERM");
        assert_eq!(s.network.mode, NetMode::Default);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = parse(r#"{"name":"web","image":"i","resources":{"cpu":1}}"#).unwrap_err();
        assert!(e.to_string().contains("resources.cpu"), "{e}");
        let e = parse(r#"{"name":"web","image":"i","files":[{"source":"/a","dest":"/b","x":1}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("files[0]"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (json, field) in [
            (r#"{"name":"Web","image":"i"}"#, "name"),
            (
                r#"{"name":"web","image":"i","files":[{"source":"/a","dest":"b"}]}"#,
                "files[0].dest",
            ),
            (
                r#"{"name":"web","image":"i","files":[{"source":"/a","dest":"/b","mode":"99"}]}"#,
                "files[0].mode",
            ),
            (
                r#"{"name":"web","image":"i","resources":{"memory":"12Q"}}"#,
                "resources.memory",
            ),
            (
                r#"{"name":"web","image":"i","rlimits":{"nofiles":5}}"#,
                "rlimits.nofiles",
            ),
            (
                r#"{"name":"web","image":"i","stop":{"signal":"SIGNOPE"}}"#,
                "stop.signal",
            ),
            (
                r#"{"name":"web","image":"i","instances":3,"network":{"mode":"bridge","addresses":["10.0.0.2/24"]}}"#,
                "network.addresses",
            ),
            (
                r#"{"name":"web","image":"i","numa":{"exclusive":true},"resources":{"cpus":1500}}"#,
                "numa.exclusive",
            ),
            (r#"{"name":"web","image":"i"} x"#, "(document)"),
        ] {
            let e = parse(json).expect_err(json).to_string();
            assert!(e.contains(field), "{json}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn sizes_modes_and_owners() {
        let s = parse(
            r#"{"name":"web","image":"i","resources":{"memory":"256M"},
               "files":[{"source":"/a","dest":"/b","mode":"0600","owner":"1000:1001"}]}"#,
        )
        .unwrap();
        assert_eq!(s.memory_bytes().unwrap(), Some(256 << 20));
        assert_eq!(s.files[0].mode_bits("f").unwrap(), 0o600);
        assert_eq!(s.files[0].owner_ids("f").unwrap(), (1000, 1001));
    }
}
