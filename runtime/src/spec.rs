//! Load and validate config.json (and `exec --process` files).
//!
//! Every error names the JSON path of the offending field, e.g.
//! `config process.rlimits[2].type: unknown variant ...`, because a user
//! fixing a bundle needs the field, not a byte offset.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Parse JSON bytes into `T`, reporting the failing field as a JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    // The plain parse first, as in parse_checked: tracking the path of every
    // field is only needed to name the one that failed.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { what.to_string() } else { path };
        Error::spec(field, e.inner().to_string())
    })
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

    if let Some(linux) = spec.linux() {
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
    fn empty_args_refused() {
        let json = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"args":[]},"root":{"path":"rootfs"}}"#;
        let spec: Spec = parse_json(json, "config.json").expect("parse");
        assert!(validate(&spec)
            .expect_err("fail")
            .to_string()
            .contains("process.args"));
    }
}
