//! An instance's runtime config: the image's process fields (from the images
//! crate), merged with what the app and the host ask for (command, env, user,
//! limits, NUMA cpuset, rlimits, the pinned netns), in the facade — the one
//! place that knows all of them.

use std::collections::BTreeMap;
use std::path::Path;

use rpaas_images::convert::ImageConfigFile;
use serde_json::{json, Value};

use crate::app::record::{InstanceRecord, NumaRecord};
use crate::app::spec::{AppSpec, Rlimit};
use crate::config::HostConfig;
use crate::error::{Error, Result};

/// The CFS period the quota of `resources.cpus` is expressed against (Docker's).
const CPU_PERIOD: u64 = 100_000;

/// Annotations that mark a container as an instance of an app.
pub const APP_ANNOTATION: &str = "io.rpaas.app";
pub const INSTANCE_ANNOTATION: &str = "io.rpaas.instance";

pub struct Inputs<'a> {
    pub host: &'a HostConfig,
    pub spec: &'a AppSpec,
    pub image: &'a ImageConfigFile,
    pub rec: &'a InstanceRecord,
    pub rootfs: &'a Path,
    /// The pinned netns to join; none: a new one (loopback only).
    pub netns: Option<&'a Path>,
}

/// The config.json of the instance.
pub fn runtime_config(i: &Inputs) -> Result<Value> {
    let mut c = rpaas_images::convert::runtime_spec(i.image, i.rootfs, &i.spec.image, &i.rec.name)?;
    let p = &mut c["process"];
    if let Some(cmd) = &i.spec.command {
        p["args"] = json!(cmd);
    }
    if !i.spec.env.is_empty() {
        p["env"] = json!(merge_env(p["env"].as_array(), &i.spec.env));
    }
    if let Some(u) = &i.spec.user {
        let r = rpaas_images::convert::resolve_user(i.rootfs, u, &i.spec.image).map_err(|e| {
            Error::Spec {
                field: "user".into(),
                reason: e.to_string(),
            }
        })?;
        let mut user = json!({"uid": r.uid, "gid": r.gid});
        if !r.additional_gids.is_empty() {
            user["additionalGids"] = json!(r.additional_gids);
        }
        p["user"] = user;
    }
    if let Some(w) = &i.spec.working_dir {
        p["cwd"] = json!(w);
    }
    p["rlimits"] = json!(rlimits(&i.host.rlimits, &i.spec.rlimits));

    let linux = &mut c["linux"];
    linux["resources"] = resources(i.spec, i.rec.numa.as_ref())?;
    if let Some(ns) = i.netns {
        for n in linux["namespaces"].as_array_mut().into_iter().flatten() {
            if n["type"] == "network" {
                n["path"] = json!(ns);
            }
        }
    } else {
        // No interface to attach the host's sysctls with: they go in the spec.
        let mut s = rpaas_netsetup::spec::default_sysctls();
        s.extend(i.host.sysctls.clone());
        s.extend(i.spec.network.sysctls.clone());
        linux["sysctl"] = json!(s);
    }
    c["annotations"][APP_ANNOTATION] = json!(i.spec.name);
    c["annotations"][INSTANCE_ANNOTATION] = json!(i.rec.name);
    Ok(c)
}

fn merge_env(image: Option<&Vec<Value>>, app: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = image
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|kv| {
            let k = kv.split_once('=').map_or(*kv, |(k, _)| k);
            !app.contains_key(k)
        })
        .map(str::to_string)
        .collect();
    out.extend(app.iter().map(|(k, v)| format!("{k}={v}")));
    out
}

/// Host defaults overlaid with the app's. `nofile` defaults to the agent's own
/// hard limit, as a container under Docker inherits the daemon's.
fn rlimits(host: &BTreeMap<String, Rlimit>, app: &BTreeMap<String, Rlimit>) -> Vec<Value> {
    let mut all: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        all.insert("nofile".into(), (hard, hard));
    }
    for (k, v) in host.iter().chain(app) {
        all.insert(k.clone(), v.soft_hard());
    }
    all.into_iter()
        .map(|(k, (soft, hard))| {
            json!({"type": format!("RLIMIT_{}", k.to_ascii_uppercase()), "soft": soft, "hard": hard})
        })
        .collect()
}

/// `linux.resources` of an instance (also what `update` applies live).
pub fn resources(spec: &AppSpec, numa: Option<&NumaRecord>) -> Result<Value> {
    let r = &spec.resources;
    let mut out = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let mut cpu = serde_json::Map::new();
    if let Some(m) = r.cpus {
        cpu.insert("quota".into(), json!(m * CPU_PERIOD / 1000));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if let Some(n) = numa {
        cpu.insert("cpus".into(), json!(n.cpus));
        cpu.insert("mems".into(), json!(n.mems));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    let mut mem = serde_json::Map::new();
    if let Some(b) = spec.memory_bytes()? {
        mem.insert("limit".into(), json!(b));
    }
    if let Some(s) = r.memory_swap {
        mem.insert("swap".into(), json!(s));
    }
    if let Some(s) = r.swappiness {
        mem.insert("swappiness".into(), json!(s));
    }
    if !mem.is_empty() {
        out["memory"] = Value::Object(mem);
    }
    if let Some(p) = r.pids {
        out["pids"] = json!({"limit": p});
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_merged_app_last() {
        let img = vec![json!("PATH=/bin"), json!("A=image")];
        let app = [("A".to_string(), "app".to_string())].into();
        assert_eq!(merge_env(Some(&img), &app), vec!["PATH=/bin", "A=app"]);
    }

    #[test]
    fn resources_from_millicores_memory_and_numa() {
        let spec = AppSpec::from_json(
            br#"{"name":"w","image":"i","resources":{"cpus":1500,"memory":"64M","pids":100,"swappiness":0}}"#,
        )
        .unwrap();
        let numa = NumaRecord {
            node: Some(1),
            cpus: "8-15".into(),
            mems: "1".into(),
        };
        let r = resources(&spec, Some(&numa)).unwrap();
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["cpus"], "8-15");
        assert_eq!(r["cpu"]["mems"], "1");
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swappiness"], 0);
        assert_eq!(r["pids"]["limit"], 100);
    }
}
