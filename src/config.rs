//! The host's configuration (`HostConfig`): where state and data live, which
//! snapshotter, the LAN instances join, NUMA and per-container defaults. JSON
//! with camelCase keys, like the `AppSpec`; every field has a default that works
//! on a fresh host.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rpaas_netsetup::{IpCidr, MacvlanMode};
use serde::{Deserialize, Serialize};

use crate::app::spec::{parse_json, Rlimit};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// Runtime state (`rpaas-run --root`): tmpfs, so a reboot clears it.
    #[serde(default = "default_state_root")]
    pub state_root: PathBuf,
    /// Desired state, the image store, writable layers: persistent.
    #[serde(default = "default_data_root")]
    pub data_root: PathBuf,
    /// The `rpaas-run` binary; default: beside this program, else on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
    #[serde(default)]
    pub snapshotter: SnapshotterConfig,
    /// The LAN instances join by default; none: instances get a netns with
    /// loopback only unless their spec names a bridge or master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<HostNetwork>,
    #[serde(default)]
    pub numa: HostNuma,
    /// Default rlimits of every instance (the app's own win). `nofile`
    /// defaults to the agent's own hard limit, as under Docker a container
    /// inherits the daemon's: a runtime without CAP_SYS_RESOURCE cannot go above it.
    #[serde(default)]
    pub rlimits: BTreeMap<String, Rlimit>,
    /// Default `net.*` sysctls of every instance netns, over netsetup's
    /// keepalive defaults (300/30/5).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// Rotate each keeper's log past this many bytes (0: the keeper's default).
    #[serde(default)]
    pub log_size_max: u64,
    /// Keeper log files kept per instance, the live one included (0: 5).
    #[serde(default)]
    pub log_max_files: u32,
    /// Keeper log format: "json-file" (default) or "k8s-file" (CRI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<String>,
    /// Instances brought up or down at once by deploy/scale (1: one after another).
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Registries (host[:port]) pulled from over plain http.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
}

fn default_state_root() -> PathBuf {
    PathBuf::from("/run/rpaas")
}

fn default_data_root() -> PathBuf {
    PathBuf::from("/var/lib/rpaas")
}

fn default_parallel() -> usize {
    4
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            state_root: default_state_root(),
            data_root: default_data_root(),
            runtime: None,
            snapshotter: SnapshotterConfig::default(),
            network: None,
            numa: HostNuma::default(),
            rlimits: BTreeMap::new(),
            sysctls: BTreeMap::new(),
            log_size_max: 0,
            log_max_files: 0,
            log_driver: None,
            parallel: default_parallel(),
            insecure_registries: Vec::new(),
        }
    }
}

/// Where writable layers live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum SnapshotterConfig {
    /// overlayfs under `<dataRoot>/images/snapshots/overlay`.
    #[default]
    Overlay,
    /// dm-thin: an existing pool, or one on loop files (`loopbackDir`, `loopbackSize`).
    Devmapper {
        pool: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loopback_dir: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loopback_size: Option<u64>,
    },
}

/// The LAN: a bridge that holds the uplink (veth per instance) or a macvlan master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostNetwork {
    pub mode: HostNetMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvlan_mode: Option<MacvlanMode>,
    /// The LAN's prefix, e.g. `10.231.0.0/24`.
    #[serde(with = "crate::app::cidr")]
    pub subnet: IpCidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Addresses handed to instances: `first`..=`last` inside `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<AddressRange>,
    /// The netns that holds the bridge or master (a path such as
    /// `/run/netns/lan`); none: the agent's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_netns: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostNetMode {
    Bridge,
    Macvlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostNuma {
    /// Where the topology is read (`<sysfsRoot>/devices/system/node`).
    #[serde(default = "default_sysfs")]
    pub sysfs_root: PathBuf,
    /// The policy of apps that name none.
    #[serde(default = "default_policy")]
    pub policy: rpaas_numa::Policy,
}

fn default_sysfs() -> PathBuf {
    PathBuf::from("/sys")
}

fn default_policy() -> rpaas_numa::Policy {
    rpaas_numa::Policy::Preferred
}

impl Default for HostNuma {
    fn default() -> HostNuma {
        HostNuma {
            sysfs_root: default_sysfs(),
            policy: default_policy(),
        }
    }
}

impl HostConfig {
    /// Read a host config file (JSON); a field that does not fit is named.
    pub fn load(path: &Path) -> Result<HostConfig> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: "read host config".into(),
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: HostConfig = parse_json(&bytes).map_err(|e| e.in_file(path))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Error::Spec {
            field: format!("hostConfig.{field}"),
            reason,
        };
        if let Some(d) = &self.log_driver {
            d.parse::<rpaas_runtime::keeper::LogFormat>()
                .map_err(|e| bad("logDriver", e))?;
        }
        for (field, p) in [
            ("stateRoot", &self.state_root),
            ("dataRoot", &self.data_root),
        ] {
            if !p.is_absolute() {
                return Err(bad(field, format!("{} is not absolute", p.display())));
            }
        }
        if self.parallel == 0 {
            return Err(bad("parallel", "must be at least 1".into()));
        }
        if let Some(n) = &self.network {
            match (n.mode, &n.bridge, &n.master) {
                (HostNetMode::Bridge, None, _) => {
                    return Err(bad("network.bridge", "bridge mode needs a bridge".into()))
                }
                (HostNetMode::Macvlan, _, None) => {
                    return Err(bad("network.master", "macvlan mode needs a master".into()))
                }
                _ => {}
            }
            if let Some(r) = n.pool {
                for (f, a) in [("first", r.first), ("last", r.last)] {
                    if !crate::app::pool::contains(&n.subnet, a) {
                        return Err(bad(
                            &format!("network.pool.{f}"),
                            format!("{a} is outside {}", n.subnet),
                        ));
                    }
                }
            }
        }
        for (k, v) in &self.sysctls {
            rpaas_netsetup::sysctl::validate(k, v).map_err(|r| bad(&format!("sysctls.{k}"), r))?;
        }
        Ok(())
    }

    /// The runtime binary to spawn.
    pub fn runtime_bin(&self) -> PathBuf {
        if let Some(r) = &self.runtime {
            return r.clone();
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            let beside = dir.join("rpaas-run");
            if beside.is_file() {
                return beside;
            }
        }
        PathBuf::from("rpaas-run")
    }

    pub fn images_root(&self) -> PathBuf {
        self.data_root.join("images")
    }
}
