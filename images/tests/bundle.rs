//! Import an OCI layout built here, unpack it on the overlay snapshotter, prepare a
//! bundle, and check the mounted rootfs is exactly the expected tree.

mod support;

use std::os::unix::fs::MetadataExt;

use rpaas_images::inject::{FileSpec, Source};
use rpaas_images::snapshot::Kind;
use rpaas_images::ImageStore;
use support::*;

/// Removes the bundle (unmount + snapshot) even when the test fails.
struct BundleGuard<'a>(&'a ImageStore, std::path::PathBuf);
impl Drop for BundleGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_bundle(&self.1);
        let _ = nix::mount::umount2(&self.1.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn import_unpack_bundle_exact_tree() {
    assert!(is_root(), "this test needs root (mounts, mknod, chown)");
    let work = tempdir("bundle");
    let layout = write_layout(
        &work.path().join("layout"),
        "v1",
        &test_image_layers(),
        test_image_config(),
    );
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let entry = store
        .import(&layout.dir, "rpaas-test/bb:v1", Some("v1"))
        .unwrap();
    assert_eq!(entry.manifest, layout.manifest_digest);
    assert_eq!(entry.layers, layout.layer_digests);
    assert_eq!(entry.chain_ids.len(), 4);
    assert_eq!(entry.chain_ids[0], layout.diff_ids[0]);

    let top = store.unpack("rpaas-test/bb:v1").unwrap();
    assert_eq!(&top, entry.chain_ids.last().unwrap());
    for c in &entry.chain_ids {
        assert_eq!(
            store.snapshotter.stat(c).unwrap().unwrap().kind,
            Kind::Committed
        );
    }
    // Unpacking again is a no-op: the same committed snapshots, nothing new.
    let before = store.snapshotter.walk().unwrap();
    store.unpack("rpaas-test/bb:v1").unwrap();
    assert_eq!(store.snapshotter.walk().unwrap(), before);

    let bdir = work.path().join("bundle-1");
    let conf_src = work.path().join("app.conf");
    std::fs::write(&conf_src, "port=8080\n").unwrap();
    let mut f1 = FileSpec::new("/etc/app/app.conf", Source::HostFile(conf_src));
    f1.mode = 0o600;
    f1.uid = 1000;
    f1.gid = 1000;
    let f2 = FileSpec::new("/etc/motd", Source::Bytes(b"injected\n".to_vec()));
    store
        .create_bundle("rpaas-test/bb:v1", &bdir, &[f1, f2])
        .unwrap();
    let guard = BundleGuard(&store, bdir.clone());
    let rootfs = bdir.join("rootfs");

    check_tree(&rootfs, "injected\n");
    let conf = std::fs::metadata(rootfs.join("etc/app/app.conf")).unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o7777),
        (1000, 1000, 0o600)
    );
    assert!(
        rootfs.join("var/rpaas-vol").is_dir(),
        "volume directory not created"
    );

    // The writable layer took the changes; the committed layers did not.
    let top_fs = store.snapshotter.usage(&top).unwrap();
    assert!(top_fs.inodes >= 1);

    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bdir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "cat /etc/motd"])
    );
    assert_eq!(spec["process"]["cwd"], "/data");
    assert_eq!(spec["process"]["user"]["uid"], 1000);
    assert_eq!(spec["process"]["user"]["gid"], 1000);
    assert_eq!(
        spec["process"]["user"]["additionalGids"],
        serde_json::json!([1001])
    );
    let env: Vec<String> = serde_json::from_value(spec["process"]["env"].clone()).unwrap();
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&"APP=rpaas".to_string()));
    assert_eq!(
        spec["annotations"]["org.opencontainers.image.exposedPorts"],
        "8080/tcp"
    );
    assert!(!spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/var/rpaas-vol"));

    // A second bundle of the same image shares the committed snapshots and does not
    // see the first one's writes.
    let bdir2 = work.path().join("bundle-2");
    store
        .create_bundle("rpaas-test/bb:v1", &bdir2, &[])
        .unwrap();
    let guard2 = BundleGuard(&store, bdir2.clone());
    assert_eq!(
        std::fs::read_to_string(bdir2.join("rootfs/etc/motd")).unwrap(),
        "hello from rpaas\n"
    );
    assert!(!bdir2.join("rootfs/etc/app/app.conf").exists());
    check_tree(&bdir2.join("rootfs"), "hello from rpaas\n");

    drop(guard2);
    drop(guard);
    assert!(
        !rootfs.join("bin").exists(),
        "rootfs still mounted after remove_bundle"
    );
    let keys: Vec<String> = store
        .snapshotter
        .walk()
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert!(
        keys.iter().all(|k| !k.starts_with("bundle-")),
        "bundle snapshot left: {keys:?}"
    );

    // gc keeps everything a ref uses; after rm, it removes it all.
    let r = store.gc().unwrap();
    assert!(r.blobs.is_empty() && r.snapshots.is_empty(), "{r:?}");
    store.remove("rpaas-test/bb:v1").unwrap();
    let r = store.gc().unwrap();
    assert_eq!(r.snapshots.len(), 4);
    assert_eq!(r.blobs.len(), 4 + 2);
    assert!(store.snapshotter.walk().unwrap().is_empty());
}
