//! A host reboot, in two qemu guests sharing one persistent disk
//! (`tests/vm/run-tests.sh` runs this binary twice with `--disk-file`):
//!
//! - boot 1 (`RPAAS_REBOOT_PHASE=1`): makes a filesystem on the disk, deploys
//!   an app of 3 instances on dm-thin (a loopback pool on that disk) and one of
//!   3 on overlay, each instance writes a file into its writable layer, the
//!   addresses are noted on the disk, and the guest powers off (the state root
//!   is the guest's tmpfs /run: it is gone, as after a real reboot);
//! - boot 2 (`RPAAS_REBOOT_PHASE=2`): `recover()` brings the 6 instances back
//!   with the same addresses and MACs and their files, they answer on the LAN,
//!   the apps are removed, and the pool's metadata passes `thin_check`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::apps::{get_eventually, httpd_layout, sh, Lan, IMAGE};
use common::rpaas_run_bin;
use rpaas::config::SnapshotterConfig;
use rpaas::{AppSpec, Host, HostConfig};

const DISK_MOUNT: &str = "/mnt/rpaas-reboot";
const POOL: &str = "rpaasrb";

fn host(lan: &Lan, kind: &str) -> Host {
    let persist = Path::new(DISK_MOUNT);
    let snapshotter = match kind {
        "thin" => SnapshotterConfig::Devmapper {
            pool: POOL.into(),
            loopback_dir: Some(persist.join("pool")),
            loopback_size: Some(1 << 30),
        },
        _ => SnapshotterConfig::Overlay,
    };
    // Two hosts on one LAN: each hands out its own slice of it.
    let mut net = lan.network();
    let first = if kind == "thin" { 10 } else { 50 };
    net.pool = Some(rpaas::config::AddressRange {
        first: format!("{}.{first}", lan.prefix3).parse().unwrap(),
        last: format!("{}.{}", lan.prefix3, first + 39).parse().unwrap(),
    });
    Host::open(HostConfig {
        state_root: PathBuf::from(format!("/run/rpaas-reboot-{kind}")),
        data_root: persist.join(kind),
        runtime: Some(rpaas_run_bin()),
        snapshotter,
        network: Some(net),
        ..HostConfig::default()
    })
    .expect("open host")
}

/// instance -> (ip, mac, file content)
type Seen = BTreeMap<String, (String, String, String)>;

fn seen_path() -> PathBuf {
    Path::new(DISK_MOUNT).join("seen.json")
}

#[test]
#[ignore = "needs dm-thin and two boots: run by tests/vm/run-tests.sh"]
fn reboot_brings_instances_back() {
    let phase = std::env::var("RPAAS_REBOOT_PHASE").expect("RPAAS_REBOOT_PHASE=1 or 2");
    let disk = std::env::var("RUN_IN_VM_DISK").expect("a persistent disk (RUN_IN_VM_DISK)");
    std::fs::create_dir_all(DISK_MOUNT).unwrap();
    if phase == "1" {
        sh(&["mkfs.ext4", "-q", "-F", &disk]);
    }
    sh(&["mount", &disk, DISK_MOUNT]);
    // The same /24 in both boots: the LAN is remade, the addresses are the records'.
    let lan = Lan::new(31);
    let apps = [("rbt", "thin"), ("rbo", "ovl")];
    if phase == "1" {
        let img = tempfile::tempdir().unwrap();
        let oci = httpd_layout(img.path());
        let mut seen = Seen::new();
        for (app, kind) in apps {
            let h = host(&lan, kind);
            h.images().import(&oci, IMAGE, None).expect("import");
            let spec = AppSpec::from_json(
                serde_json::json!({"name": app, "image": IMAGE, "instances": 3})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            let st = h.deploy(&spec).expect("deploy");
            for i in st.instances {
                let text = format!("written by {} before the reboot", i.id);
                let out = h
                    .exec(
                        &i.id,
                        Some("0"),
                        &["sh", "-c", &format!("echo '{text}' > /www/state.txt")],
                    )
                    .unwrap();
                assert_eq!(out.code, 0, "{out:?}");
                let ip = i.ip.unwrap().split('/').next().unwrap().to_string();
                assert_eq!(
                    get_eventually(&lan.peer, &format!("http://{ip}:8080/state.txt")).trim(),
                    text
                );
                seen.insert(i.id, (ip, i.mac.unwrap(), text));
            }
        }
        std::fs::write(seen_path(), serde_json::to_vec(&seen).unwrap()).unwrap();
        // What a clean shutdown does; the guest then powers off with apps running.
        nix::unistd::sync();
        return;
    }

    let seen: Seen = serde_json::from_slice(&std::fs::read(seen_path()).unwrap()).unwrap();
    for (app, kind) in apps {
        let h = host(&lan, kind);
        let before = h.app(app).unwrap();
        assert!(
            before.instances.iter().all(|i| i.status == "missing"),
            "after the reboot no container exists yet: {before:?}"
        );
        let report = h.recover().expect("recover");
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.restarted.len(), 3, "{report:?}");
        let st = h.app(app).unwrap();
        assert_eq!(st.running, 3, "{st:?}");
        for i in &st.instances {
            let (ip, mac, text) = &seen[&i.id];
            assert_eq!(
                i.ip.as_deref().and_then(|a| a.split('/').next()),
                Some(ip.as_str())
            );
            assert_eq!(i.mac.as_ref(), Some(mac));
            assert_eq!(
                get_eventually(&lan.peer, &format!("http://{ip}:8080/state.txt")).trim(),
                text,
                "{} lost its writable layer",
                i.id
            );
        }
        h.remove(app).expect("remove");
        let gc = h.gc().expect("gc");
        assert!(gc.errors.is_empty(), "{gc:?}");
    }
    // The pool's metadata is consistent once the pool is down.
    let devices = sh(&["dmsetup", "ls"]);
    for line in devices.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(POOL) && name != POOL {
            sh(&["dmsetup", "remove", name]);
        }
    }
    sh(&["dmsetup", "remove", POOL]);
    let meta = Path::new(DISK_MOUNT).join("pool").join("metadata");
    let out = Command::new("thin_check").arg(&meta).output().unwrap();
    assert!(
        out.status.success(),
        "thin_check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
