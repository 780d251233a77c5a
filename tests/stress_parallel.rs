//! Issue 3, stress: 50 containers created and deleted by 4 concurrent workers
//! on ONE state root, twice; every command must succeed and nothing may be
//! left on the host (cgroups in every hierarchy, mounts, links, netns, state
//! entries, processes). Round "batch": all 50 run, then all 50 are deleted
//! (many live containers, many concurrent deletes). Round "churn": each worker
//! runs and at once deletes its containers, so creates, starts and deletes of
//! one root's containers (its state dir, per-container locks) interleave.

mod common;
#[path = "fixtures/host_snapshot.rs"]
mod host_snapshot;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;
use host_snapshot::{assert_nothing_left, HostSnapshot, Scope};

const CONTAINERS: usize = 50;
const WORKERS: usize = 4;

/// Run `f(i)` for i in 0..CONTAINERS on WORKERS threads; the failures, in words.
fn parallel(f: impl Fn(usize) -> Result<(), String> + Sync) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= CONTAINERS {
                    break;
                }
                if let Err(e) = f(i) {
                    errors.lock().unwrap().push(e);
                }
            });
        }
    });
    errors.into_inner().unwrap()
}

fn cmd(root: &Path, args: &[&str]) -> Result<(), String> {
    let out = rpaas(root, args);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rpaas-run {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Every 2nd container in keeper mode: both create paths race with each other.
fn run_args<'a>(i: usize, bundle: &'a str, id: &'a str) -> Vec<&'a str> {
    let mut args = vec!["run", "--detach"];
    if i % 2 == 1 {
        args.push("--keeper");
    }
    args.extend(["--bundle", bundle, id]);
    args
}

struct CleanupRoot<'a>(&'a Path);

impl Drop for CleanupRoot<'_> {
    fn drop(&mut self) {
        let ids = rpaas(self.0, &["list", "--quiet"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = rpaas(self.0, &["delete", "--force", id.trim()]);
        }
        let _ = rpaas(self.0, &["gc", "--all"]);
    }
}

#[test]
fn fifty_containers_four_workers_twice_no_error_no_leak() {
    let root = state_root();
    let root = root.path();
    let _cleanup = CleanupRoot(root);
    let bundle = Bundle::new(&default_config(&["sleep", "1000"]));
    let b = bundle
        .path()
        .to_str()
        .expect("utf8 bundle path")
        .to_string();
    let tag = format!("rpaas-stress-{}-", std::process::id());
    let scope = Scope {
        tags: vec![tag.clone(), root.display().to_string()],
        bundles: vec![bundle.path().to_path_buf()],
        root: root.to_path_buf(),
    };
    let before = HostSnapshot::take(&scope);

    for round in 0..2 {
        // Batch: all up, all listed running, all down.
        let ids: Vec<String> = (0..CONTAINERS)
            .map(|i| format!("{tag}batch{round}-{i}"))
            .collect();
        let errors = parallel(|i| cmd(root, &run_args(i, &b, &ids[i])));
        assert!(
            errors.is_empty(),
            "round {round}, batch run: {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        );
        let listed: serde_json::Value =
            serde_json::from_str(&rpaas_ok(root, &["list", "--format", "json"]))
                .expect("list json");
        let running = listed
            .as_array()
            .expect("list is an array")
            .iter()
            .filter(|c| c["status"] == "running" && ids.iter().any(|id| c["id"] == id.as_str()))
            .count();
        assert_eq!(
            running, CONTAINERS,
            "round {round}: not all running: {listed}"
        );
        let errors = parallel(|i| cmd(root, &["delete", "--force", &ids[i]]));
        assert!(
            errors.is_empty(),
            "round {round}, batch delete: {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        );
        assert_nothing_left(&format!("round {round} batch"), &scope, &before, 1, || {});

        // Churn: up and down at once, four at a time.
        let ids: Vec<String> = (0..CONTAINERS)
            .map(|i| format!("{tag}churn{round}-{i}"))
            .collect();
        let errors = parallel(|i| {
            cmd(root, &run_args(i, &b, &ids[i]))?;
            cmd(root, &["delete", "--force", &ids[i]])
        });
        assert!(
            errors.is_empty(),
            "round {round}, churn: {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        );
        assert_nothing_left(&format!("round {round} churn"), &scope, &before, 1, || {});
    }
}
