//! `process.rlimits`: validated in `create`, applied with setrlimit in init.

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::{Error, Result};

/// One resource limit, ready for setrlimit. `index` is its position in
/// `process.rlimits`, kept so that a failure in init names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub index: usize,
    pub resource: Resource,
    pub name: &'static str,
    pub soft: u64,
    pub hard: u64,
}

/// Validate `process.rlimits`: soft must not exceed hard and each type may
/// appear once (runtime-spec: "each type MUST be unique").
pub fn parse_rlimits(r: &[PosixRlimit]) -> Result<Vec<Rlimit>> {
    let mut out: Vec<Rlimit> = Vec::with_capacity(r.len());
    for (index, l) in r.iter().enumerate() {
        let (resource, name) = resource_of(l.typ());
        let field = format!("process.rlimits[{index}]");
        if l.soft() > l.hard() {
            return Err(Error::spec(
                field,
                format!(
                    "{name}: soft limit {} exceeds hard limit {}",
                    l.soft(),
                    l.hard()
                ),
            ));
        }
        if let Some(first) = out.iter().find(|o| o.resource == resource) {
            return Err(Error::spec(
                format!("{field}.type"),
                format!("{name} is already set by process.rlimits[{}]", first.index),
            ));
        }
        out.push(Rlimit {
            index,
            resource,
            name,
            soft: l.soft(),
            hard: l.hard(),
        });
    }
    Ok(out)
}

/// The kernel resource behind a spec type, and its name for messages.
pub(crate) fn resource_of(t: PosixRlimitType) -> (Resource, &'static str) {
    use PosixRlimitType as T;
    use Resource as R;
    match t {
        T::RlimitCpu => (R::RLIMIT_CPU, "RLIMIT_CPU"),
        T::RlimitFsize => (R::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        T::RlimitData => (R::RLIMIT_DATA, "RLIMIT_DATA"),
        T::RlimitStack => (R::RLIMIT_STACK, "RLIMIT_STACK"),
        T::RlimitCore => (R::RLIMIT_CORE, "RLIMIT_CORE"),
        T::RlimitRss => (R::RLIMIT_RSS, "RLIMIT_RSS"),
        T::RlimitNproc => (R::RLIMIT_NPROC, "RLIMIT_NPROC"),
        T::RlimitNofile => (R::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        T::RlimitMemlock => (R::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        T::RlimitAs => (R::RLIMIT_AS, "RLIMIT_AS"),
        T::RlimitLocks => (R::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        T::RlimitSigpending => (R::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        T::RlimitMsgqueue => (R::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        T::RlimitNice => (R::RLIMIT_NICE, "RLIMIT_NICE"),
        T::RlimitRtprio => (R::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        T::RlimitRttime => (R::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

/// setrlimit each limit on the calling process. EPERM (raising a hard limit
/// above the current one without CAP_SYS_RESOURCE, which this host's bounding
/// set lacks) names the limit and the current hard value to use instead.
pub fn apply_rlimits(r: &[Rlimit]) -> Result<()> {
    for l in r {
        if let Err(e) = setrlimit(l.resource, l.soft, l.hard) {
            let reason = match (e, getrlimit(l.resource)) {
                (nix::Error::EPERM, Ok((_, cur_hard))) => format!(
                    "hard limit {} is above the current hard limit {} and raising it needs CAP_SYS_RESOURCE",
                    show(l.hard),
                    show(cur_hard)
                ),
                _ => format!("soft {} hard {}", show(l.soft), show(l.hard)),
            };
            return Err(Error::sys(
                format!("process.rlimits[{}] {}: {reason}", l.index, l.name),
                e,
            ));
        }
    }
    Ok(())
}

fn show(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<PosixRlimit> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_types_and_values() {
        let r = parse_rlimits(&spec(
            r#"[{"type":"RLIMIT_NOFILE","soft":1024,"hard":4096},
                {"type":"RLIMIT_CORE","soft":0,"hard":0}]"#,
        ))
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].resource, Resource::RLIMIT_NOFILE);
        assert_eq!((r[0].soft, r[0].hard), (1024, 4096));
        assert_eq!(r[1].name, "RLIMIT_CORE");
        assert_eq!(r[1].index, 1);
    }

    #[test]
    fn soft_above_hard_names_the_entry() {
        let e = parse_rlimits(&spec(
            r#"[{"type":"RLIMIT_CORE","soft":0,"hard":0},
                {"type":"RLIMIT_NOFILE","soft":10,"hard":5}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("process.rlimits[1]"), "{e}");
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
    }

    #[test]
    fn duplicate_type_is_refused() {
        let e = parse_rlimits(&spec(
            r#"[{"type":"RLIMIT_NOFILE","soft":1,"hard":2},
                {"type":"RLIMIT_NOFILE","soft":1,"hard":2}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("process.rlimits[1].type"), "{e}");
        assert!(e.contains("process.rlimits[0]"), "{e}");
    }
}
