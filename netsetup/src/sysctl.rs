//! Per-netns sysctls. /proc/sys/net shows the netns of the *thread* that opens
//! it, so these functions are called only on the dedicated thread after it has
//! setns()ed into the container's netns; values are then that netns's own.
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Only `net.*` keys are per-netns; anything else would change the whole host.
pub fn validate(key: &str, value: &str) -> std::result::Result<(), String> {
    if !key.starts_with("net.") {
        return Err(format!(
            "{key:?} is not a net.* sysctl (only those are per network namespace)"
        ));
    }
    let ok = key.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !ok {
        return Err(format!("{key:?} is not a valid sysctl name"));
    }
    if value.is_empty() || value.contains('\n') {
        return Err(format!("value {value:?} must be one non-empty line"));
    }
    Ok(())
}

/// `net.ipv4.tcp_keepalive_time` -> `/proc/sys/net/ipv4/tcp_keepalive_time`.
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The per-interface key `net.<family>.conf.<ifname>.<name>` (interface names
/// may contain dots, so this one is built as a path, not parsed from a key).
pub fn iface_path(family: &str, ifname: &str, name: &str) -> PathBuf {
    PathBuf::from("/proc/sys/net")
        .join(family)
        .join("conf")
        .join(ifname)
        .join(name)
}

/// Write one value in the calling thread's netns.
pub fn write(netns: &str, key: &str, value: &str) -> Result<()> {
    write_path(netns, key, &path(key), value)
}

/// Write a sysctl file given its path.
pub fn write_path(netns: &str, key: &str, p: &std::path::Path, value: &str) -> Result<()> {
    std::fs::write(p, value).map_err(|source| Error::Sysctl {
        netns: netns.into(),
        key: key.into(),
        source,
    })
}

/// Read one value (trimmed) in the calling thread's netns.
pub fn read(netns: &str, key: &str) -> Result<String> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl {
            netns: netns.into(),
            key: key.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        validate("net.ipv4.tcp_keepalive_time", "300").unwrap();
        validate("net.ipv4.ip_local_port_range", "20000 60000").unwrap();
        assert!(validate("kernel.pid_max", "1")
            .unwrap_err()
            .contains("not a net.*"));
        assert!(validate("net.ipv4..x", "1").is_err());
        assert!(validate("net.ipv4/../../x", "1").is_err());
        assert!(validate("net.core.somaxconn", "").is_err());
        assert_eq!(
            path("net.core.somaxconn"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
    }
}
