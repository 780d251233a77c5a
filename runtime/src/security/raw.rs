//! Field-precise checks on the raw JSON of `process`, run before the typed
//! oci-spec parse: serde's own errors for an unknown capability or rlimit
//! type say neither which list nor which index, ours do
//! (`process.capabilities.bounding[3]: unknown capability CAP_FOO`).

use oci_spec::runtime::PosixRlimitType;
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
