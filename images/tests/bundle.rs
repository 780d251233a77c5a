//! Import an OCI layout built here, unpack it on the overlay snapshotter, prepare a
//! bundle, and check the mounted rootfs is exactly the expected tree.

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

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

fn check_tree(rootfs: &Path, motd: &str) {
    let read =
        |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    // whiteouts
    assert!(
        !rootfs.join("gone.txt").exists(),
        "whiteout .wh.gone.txt not applied"
    );
    assert!(
        !rootfs.join("data/old/a.txt").exists(),
        "whiteout in layer 3 not applied"
    );
    assert_eq!(read("data/old/b.txt"), "b");
    // opaque dir: lower content hidden, same-layer content kept
    assert!(
        !rootfs.join("opq/lower.txt").exists(),
        "opaque dir leaks lower content"
    );
    assert_eq!(read("opq/upper.txt"), "upper");
    // hardlink
    let a = std::fs::metadata(rootfs.join("data/hard-src.txt")).unwrap();
    let b = std::fs::metadata(rootfs.join("data/hard-link.txt")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink is not a hardlink");
    assert_eq!(a.nlink(), 2);
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (1000, 1000, 0o640));
    // device node and fifo
    let dev = std::fs::symlink_metadata(rootfs.join("dev/rpaas-null")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(dev.mode() & 0o7777, 0o666);
    assert!(std::fs::symlink_metadata(rootfs.join("run/rpaas.fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // setuid bit survives chown
    let s = std::fs::metadata(rootfs.join("usr/bin/rpaas-setuid")).unwrap();
    assert_eq!(
        (s.uid(), s.gid(), s.permissions().mode() & 0o7777),
        (1000, 1001, 0o4755)
    );
    // absolute symlinks stored verbatim
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("data/abs-link")).unwrap(),
        Path::new("/etc/motd")
    );
    // xattr
    let mut buf = [0u8; 16];
    let p = std::ffi::CString::new(rootfs.join("data/xattr.txt").as_os_str().as_encoded_bytes())
        .unwrap();
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"user.rpaas".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n.max(0) as usize], b"yes", "xattr user.rpaas");
    // mtimes from the layer
    assert_eq!(
        std::fs::metadata(rootfs.join("data/plain.txt"))
            .unwrap()
            .mtime(),
        1_600_000_000
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("opq")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(read("etc/motd"), motd);
    assert_eq!(read("data/plain.txt"), "plain layer");
    assert_eq!(
        std::fs::read(rootfs.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
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
