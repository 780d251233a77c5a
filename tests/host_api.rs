//! The agent's library API (`rpaas::Host`) from a multi-threaded program:
//! containers are created by spawning rpaas-run (no fork of this process),
//! health-checked from inside their netns, stopped with their exit status, and
//! found again by a new `Host` (the agent restarted).

mod common;

use common::*;
use rpaas::{Check, Host, HostConfig, Status};
use std::path::Path;
use std::time::Duration;

fn host(root: &StateRoot, data: &Path) -> Host {
    Host::open(HostConfig {
        state_root: root.path().to_path_buf(),
        data_root: data.to_path_buf(),
        runtime: Some(rpaas_run_bin()),
        ..HostConfig::default()
    })
    .expect("open host")
}

#[test]
fn threads_run_check_and_stop_apps() {
    let root = state_root();
    let data = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..4).map(|_| unique_id("host")).collect();
    let bundles: Vec<Bundle> = ids
        .iter()
        .map(|_| {
            let b = Bundle::new(&default_config(&[
                "httpd", "-f", "-p", "8080", "-h", "/www",
            ]));
            std::fs::create_dir_all(b.rootfs().join("www")).unwrap();
            std::fs::write(b.rootfs().join("www/index.html"), "ok\n").unwrap();
            b
        })
        .collect();
    // Four agent threads create at once: the library forks nothing itself.
    std::thread::scope(|s| {
        for (id, b) in ids.iter().zip(&bundles) {
            let h = host(&root, data.path());
            s.spawn(move || h.run(id, b.path()).expect("run"));
        }
    });

    // A new Host (the agent restarted) sees them all running, with keepers.
    let h = host(&root, data.path());
    let listed: Vec<String> = h
        .list()
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    for id in &ids {
        assert!(listed.contains(id), "{listed:?}");
        assert_eq!(h.load(id).unwrap().status(), Status::Running);
    }

    let id = &ids[0];
    let http = Check::Http {
        addr: "127.0.0.1:8080".parse().unwrap(),
        path: "/index.html".into(),
    };
    let mut healthy = Err(rpaas::Error::Health {
        id: id.clone(),
        check: String::new(),
        reason: "not yet".into(),
    });
    for _ in 0..100 {
        healthy = h.health(id, &http);
        if healthy.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    healthy.expect("httpd answers inside its own netns");
    h.health(
        id,
        &Check::Tcp {
            addr: "127.0.0.1:8080".parse().unwrap(),
        },
    )
    .expect("tcp");
    h.health(
        id,
        &Check::File {
            path: "/www/index.html".into(),
        },
    )
    .expect("file");
    let err = h
        .health(
            id,
            &Check::File {
                path: "/www/missing".into(),
            },
        )
        .expect_err("missing file");
    assert!(
        err.to_string().contains(id.as_str()) && err.to_string().contains("/www/missing"),
        "{err}"
    );
    assert!(h
        .health(
            id,
            &Check::Tcp {
                addr: "127.0.0.1:9".parse().unwrap()
            }
        )
        .is_err());
    let bad = Check::Http {
        addr: "127.0.0.1:8080".parse().unwrap(),
        path: "/nope".into(),
    };
    assert!(h.health(id, &bad).unwrap_err().to_string().contains("404"));

    // Logins: the app user and root.
    let out = h.exec(id, Some("1000:1000"), &["id", "-u"]).unwrap();
    assert_eq!((out.code, out.stdout.trim()), (0, "1000"));
    let out = h.exec(id, Some("0"), &["id", "-u"]).unwrap();
    assert_eq!((out.code, out.stdout.trim()), (0, "0"));
    // The command ran and exited 3: an outcome, not an error.
    let out = h.exec(id, None, &["sh", "-c", "exit 3"]).unwrap();
    assert_eq!(out.code, 3);
    // The runtime's errors come back typed across the process boundary.
    match h.exec("no-such-container", None, &["true"]) {
        Err(rpaas::Error::Helper { source, .. }) => match *source {
            rpaas_runtime::Error::NotFound { id } => assert_eq!(id, "no-such-container"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // The runtime could not run it at all: an error, not an exit code.
    let err = h.exec(id, None, &["/no/such/program"]).unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");

    let stats = h.stats(id).unwrap().expect("cgroup stats");
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json.to_string().contains("memory"), "{json}");

    for id in &ids {
        let rec = h
            .stop(id, Duration::from_millis(300))
            .unwrap()
            .expect("exit record");
        // httpd is pid 1 without a TERM handler: the grace period ends in SIGKILL.
        assert_eq!(rec.exit_signal, Some(9), "{rec:?}");
        h.delete(id).unwrap();
        h.delete(id).unwrap();
    }
    assert!(h.list().unwrap().is_empty());
}
