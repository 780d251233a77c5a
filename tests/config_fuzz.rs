//! Property test of `rpaas-run create` against hostile config.json files:
//! a valid busybox config with ONE field mutated (type changed, out of range,
//! negative, huge, unknown enum value, null, removed). Whatever the mutation:
//!
//! - no panic: exit code not 101, no "panicked" on stderr, not killed by a signal;
//! - a refusal is a non-zero exit with one line of stderr naming the field
//!   (its JSON path, or a parent of it);
//! - an accepted config is deleted again;
//! - nothing is left under the state root or in any cgroup hierarchy.
//!
//! 64 cases by default (about 10 s); `PROPTEST_CASES=N` for more.
//! `RPAAS_FUZZ_ALL=1` runs every case and lists every failure, instead of
//! stopping at the first one (and shrinking it).

mod common;

use std::path::Path;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// A valid config: runc's default plus the fields the mutations aim at.
fn base_config() -> Value {
    let mut cfg = default_config(&["true"]);
    cfg["process"]["oomScoreAdj"] = json!(100);
    cfg["linux"]["resources"]["memory"] = json!({"limit": 268435456});
    cfg["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    cfg["linux"]["resources"]["pids"] = json!({"limit": 64});
    cfg["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "0"});
    cfg["linux"]["memoryPolicy"] = json!({"mode": "MPOL_PREFERRED", "nodes": "0"});
    cfg["annotations"] = json!({"org.example": "x"});
    cfg
}

/// The fields mutated, as JSON pointers into [`base_config`].
const FIELDS: &[&str] = &[
    "/ociVersion",
    "/process",
    "/process/terminal",
    "/process/user",
    "/process/user/uid",
    "/process/user/gid",
    "/process/args",
    "/process/args/0",
    "/process/env",
    "/process/env/0",
    "/process/cwd",
    "/process/capabilities",
    "/process/capabilities/bounding",
    "/process/capabilities/bounding/0",
    "/process/rlimits",
    "/process/rlimits/0",
    "/process/rlimits/0/type",
    "/process/rlimits/0/hard",
    "/process/noNewPrivileges",
    "/process/oomScoreAdj",
    "/root",
    "/root/path",
    "/root/readonly",
    "/hostname",
    "/mounts",
    "/mounts/0",
    "/mounts/0/destination",
    "/mounts/0/type",
    "/mounts/1/options",
    "/mounts/1/options/0",
    "/linux",
    "/linux/resources",
    "/linux/resources/devices/0/allow",
    "/linux/resources/devices/0/access",
    "/linux/resources/memory/limit",
    "/linux/resources/cpu/shares",
    "/linux/resources/cpu/quota",
    "/linux/resources/cpu/period",
    "/linux/resources/pids/limit",
    "/linux/namespaces",
    "/linux/namespaces/0",
    "/linux/namespaces/0/type",
    "/linux/maskedPaths/0",
    "/linux/readonlyPaths",
    "/linux/sysctl/net.ipv4.ip_forward",
    "/linux/memoryPolicy/mode",
    "/linux/memoryPolicy/nodes",
    "/annotations/org.example",
];

/// One mutation of one field.
#[derive(Clone)]
enum Mutation {
    Remove,
    Set(Value),
}

/// Shown in failures with long strings cut (proptest prints the failing input).
impl std::fmt::Debug for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mutation::Remove => write!(f, "Remove"),
            Mutation::Set(v) => {
                let s = v.to_string();
                if s.len() > 80 {
                    write!(f, "Set({}… ({} bytes))", &s[..60], s.len())
                } else {
                    write!(f, "Set({s})")
                }
            }
        }
    }
}

fn mutations() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Remove),
        Just(Mutation::Set(Value::Null)),
        Just(Mutation::Set(json!(true))),
        Just(Mutation::Set(json!(-1))),
        Just(Mutation::Set(json!(i64::MIN))),
        Just(Mutation::Set(json!(u64::MAX))),
        Just(Mutation::Set(json!(1e300))),
        Just(Mutation::Set(json!(0.5))),
        Just(Mutation::Set(json!(""))),
        Just(Mutation::Set(json!("NO_SUCH_VALUE"))),
        Just(Mutation::Set(json!("x".repeat(70_000)))),
        Just(Mutation::Set(json!([]))),
        Just(Mutation::Set(json!({}))),
        Just(Mutation::Set(json!(["NO_SUCH_VALUE"]))),
        "[a-z/.]{1,12}".prop_map(|s| Mutation::Set(json!(s))),
        any::<i64>().prop_map(|n| Mutation::Set(json!(n))),
    ]
}

/// Apply `m` at `pointer`; false when the pointer is not in the config.
fn apply(cfg: &mut Value, pointer: &str, m: &Mutation) -> bool {
    match m {
        Mutation::Set(v) => match cfg.pointer_mut(pointer) {
            Some(slot) => {
                *slot = v.clone();
                true
            }
            None => false,
        },
        Mutation::Remove => {
            let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
            let key = key.replace("~1", "/").replace("~0", "~");
            match cfg.pointer_mut(parent) {
                Some(Value::Object(o)) => o.remove(&key).is_some(),
                Some(Value::Array(a)) => match key.parse::<usize>() {
                    Ok(i) if i < a.len() => {
                        a.remove(i);
                        true
                    }
                    _ => false,
                },
                _ => false,
            }
        }
    }
}

/// The names an error may give the field at `pointer`: its dotted JSON path
/// ("process.rlimits[0].type") and each parent ("process.rlimits", "process").
fn field_names(pointer: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut path = String::new();
    for seg in pointer.trim_start_matches('/').split('/') {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{seg}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(seg);
        }
        names.push(path.clone());
    }
    names
}

/// Every directory of a cgroup hierarchy (two levels deep) whose name has `id` in it.
fn cgroups_of(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for h in hier.flatten() {
        let mut dirs = vec![h.path()];
        if let Ok(sub) = std::fs::read_dir(h.path()) {
            dirs.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(id) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found
}

fn one_case(
    bundle: &Bundle,
    root: &Path,
    pointer: &str,
    m: &Mutation,
) -> Result<(), TestCaseError> {
    let mut cfg = base_config();
    if !apply(&mut cfg, pointer, m) {
        return Ok(());
    }
    bundle.write_config(&cfg);
    let id = unique_id("fuzz");
    let b = bundle.path().to_str().expect("utf-8 path");
    let out = rpaas(root, &["create", "--bundle", b, &id]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let shown: String = err.chars().take(600).collect();
    let what = format!("{pointer} = {m:?}");
    let code = out.status.code();
    prop_assert!(code.is_some(), "{what}: create killed by a signal: {shown}");
    prop_assert!(
        code != Some(101) && !err.contains("panicked"),
        "{what}: panic: {shown}"
    );
    if out.status.success() {
        let del = rpaas(root, &["delete", "--force", &id]);
        prop_assert!(
            del.status.success(),
            "{what}: delete after an accepted create: {}",
            String::from_utf8_lossy(&del.stderr)
        );
    } else {
        let line = err.trim_end();
        prop_assert_eq!(line.lines().count(), 1, "{}: not one line: {}", what, shown);
        // rpaas-run cuts a message at 4096 bytes (src/bin/shared/cli.rs MAX_LINE).
        prop_assert!(
            line.len() <= 4200,
            "{what}: a {} byte line: {shown}",
            line.len()
        );
        let names = field_names(pointer);
        prop_assert!(
            names.iter().any(|n| line.contains(n.as_str())),
            "{what}: the error names none of {names:?}: {shown}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(root)
        .expect("read root")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    prop_assert!(left.is_empty(), "{what}: left under the root: {left:?}");
    let cgs = cgroups_of(&id);
    prop_assert!(cgs.is_empty(), "{what}: cgroups left: {cgs:?}");
    Ok(())
}

#[test]
fn create_with_one_field_mutated_fails_cleanly_or_succeeds() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let bundle = Bundle::new(&base_config());
    let root = state_root();
    // The unmutated base must be accepted, or every case would test nothing.
    let id = unique_id("fuzz-base");
    let b = bundle.path().to_str().expect("utf-8 path");
    rpaas_ok(root.path(), &["create", "--bundle", b, &id]);
    rpaas_ok(root.path(), &["delete", "--force", &id]);

    let mut runner = TestRunner::new(Config {
        cases,
        // No regressions file written into tests/; a failure prints its case.
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let strategy = (prop::sample::select(FIELDS), mutations());
    let all = std::env::var_os("RPAAS_FUZZ_ALL").is_some();
    let failures = std::cell::RefCell::new(Vec::new());
    let result = runner.run(&strategy, |(pointer, m)| {
        let r = one_case(&bundle, root.path(), pointer, &m);
        match r {
            Err(e) if all => {
                failures.borrow_mut().push(e.to_string());
                Ok(())
            }
            r => r,
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
