//! Mount options from the spec → mount(2) flags, propagation and fs data.

use nix::mount::MsFlags;

/// The parsed `options` of one spec mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Flags for the mount itself (or the bind remount).
    pub flags: MsFlags,
    /// Flags explicitly cleared (e.g. "rw", "suid"), kept for the remount logic.
    pub cleared: MsFlags,
    /// Propagation to apply afterwards (MS_SHARED, MS_SLAVE, … possibly | MS_REC).
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma separated ("mode=755,size=65536k").
    pub data: String,
    pub bind: bool,
    pub recursive: bool,
}

pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        bind: false,
        recursive: false,
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" => push(&mut o, MsFlags::MS_PRIVATE),
            "rprivate" => push(&mut o, MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => push(&mut o, MsFlags::MS_SHARED),
            "rshared" => push(&mut o, MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => push(&mut o, MsFlags::MS_SLAVE),
            "rslave" => push(&mut o, MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => push(&mut o, MsFlags::MS_UNBINDABLE),
            "runbindable" => push(&mut o, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            // Options only meaningful to other runtimes or to the kernel as data.
            "tmpcopyup" | "idmap" | "ridmap" | "rro" | "rrw" => continue,
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.cleared |= clear;
    }
    o.data = data.join(",");
    o
}

fn push(o: &mut MountOptions, f: MsFlags) -> (MsFlags, MsFlags) {
    o.propagation.push(f);
    (MsFlags::empty(), MsFlags::empty())
}

/// Propagation named by `rootfsPropagation`.
pub fn propagation_of(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = parse(&s(&[
            "nosuid", "noexec", "mode=755", "size=64k", "rbind", "rslave", "ro",
        ]));
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY));
        assert_eq!(o.data, "mode=755,size=64k");
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_rw_clears_ro() {
        let o = parse(&s(&["ro", "rw"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }
}
