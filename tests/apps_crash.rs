//! kill -9 of a process embedding the library at every step of deploy,
//! scale-out, scale-in and remove; then a fresh `Host::recover()` and `gc()`
//! converge: the app has its desired count running, no running instance that
//! was not being removed is lost (same pid), and removing it leaves nothing.
//!
//! The process killed is `rpaas-run app …` (that is `rpaas-tools`, which embeds
//! `rpaas::Host`), built with the cargo feature `failpoints` into
//! `<target>/failpoints` (the directory tests/crash_gc.rs builds rpaas-run in);
//! `FAILPOINTS=app::crash-<point>=return` makes it SIGKILL itself there.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::apps::{Lan, Leftovers, Roots, IMAGE};
use common::rpaas_run_bin;

fn failpoints_tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = rpaas_run_bin();
        let target = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("failpoints");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--bin", "rpaas-tools", "--features", "failpoints"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo build");
        assert!(
            out.status.success(),
            "building rpaas-tools --features failpoints failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug/rpaas-tools")
    })
}

struct Scene {
    /// The app's name: one per test (cgroups are named after container ids,
    /// which are instance names, host-wide).
    name: &'static str,
    roots: Roots,
    lan: Lan,
    host_config: PathBuf,
    spec: PathBuf,
}

impl Scene {
    fn new(name: &'static str, third: u8) -> Scene {
        let roots = Roots::new();
        let lan = Lan::new(third);
        let cfg = roots.config(Some(lan.network()));
        let host_config = roots.image_dir.path().join("host.json");
        std::fs::write(&host_config, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let page = roots.image_dir.path().join("page.html");
        std::fs::write(&page, "crash test\n").unwrap();
        let spec = roots.image_dir.path().join("app.json");
        std::fs::write(
            &spec,
            serde_json::to_vec(&serde_json::json!({
                "name": name, "image": IMAGE, "instances": 2,
                "files": [{"source": page, "dest": "/www/index.html"}],
                "stop": {"grace": 0.2}
            }))
            .unwrap(),
        )
        .unwrap();
        Scene {
            name,
            roots,
            lan,
            host_config,
            spec,
        }
    }

    /// `rpaas-run app ARGS` with a fail point; true when it was SIGKILLed there.
    fn app_killed_at(&self, point: &str, args: &[&str]) -> bool {
        let out = Command::new(failpoints_tools())
            .arg("--root")
            .arg(self.roots.state.path())
            .arg("app")
            .arg("--host-config")
            .arg(&self.host_config)
            .args(args)
            .env("FAILPOINTS", format!("app::crash-{point}=return"))
            .output()
            .expect("spawn rpaas-tools");
        match out.status.signal() {
            Some(9) => true,
            _ => {
                assert!(
                    out.status.success(),
                    "{point} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                false
            }
        }
    }

    fn app(&self, args: &[&str]) {
        assert!(!self.app_killed_at("none", args));
    }

    fn pids(&self, h: &rpaas::Host) -> Vec<(String, Option<i32>)> {
        h.app(self.name)
            .map(|a| a.instances.into_iter().map(|i| (i.id, i.pid)).collect())
            .unwrap_or_default()
    }
}

const UP_POINTS: [&str; 14] = [
    "before-image",
    "after-image",
    "before-snapshot",
    "after-snapshot",
    "before-files",
    "after-files",
    "before-numa",
    "after-numa",
    "before-network",
    "after-network",
    "before-container",
    "after-container",
    "before-start",
    "after-start",
];

const DOWN_POINTS: [&str; 6] = [
    "teardown-stopped",
    "undone-start",
    "undone-container",
    "undone-network",
    "undone-numa",
    "undone-snapshot",
];

/// Recover and gc from a new Host; the app converges to `n` running
/// instances, those in `kept` with the same pid.
fn converge(s: &Scene, n: usize, kept: &[(String, Option<i32>)], point: &str) {
    let h = s.roots.host(Some(s.lan.network()));
    let report = h.recover().expect("recover");
    assert!(report.errors.is_empty(), "{point}: {report:?}");
    h.gc().expect("gc");
    let st = h.app(s.name).unwrap_or_else(|e| panic!("{point}: {e}"));
    assert_eq!(
        (st.instances.len(), st.running as usize),
        (n, n),
        "{point}: {st:?}"
    );
    let now = s.pids(&h);
    for k in kept {
        assert!(now.contains(k), "{point}: {k:?} was lost: {now:?}");
    }
}

fn clean(s: &Scene, before: &Leftovers, point: &str) {
    let h = s.roots.host(Some(s.lan.network()));
    h.remove(s.name)
        .unwrap_or_else(|e| panic!("{point}: remove: {e}"));
    h.gc().unwrap();
    assert_eq!(&Leftovers::of(&s.roots), before, "{point}");
    assert!(s.lan.instance_links().is_empty(), "{point}");
}

#[test]
fn killed_during_deploy() {
    let s = Scene::new("crd", 21);
    let before = Leftovers::of(&s.roots);
    for point in UP_POINTS {
        let spec = s.spec.display().to_string();
        assert!(
            s.app_killed_at(point, &["deploy", &spec]),
            "{point} not hit"
        );
        converge(&s, 2, &[], point);
        clean(&s, &before, point);
    }
}

#[test]
fn killed_during_scale_out() {
    let s = Scene::new("cro", 22);
    let before = Leftovers::of(&s.roots);
    let spec = s.spec.display().to_string();
    s.app(&["deploy", &spec, "--instances", "1"]);
    for point in UP_POINTS {
        let h = s.roots.host(Some(s.lan.network()));
        let kept = s.pids(&h);
        assert!(
            s.app_killed_at(point, &["scale", s.name, "3"]),
            "{point} not hit"
        );
        converge(&s, 3, &kept, point);
        s.app(&["scale", s.name, "1"]);
    }
    clean(&s, &before, "scale-out");
}

#[test]
fn killed_during_scale_in() {
    let s = Scene::new("cri", 23);
    let before = Leftovers::of(&s.roots);
    let spec = s.spec.display().to_string();
    s.app(&["deploy", &spec, "--instances", "3"]);
    for point in DOWN_POINTS {
        let h = s.roots.host(Some(s.lan.network()));
        let kept: Vec<_> = s.pids(&h).into_iter().take(1).collect();
        assert!(
            s.app_killed_at(point, &["scale", s.name, "1"]),
            "{point} not hit"
        );
        converge(&s, 1, &kept, point);
        s.app(&["scale", s.name, "3"]);
    }
    clean(&s, &before, "scale-in");
}

#[test]
fn killed_during_remove() {
    let s = Scene::new("crr", 24);
    let before = Leftovers::of(&s.roots);
    let spec = s.spec.display().to_string();
    for point in DOWN_POINTS {
        s.app(&["deploy", &spec]);
        assert!(s.app_killed_at(point, &["rm", s.name]), "{point} not hit");
        let h = s.roots.host(Some(s.lan.network()));
        let report = h.recover().expect("recover");
        assert!(report.errors.is_empty(), "{point}: {report:?}");
        h.gc().unwrap();
        assert!(
            h.apps().unwrap().is_empty(),
            "{point}: the remove was finished"
        );
        assert_eq!(Leftovers::of(&s.roots), before, "{point}");
        assert!(s.lan.instance_links().is_empty(), "{point}");
    }
}
