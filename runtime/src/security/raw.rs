//! Field-precise checks on the raw JSON of config.json, run before the typed
//! oci-spec parse: serde's own errors for an unknown capability, rlimit type
//! or seccomp action/architecture say neither which list nor which index,
//! ours do (`process.capabilities.bounding[3]: unknown capability CAP_FOO`).

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, PosixRlimitType,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::caps::capability_from_name;
use crate::{Error, Result};

const CAP_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

/// Check `process.capabilities.*[i]` and `process.rlimits[i].type` in the
/// raw `process` object (of config.json or of an `exec --process` file).
pub fn check_raw_process(process: &Value) -> Result<()> {
    if let Some(caps) = process.get("capabilities").filter(|v| !v.is_null()) {
        for set in CAP_SETS {
            let Some(list) = caps.get(set).filter(|v| !v.is_null()) else {
                continue;
            };
            let field = format!("process.capabilities.{set}");
            let items = list
                .as_array()
                .ok_or_else(|| Error::spec(&field, "must be an array of capability names"))?;
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .as_str()
                    .ok_or_else(|| Error::spec(format!("{field}[{i}]"), "must be a string"))?;
                if capability_from_name(name).is_none() {
                    return Err(Error::spec(
                        format!("{field}[{i}]"),
                        format!("unknown capability {name}"),
                    ));
                }
            }
        }
    }
    if let Some(list) = process.get("rlimits").filter(|v| !v.is_null()) {
        let items = list
            .as_array()
            .ok_or_else(|| Error::spec("process.rlimits", "must be an array"))?;
        for (i, item) in items.iter().enumerate() {
            let field = format!("process.rlimits[{i}].type");
            let typ = item
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::spec(&field, "missing (a string such as RLIMIT_NOFILE)"))?;
            if serde_json::from_value::<PosixRlimitType>(Value::from(typ)).is_err() {
                return Err(Error::spec(field, format!("unknown {typ}")));
            }
        }
    }
    Ok(())
}

/// `check_raw_process` on `process` plus `check_raw_seccomp` on
/// `linux.seccomp` of a whole config.json.
pub fn check_raw_config(config: &Value) -> Result<()> {
    if let Some(p) = config.get("process").filter(|v| !v.is_null()) {
        check_raw_process(p)?;
    }
    if let Some(s) = config
        .get("linux")
        .and_then(|l| l.get("seccomp"))
        .filter(|v| !v.is_null())
    {
        check_raw_seccomp(s)?;
    }
    Ok(())
}

/// Check the names in `linux.seccomp`: defaultAction, architectures[i],
/// flags[i], syscalls[i].action and syscalls[i].args[j].op.
pub fn check_raw_seccomp(seccomp: &Value) -> Result<()> {
    const F: &str = "linux.seccomp";
    named::<LinuxSeccompAction>(
        &format!("{F}.defaultAction"),
        seccomp.get("defaultAction"),
        "action",
    )?;
    for (list, what) in [("architectures", "architecture"), ("flags", "flag")] {
        for (i, v) in items(seccomp, list) {
            let field = format!("{F}.{list}[{i}]");
            if list == "flags" {
                named::<LinuxSeccompFilterFlag>(&field, Some(v), what)?;
            } else {
                named::<Arch>(&field, Some(v), what)?;
            }
        }
    }
    for (i, sc) in items(seccomp, "syscalls") {
        let field = format!("{F}.syscalls[{i}]");
        named::<LinuxSeccompAction>(&format!("{field}.action"), sc.get("action"), "action")?;
        for (j, a) in items(sc, "args") {
            named::<LinuxSeccompOperator>(
                &format!("{field}.args[{j}].op"),
                a.get("op"),
                "operator",
            )?;
        }
    }
    Ok(())
}

/// The elements of an optional array member (nothing if absent or not an array;
/// the typed parse reports wrong shapes).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// A required string that must name a variant of `T`.
fn named<T: DeserializeOwned>(field: &str, v: Option<&Value>, what: &str) -> Result<()> {
    let name = v
        .and_then(Value::as_str)
        .ok_or_else(|| Error::spec(field, format!("missing (a string naming the {what})")))?;
    serde_json::from_value::<T>(Value::from(name))
        .map(drop)
        .map_err(|_| Error::spec(field, format!("unknown {what} {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_process_passes() {
        let p = json!({
            "capabilities": {"bounding": ["CAP_KILL", "cap_chown", "NET_RAW"], "ambient": null},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}]
        });
        check_raw_process(&p).unwrap();
        check_raw_process(&json!({})).unwrap();
    }

    #[test]
    fn unknown_capability_names_set_and_index() {
        let p = json!({"capabilities": {"effective": ["CAP_KILL"],
                        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW", "CAP_FOO"]}});
        let e = check_raw_process(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            "config process.capabilities.bounding[3]: unknown capability CAP_FOO"
        );
    }

    #[test]
    fn unknown_rlimit_names_index() {
        let p = json!({"rlimits": [{"type": "RLIMIT_CORE"}, {"type": "RLIMIT_NOFILE"},
                                   {"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]});
        let e = check_raw_process(&p).unwrap_err().to_string();
        assert_eq!(e, "config process.rlimits[2].type: unknown RLIMIT_FOO");
    }

    #[test]
    fn seccomp_names_are_checked_with_their_field() {
        let ok = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}}});
        check_raw_config(&ok).unwrap();
        let mut bad = ok.clone();
        bad["linux"]["seccomp"]["syscalls"][0]["action"] = json!("SCMP_ACT_EXPLODE");
        let e = check_raw_config(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "config linux.seccomp.syscalls[0].action: unknown action SCMP_ACT_EXPLODE"
        );
        let mut bad = ok.clone();
        bad["linux"]["seccomp"]["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]);
        let e = check_raw_config(&bad).unwrap_err().to_string();
        assert!(
            e.contains("linux.seccomp.architectures[1]") && e.contains("SCMP_ARCH_Z80"),
            "{e}"
        );
        let mut bad = ok;
        bad["linux"]["seccomp"]["syscalls"][0]["args"][0]["op"] = json!("SCMP_CMP_ALMOST");
        let e = check_raw_config(&bad).unwrap_err().to_string();
        assert!(e.contains("linux.seccomp.syscalls[0].args[0].op"), "{e}");
    }

    #[test]
    fn wrong_shapes_are_named() {
        let e = check_raw_process(&json!({"capabilities": {"ambient": "CAP_KILL"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("process.capabilities.ambient"), "{e}");
        let e = check_raw_process(&json!({"rlimits": [{"soft": 1}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("process.rlimits[0].type"), "{e}");
    }
}
