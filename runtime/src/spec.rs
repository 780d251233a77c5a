//! Load and validate config.json (and `exec --process` files).
//!
//! Every error names the JSON path of the offending field, e.g.
//! `config process.rlimits[2].type: unknown variant ...`, because a user
//! fixing a bundle needs the field, not a byte offset.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Parse JSON bytes into `T`, reporting the failing field as a JSON path.
///
/// The text must be one JSON object and nothing after it: serde reads a
/// struct from an array too (`[]` became a config with every field missing),
/// and the path-tracking parse below stops after the value without looking at
/// what follows.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    require_object(bytes, what)?;
    // The plain parse first, as in parse_checked: tracking the path of every
    // field is only needed to name the one that failed.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { what.to_string() } else { path };
        Error::spec(field, e.inner().to_string())
    })?;
    de.end()
        .map_err(|e| Error::spec(what, format!("text after the JSON object: {e}")))?;
    Ok(value)
}

/// `bytes` must hold a JSON object: the first non-blank byte is `{`.
fn require_object(bytes: &[u8], what: &str) -> Result<()> {
    let kind = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => return Ok(()),
        None => "empty",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "not JSON",
    };
    Err(Error::spec(
        what,
        format!("must be a JSON object ({{...}}), but is {kind}"),
    ))
}

/// Parse the `update --resources` JSON: a LinuxResources object whose every
/// field is one rpaas knows (a misspelt limit would otherwise be dropped
/// silently while `update` reports success), with values the kernel would
/// not silently reinterpret (see [`crate::cgroups::validate`]).
pub fn parse_resources(bytes: &[u8]) -> Result<LinuxResources> {
    const WHAT: &str = "resources";
    let res: LinuxResources = parse_json(bytes, WHAT)?;
    let raw: serde_json::Value = parse_json(bytes, WHAT)?;
    let known = serde_json::to_value(&res).map_err(|e| Error::spec(WHAT, e.to_string()))?;
    unknown_fields(&raw, &known, WHAT)?;
    crate::cgroups::validate(&res, WHAT)?;
    Ok(res)
}

/// The first key of `raw` that the typed parse dropped: `known` is the typed
/// value written back, which holds every field that was read (oci-spec skips
/// only absent optional fields when writing).
fn unknown_fields(raw: &serde_json::Value, known: &serde_json::Value, path: &str) -> Result<()> {
    use serde_json::Value;
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => {
            for (key, v) in r {
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &format!("{path}.{key}"))?,
                    None if v.is_null() => {}
                    None => {
                        return Err(Error::spec(
                            format!("{path}.{key}"),
                            "unknown field (not part of the runtime-spec's LinuxResources)",
                        ))
                    }
                }
            }
            Ok(())
        }
        (Value::Array(r), Value::Array(k)) => {
            for (i, (rv, kv)) in r.iter().zip(k).enumerate() {
                unknown_fields(rv, kv, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Read `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    parse_config(&bytes)
}

/// Parse config.json. See [`parse_checked`].
pub fn parse_config(bytes: &[u8]) -> Result<Spec> {
    parse_checked(bytes, "config.json", crate::security::check_raw_config)
}

/// Read a process.json for `exec --process`. See [`parse_checked`].
pub fn load_process(path: &Path) -> Result<Process> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    parse_checked(&bytes, "process", crate::security::check_raw_process)
}

/// The typed parse of `bytes`; if it fails, the error names the entry.
///
/// oci-spec's own errors for an unknown capability, rlimit type or seccomp
/// name say neither which list nor which index, so a failed parse is done
/// again on the raw JSON: `check` names the entry, then serde_path_to_error
/// names the field. A text that parses needs no raw check: every name in it
/// is one oci-spec knows (the checks test the same enums), and a capability
/// the caps crate lacks is still refused, with its set, by `security::caps`.
/// Building the raw value for every config was a fifth of rpaas-run's own CPU
/// on `run`.
fn parse_checked<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    check: fn(&serde_json::Value) -> Result<()>,
) -> Result<T> {
    require_object(bytes, what)?;
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let raw: serde_json::Value = parse_json(bytes, what)?;
    check(&raw)?;
    from_value(raw, what)
}

/// Like [`parse_json`] from an already parsed value (the text is read once).
fn from_value<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { what.to_string() } else { path };
        Error::spec(field, e.inner().to_string())
    })
}

/// The rootfs as an absolute host path (root.path is relative to the bundle).
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::spec("root", "missing"))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        return Err(Error::spec("root.path", "is empty"));
    }
    let abs = if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => Ok(abs),
        Ok(_) => Err(Error::spec(
            "root.path",
            format!("{} is not a directory", abs.display()),
        )),
        Err(e) => Err(Error::spec("root.path", format!("{}: {e}", abs.display()))),
    }
}

/// Checks done before anything is created, so that a bad bundle leaves nothing behind.
pub fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing (required by create)"))?;
    validate_process(process, "process")?;

    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(Error::spec(
                    format!("mounts[{i}].destination"),
                    format!("{} is not an absolute path", m.destination().display()),
                ));
            }
        }
    }

    let new_uts = spec.linux().as_ref().is_some_and(|l| {
        l.namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Uts)
    });
    // runc refuses these too: without a UTS namespace of its own the
    // container would rename the host (or the name would be dropped).
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            if !new_uts {
                return Err(Error::spec(
                    field,
                    format!(
                        "{v:?} needs a UTS namespace, but linux.namespaces has no \"uts\" entry"
                    ),
                ));
            }
        }
    }

    if let Some(linux) = spec.linux() {
        if let Some(res) = linux.resources() {
            crate::cgroups::validate(res, "linux.resources")?;
        }
        // A relative entry ("", "./") would mask or freeze the rootfs itself.
        for (name, paths) in [
            ("linux.maskedPaths", linux.masked_paths()),
            ("linux.readonlyPaths", linux.readonly_paths()),
        ] {
            for (i, p) in paths.iter().flatten().enumerate() {
                if !p.starts_with('/') {
                    return Err(Error::spec(
                        format!("{name}[{i}]"),
                        format!("{} is not an absolute path", crate::error::shown(p)),
                    ));
                }
            }
        }
        if let Some(nss) = linux.namespaces() {
            let mut seen = Vec::new();
            for (i, ns) in nss.iter().enumerate() {
                if seen.contains(&ns.typ()) {
                    return Err(Error::spec(
                        format!("linux.namespaces[{i}].type"),
                        format!("{:?} is listed twice", ns.typ()),
                    ));
                }
                seen.push(ns.typ());
                if let Some(p) = ns.path() {
                    if !p.exists() {
                        return Err(Error::spec(
                            format!("linux.namespaces[{i}].path"),
                            format!("{} does not exist", p.display()),
                        ));
                    }
                }
            }
            let has = |t: LinuxNamespaceType| seen.contains(&t);
            if (linux.uid_mappings().is_some() || linux.gid_mappings().is_some())
                && !has(LinuxNamespaceType::User)
            {
                return Err(Error::spec(
                    "linux.uidMappings",
                    "mappings given but there is no user namespace",
                ));
            }
        }
    }
    Ok(())
}

/// Checks on a process (config's `process` or an exec process.json).
pub fn validate_process(process: &Process, field: &str) -> Result<()> {
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => {
            return Err(Error::spec(
                format!("{field}.args"),
                "must name a program to run",
            ))
        }
    }
    if !process.cwd().is_absolute() {
        return Err(Error::spec(
            format!("{field}.cwd"),
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') {
                return Err(Error::spec(
                    format!("{field}.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_names_the_json_path() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["sh"],
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":1},{"type":"RLIMIT_NOFILE","hard":"x","soft":1}]},
            "root":{"path":"rootfs"}}"#;
        let err = parse_json::<Spec>(json, "config.json").expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("process.rlimits[1].hard"), "{text}");
    }

    #[test]
    fn parse_config_names_the_json_path_too() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":"zero"},"args":["sh"]},
            "root":{"path":"rootfs"}}"#;
        let err = parse_config(json).expect_err("must fail");
        assert!(err.to_string().contains("process.user.gid"), "{err}");
    }

    #[test]
    fn relative_cwd_is_refused_with_its_field() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"tmp","user":{"uid":0,"gid":0},"args":["sh"]},"root":{"path":"rootfs"}}"#;
        let spec: Spec = parse_json(json, "config.json").expect("parse");
        let err = validate(&spec).expect_err("must fail");
        assert!(err.to_string().contains("process.cwd"), "{err}");
    }

    #[test]
    fn only_one_json_object_is_a_config() {
        let e = parse_config(b" []").expect_err("an array");
        assert!(
            e.to_string()
                .contains("config config.json: must be a JSON object"),
            "{e}"
        );
        let json = br#"{"ociVersion":"1.2.0","root":{"path":"rootfs"}} x"#;
        let e = parse_config(json).expect_err("trailing text");
        assert!(e.to_string().contains("text after the JSON object"), "{e}");
        let e = parse_json::<Spec>(json, "config.json").expect_err("trailing text");
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn update_resources_name_unknown_and_invalid_fields() {
        let named = |text: &str| {
            parse_resources(text.as_bytes())
                .expect_err(text)
                .to_string()
        };
        assert!(named("[]").contains("config resources:"));
        assert!(named(r#"{"cpu":{"quota":-5,"period":0}}"#).contains("resources.cpu.quota"));
        assert!(named(r#"{"cpu":{"shares":2,"quotaa":1}}"#).contains("resources.cpu.quotaa"));
        assert!(named(r#"{"devices":[{"allow":true,"acess":"r"}]}"#)
            .contains("resources.devices[0].acess"));
        let ok = parse_resources(
            br#"{"pids":{"limit":5},"memory":{"limit":null},"unified":{"a.b":"1"}}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn empty_args_refused() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"args":[]},"root":{"path":"rootfs"}}"#;
        let spec: Spec = parse_json(json, "config.json").expect("parse");
        assert!(validate(&spec)
            .expect_err("fail")
            .to_string()
            .contains("process.args"));
    }
}
