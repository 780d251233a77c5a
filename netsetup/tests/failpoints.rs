//! kill -9 halfway through attach (a fail point makes the child process
//! SIGKILL itself mid-way), then detach must leave nothing behind.
//! Run with `cargo test -p rpaas-netsetup --features failpoints --test failpoints`.
#![cfg(feature = "failpoints")]
mod lan;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use lan::{bridge_spec, id, macvlan_spec, Lan, Ns};
use rpaas_netsetup::{attach, detach, Netns};

const CHILD_ENV: &str = "RPAAS_NET_FAILPOINT_CHILD";

/// The child: attach with FAILPOINTS set; a panic at the fail point becomes a
/// SIGKILL of the whole process, like an agent killed with kill -9. Only runs
/// when the parent test re-executes this binary with CHILD_ENV set.
#[test]
#[ignore = "helper run by kill_9_halfway_then_detach_cleans_up"]
fn child_attach_until_failpoint() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = args.split('|').collect();
    let (host, target, cid, mode) = (parts[0], parts[1], parts[2], parts[3]);
    std::panic::set_hook(Box::new(|_| {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }));
    let _scenario = fail::FailScenario::setup();
    let spec = if mode == "bridge" {
        bridge_spec(cid, "10.231.0.71/24", "fd00:231::71/64")
    } else {
        macvlan_spec(cid, "10.231.1.71/24", "fd00:231:1::71/64")
    };
    let r = attach(
        &Netns::open(target).unwrap(),
        Some(&Netns::open(host).unwrap()),
        &spec,
    );
    // Reaching here means the fail point did not fire.
    eprintln!("attach returned {r:?}");
    std::process::exit(3);
}

#[test]
fn kill_9_halfway_then_detach_cleans_up() {
    let cases = [
        ("netsetup::after-create", "bridge"),
        ("netsetup::after-create", "macvlan"),
        ("netsetup::after-rename", "bridge"),
        ("netsetup::after-rename", "macvlan"),
        ("netsetup::before-done", "bridge"),
    ];
    for (fp, mode) in cases {
        let lan = Lan::new();
        let c = Ns::new("fp");
        let cid = id("fp");
        let (hb, cb) = (lan.host.snapshot(), c.snapshot());
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_attach_until_failpoint",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!(
                    "{}|{}|{cid}|{mode}",
                    lan.host.path().display(),
                    c.path().display()
                ),
            )
            .env("FAILPOINTS", format!("{fp}=panic"))
            .status()
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{fp}/{mode}: child was not killed at the fail point: {status:?}"
        );
        // Something was really left half-made...
        let left = c.ip(&["-o", "link"]);
        assert!(
            left.contains(&format!("rpaas:{cid}")) || left.contains("rpt"),
            "{fp}/{mode}: nothing half-made? {left}"
        );
        // ...and detach removes all of it.
        let rep = detach(Some(&c.open()), Some(&lan.host.open()), &cid).unwrap();
        assert!(!rep.removed.is_empty(), "{fp}/{mode}");
        let no_lo = |s: std::collections::BTreeSet<String>| {
            s.into_iter()
                .filter(|l| !l.contains(" lo") && !l.contains("dev lo"))
                .collect::<Vec<_>>()
        };
        assert_eq!(lan.host.snapshot(), hb, "{fp}/{mode}: host netns not clean");
        assert_eq!(
            no_lo(c.snapshot()),
            no_lo(cb),
            "{fp}/{mode}: container netns not clean"
        );
    }
}
