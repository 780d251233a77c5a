//! Device access rules: the defaults every container gets, the v1 `devices.allow`/`deny`
//! syntax, and what cgroup v2 can accept without an eBPF device program.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

/// (type, major, minor, access) of the rules runc allows by default: mknod of any char/block
/// node (opening still needs r/w), and null, zero, full, random, urandom, tty, console, ptmx
/// and the pts range. runc also allows /dev/net/tun; we do not, a PaaS app has no use for it.
const DEFAULTS: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"), // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"), // full
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"), // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"), // urandom
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"), // tty
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"), // console
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"), // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),  // pts
];

/// Device rules runc adds by default; the runtime appends them after the spec's rules.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    DEFAULTS
        .iter()
        .map(|&(typ, major, minor, access)| {
            let mut r = LinuxDeviceCgroup::default();
            r.set_allow(true);
            r.set_typ(Some(typ));
            r.set_major(major);
            r.set_minor(minor);
            r.set_access(Some(access.to_string()));
            r
        })
        .collect()
}

/// The access string of a rule, validated ("rwm" when absent, as the spec says).
fn access(rule: &LinuxDeviceCgroup, field: &str) -> Result<String> {
    let a = rule.access().clone().unwrap_or_else(|| "rwm".to_string());
    if a.is_empty() || !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::spec(
            format!("{field}.access"),
            format!("{a:?} is not a combination of r, w and m"),
        ));
    }
    Ok(a)
}

fn num(n: Option<i64>) -> String {
    match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    }
}

/// The line the v1 `devices.allow`/`devices.deny` files take: `c 1:3 rwm`, `a *:* rwm`.
pub(crate) fn v1_rule(rule: &LinuxDeviceCgroup, field: &str) -> Result<String> {
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        // "u" (unbuffered char) is a char device to the kernel.
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            return Err(Error::spec(
                format!("{field}.type"),
                "\"p\" (FIFO) cannot be controlled by the devices cgroup",
            ))
        }
    };
    let access = access(rule, field)?;
    Ok(format!(
        "{typ} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    ))
}

fn is_all(rule: &LinuxDeviceCgroup) -> bool {
    matches!(rule.typ(), None | Some(LinuxDeviceType::A))
        && num(rule.major()) == "*"
        && num(rule.minor()) == "*"
}

fn within_defaults(rule: &LinuxDeviceCgroup, access: &str) -> bool {
    let typ = match rule.typ() {
        Some(LinuxDeviceType::U) => LinuxDeviceType::C,
        Some(t) => t,
        None => return false,
    };
    DEFAULTS.iter().any(|&(t, ma, mi, acc)| {
        t == typ
            && num(ma) == num(rule.major())
            && num(mi) == num(rule.minor())
            && access.chars().all(|c| acc.contains(c))
    })
}

/// cgroup v2 controls devices only through an eBPF program, which rpaas does not load. Without
/// one every device is allowed by the cgroup, so we accept exactly the rule sets whose intent we
/// do not betray in a way that matters: no rules, only allow rules (= allow all, privileged), or
/// deny-all followed by allow rules within the defaults (the container's /dev only holds those
/// nodes; a process with CAP_MKNOD could still make others: that is the documented gap).
/// Anything else is refused so a user never believes a restriction is enforced when it is not.
pub(crate) fn check_v2(rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let field = |i: usize| format!("linux.resources.devices[{i}]");
    let unsupported = |i: usize, why: &str| {
        Err(Error::spec(
            field(i),
            format!("{why}: device rules are not supported on cgroup v2 (no eBPF device program); only deny-all plus the default devices, or allow-all, can be accepted"),
        ))
    };
    let mut denied_all = false;
    for (i, r) in rules.iter().enumerate() {
        let acc = access(r, &field(i))?;
        if !r.allow() {
            if i == 0 && is_all(r) && acc.len() == 3 {
                denied_all = true;
                continue;
            }
            return unsupported(i, "a deny rule other than a leading deny-all");
        }
        if !denied_all || is_all(r) {
            // On an allow-all state an allow rule changes nothing; an allow-all restores it.
            continue;
        }
        if !within_defaults(r, &acc) {
            return unsupported(i, "an allow rule beyond the default devices after deny-all");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v1_syntax() {
        let r = rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3},{"allow":true,"type":"u","major":136,"access":"rw"}]"#,
        );
        assert_eq!(v1_rule(&r[0], "d").unwrap(), "a *:* rwm");
        assert_eq!(v1_rule(&r[1], "d").unwrap(), "c 1:3 rwm");
        assert_eq!(v1_rule(&r[2], "d").unwrap(), "c 136:* rw");
        let bad = rules(r#"[{"allow":true,"type":"c","access":"rwx"}]"#);
        let e = v1_rule(&bad[0], "linux.resources.devices[0]").unwrap_err();
        assert!(e.to_string().contains("devices[0].access"), "{e}");
    }

    #[test]
    fn v2_accepts_default_and_allow_all() {
        let mut r = rules(r#"[{"allow":false,"access":"rwm"}]"#);
        r.extend(default_device_rules());
        check_v2(&r).unwrap();
        check_v2(&[]).unwrap();
        check_v2(&rules(r#"[{"allow":true,"access":"rwm"}]"#)).unwrap();
    }

    #[test]
    fn v2_refuses_real_restrictions() {
        let e = check_v2(&rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"b","major":8,"minor":0,"access":"rw"}]"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("devices[1]"), "{e}");
        assert!(e.to_string().contains("not supported on cgroup v2"), "{e}");
        let e = check_v2(&rules(
            r#"[{"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("devices[0]"), "{e}");
    }

    #[test]
    fn defaults_cover_the_listed_devices() {
        let d = default_device_rules();
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            assert!(
                d.iter()
                    .any(|r| r.major() == Some(maj) && r.minor() == Some(min)),
                "{maj}:{min}"
            );
        }
        assert!(d
            .iter()
            .any(|r| r.major() == Some(136) && r.minor().is_none()));
    }
}
