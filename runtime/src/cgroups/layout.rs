//! Which cgroup layout the host has: v1 (including "hybrid", v1 plus a cgroup2 mount at
//! `/sys/fs/cgroup/unified`) or pure v2. This is the ONE place that looks at mounts.
//!
//! Detected once per process from `/proc/self/mountinfo` (a single read, no statfs per call) and
//! cached: container create is on the start-latency hot path. We parse mountinfo ourselves
//! instead of cgroups-rs' `V1::new()` because that re-reads mountinfo on every cgroup load and
//! `auto()` statfs()es on every call.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// Controllers bound to it, e.g. `["cpu", "cpuacct"]`, or `["name=systemd"]`.
    pub controllers: Vec<String>,
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1. `unified` is the cgroup2 mount of a hybrid host (runc/systemd also create the
    /// container's directory there) and `unified_controllers` what that mount offers (on this
    /// host: hugetlb, because it has no v1 hierarchy).
    V1 {
        hierarchies: Vec<Hierarchy>,
        unified: Option<PathBuf>,
        unified_controllers: Vec<String>,
    },
    /// Pure cgroup v2: one tree at `root`; `controllers` from the root's `cgroup.controllers`.
    V2 {
        root: PathBuf,
        controllers: Vec<String>,
    },
}

/// v1 controllers the kernel knows; other super options (rw, xattr, clone_children...) are not.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

static LAYOUT: OnceLock<Layout> = OnceLock::new();

/// The host's layout, detected on first use and cached for the life of the process.
pub fn layout() -> Result<&'static Layout> {
    if let Some(l) = LAYOUT.get() {
        return Ok(l);
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut l = Layout::from_mountinfo(&text)?;
    l.load_controllers()?;
    // A racing thread may have set it first; both values come from the same host.
    Ok(LAYOUT.get_or_init(|| l))
}

impl Layout {
    /// Parses mountinfo text. Pure (no file access) so it is unit-testable on any host;
    /// controller lists of cgroup2 mounts are filled in by [`Layout::load_controllers`].
    pub fn from_mountinfo(text: &str) -> Result<Layout> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        let mut cgroup2: Option<PathBuf> = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount) = pre.split(' ').nth(4) else {
                continue;
            };
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or("");
            let super_opts = post.nth(1).unwrap_or("");
            let mount = PathBuf::from(unescape(mount));
            match fstype {
                "cgroup" => {
                    let controllers: Vec<String> = super_opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(String::from)
                        .collect();
                    // The same hierarchy may be bind-mounted twice: keep the first.
                    if !controllers.is_empty()
                        && !hierarchies.iter().any(|h| h.controllers == controllers)
                    {
                        hierarchies.push(Hierarchy { mount, controllers });
                    }
                }
                "cgroup2" if cgroup2.is_none() => cgroup2 = Some(mount),
                _ => {}
            }
        }
        let has_v1_controller = hierarchies
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        match (has_v1_controller, cgroup2) {
            (true, unified) => Ok(Layout::V1 {
                hierarchies,
                unified,
                unified_controllers: Vec::new(),
            }),
            (false, Some(root)) => Ok(Layout::V2 {
                root,
                controllers: Vec::new(),
            }),
            (false, None) => Err(Error::cgroup(
                "/",
                "no cgroup hierarchy is mounted (neither cgroup v1 controllers nor cgroup2 in /proc/self/mountinfo)",
            )),
        }
    }

    /// Reads `cgroup.controllers` of the cgroup2 mount (v2 root, or the hybrid unified mount).
    fn load_controllers(&mut self) -> Result<()> {
        let (dir, out) = match self {
            Layout::V2 { root, controllers } => (root.clone(), controllers),
            Layout::V1 {
                unified: Some(u),
                unified_controllers,
                ..
            } => (u.clone(), unified_controllers),
            Layout::V1 { unified: None, .. } => return Ok(()),
        };
        let text = super::files::read_opt(&dir, "cgroup.controllers", "cgroup layout")?
            .unwrap_or_default();
        *out = text.split_whitespace().map(String::from).collect();
        Ok(())
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// v1 with a cgroup2 mount beside it.
    pub fn is_hybrid(&self) -> bool {
        matches!(
            self,
            Layout::V1 {
                unified: Some(_),
                ..
            }
        )
    }

    /// v1: the mount of the hierarchy holding `controller` (e.g. "memory", "name=systemd").
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        match self {
            Layout::V1 { hierarchies, .. } => hierarchies
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == controller))
                .map(|h| h.mount.as_path()),
            Layout::V2 { .. } => None,
        }
    }

    /// Every hierarchy root a cgroup has a directory in: each v1 mount plus the unified one on
    /// hybrid, or the single v2 root.
    pub fn roots(&self) -> Vec<&Path> {
        match self {
            Layout::V1 {
                hierarchies,
                unified,
                ..
            } => hierarchies
                .iter()
                .map(|h| h.mount.as_path())
                .chain(unified.as_deref())
                .collect(),
            Layout::V2 { root, .. } => vec![root.as_path()],
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/mem\\040x rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        assert!(l.is_hybrid() && !l.is_v2());
        assert_eq!(
            l.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            l.v1_mount("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(l.v1_mount("hugetlb"), None);
        // The duplicate memory bind mount is ignored; the unified mount comes last.
        assert_eq!(l.roots().len(), 5);
        assert_eq!(l.roots()[4], Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn pure_v2() {
        let l = Layout::from_mountinfo(
            "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        assert!(l.is_v2());
        assert_eq!(l.roots(), vec![Path::new("/sys/fs/cgroup")]);
    }

    #[test]
    fn v1_only_named_is_v2_when_cgroup2_present() {
        // Only a named (controller-less) v1 hierarchy: the controllers live on cgroup2.
        let l = Layout::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
             2 0 0:2 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        assert!(l.is_v2());
    }

    #[test]
    fn none_is_error() {
        let e = Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").unwrap_err();
        assert!(e.to_string().contains("no cgroup hierarchy"), "{e}");
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
