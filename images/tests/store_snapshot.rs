//! The content store (verification, concurrent writers, leftovers, refs, gc) and
//! the overlay snapshotter's containerd semantics with real overlay mounts.

mod support;

use std::io::Write;
use std::sync::{Arc, Barrier};

use rpaas_images::mount::{mount_all, unmount_all};
use rpaas_images::snapshot::overlay::Overlay;
use rpaas_images::snapshot::{Kind, Snapshotter};
use rpaas_images::store::{RefEntry, Store};
use support::{is_root, sha256, tempdir, MountGuard};

#[test]
fn blobs_are_verified_before_they_appear() {
    let d = tempdir("store");
    let s = Store::open(d.path()).unwrap();
    let data = b"hello blob".to_vec();
    let digest = sha256(&data);
    // Wrong content for the digest: refused, not stored, no partial file.
    let e = s.put(&digest, b"other content").unwrap_err().to_string();
    assert!(
        e.contains("size mismatch") || e.contains("digest mismatch"),
        "{e}"
    );
    let e = s.put(&digest, b"hello blox").unwrap_err().to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(!s.has(&digest));
    assert_eq!(
        std::fs::read_dir(d.path().join("ingest"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial"))
            .count(),
        0
    );
    s.put(&digest, &data).unwrap();
    assert_eq!(s.read(&digest).unwrap(), data);
    assert!(
        s.blob_path("sha256:../../etc/passwd").is_err(),
        "malformed digests are refused"
    );
    assert!(s.blob_path("md5:abcd").is_err());
}

#[test]
fn interrupted_write_leaves_nothing_complete() {
    let d = tempdir("store");
    let s = Store::open(d.path()).unwrap();
    let data = vec![42u8; 100_000];
    let digest = sha256(&data);
    {
        let mut w = s.writer(&digest, Some(data.len() as u64)).unwrap().unwrap();
        w.write_all(&data[..50_000]).unwrap();
        // dropped without commit: like a pull killed mid-blob
    }
    assert!(!s.has(&digest));
    let mut w = s.writer(&digest, Some(data.len() as u64)).unwrap().unwrap();
    w.write_all(&data).unwrap();
    w.commit().unwrap();
    assert!(s.has(&digest));
}

#[test]
fn concurrent_writers_of_one_blob() {
    let d = tempdir("store");
    let root = d.path().to_path_buf();
    let data = Arc::new(vec![7u8; 1 << 20]);
    let digest = sha256(&data);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (root, data, digest, barrier) =
                (root.clone(), data.clone(), digest.clone(), barrier.clone());
            std::thread::spawn(move || {
                let s = Store::open(&root).unwrap();
                barrier.wait();
                // Each writer holds the per-digest lock while writing; later ones find it done.
                match s.writer(&digest, Some(data.len() as u64)).unwrap() {
                    Some(mut w) => {
                        for c in data.chunks(4096) {
                            w.write_all(c).unwrap();
                        }
                        w.commit().unwrap();
                        1
                    }
                    None => 0,
                }
            })
        })
        .collect();
    let wrote: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(wrote, 1, "exactly one writer stores the blob");
    let s = Store::open(&root).unwrap();
    assert_eq!(s.read(&digest).unwrap(), *data);
}

#[test]
fn refs_and_gc() {
    let d = tempdir("store");
    let s = Store::open(d.path()).unwrap();
    let keep = s.put_auto(b"kept").unwrap();
    let drop_me = s.put_auto(b"garbage").unwrap();
    s.set_ref(
        "a:1",
        RefEntry {
            manifest: keep.clone(),
            config: keep.clone(),
            layers: vec![],
            chain_ids: vec![],
            source: "t".into(),
        },
    )
    .unwrap();
    assert_eq!(s.get_ref("a:1").unwrap().manifest, keep);
    assert!(matches!(
        s.get_ref("b:1"),
        Err(rpaas_images::Error::NotFound(_))
    ));
    // A stale partial from a killed pull (nobody holds its lock) is collected too.
    std::fs::write(
        d.path()
            .join("ingest")
            .join(format!("{}.partial", "ab".repeat(32))),
        b"half",
    )
    .unwrap();
    assert_eq!(s.gc().unwrap(), vec![drop_me.clone()]);
    assert!(s.has(&keep) && !s.has(&drop_me));
    assert!(!d
        .path()
        .join("ingest")
        .join(format!("{}.partial", "ab".repeat(32)))
        .exists());
    assert!(s.remove_ref("a:1").unwrap());
    assert!(!s.remove_ref("a:1").unwrap());
    assert_eq!(s.gc().unwrap(), vec![keep]);
}

#[test]
fn gc_removes_extractions_of_dead_unpackers() {
    let d = tempdir("gc-extract");
    let store = rpaas_images::ImageStore::open_overlay(d.path()).unwrap();
    // pid 4194304 is above the kernel's pid_max limit: never a live process.
    store
        .snapshotter
        .prepare("extract-4194304-1-sha256:abc", None)
        .unwrap();
    let mine = format!("extract-{}-1-sha256:def", std::process::id());
    store.snapshotter.prepare(&mine, None).unwrap();
    let r = store.gc().unwrap();
    assert_eq!(
        r.snapshots,
        vec!["extract-4194304-1-sha256:abc".to_string()]
    );
    assert!(
        store.snapshotter.stat(&mine).unwrap().is_some(),
        "a live unpack is left alone"
    );
    store.snapshotter.remove(&mine).unwrap();
}

#[test]
fn overlay_snapshot_semantics() {
    assert!(is_root(), "needs root (overlay mounts)");
    let d = tempdir("snap");
    let o = Overlay::open(&d.path().join("overlay")).unwrap();
    assert_eq!(o.name(), "overlay");
    // Layer 1: an active snapshot with no parent is a plain writable dir.
    let m = o.prepare("ex-1", None).unwrap();
    assert_eq!(m[0].kind, "bind");
    std::fs::write(m[0].source.join("one"), "1").unwrap();
    o.commit("chain-1", "ex-1").unwrap();
    assert!(o.stat("ex-1").unwrap().is_none());
    assert_eq!(o.stat("chain-1").unwrap().unwrap().kind, Kind::Committed);
    assert!(
        o.prepare("bad", Some("missing")).is_err(),
        "parent must exist"
    );
    // Layer 2 on top.
    let m = o.prepare("ex-2", Some("chain-1")).unwrap();
    assert_eq!(m[0].kind, "overlay");
    std::fs::write(o.upper_dir("ex-2").unwrap().join("two"), "2").unwrap();
    o.commit("chain-2", "ex-2").unwrap();
    assert!(
        o.prepare("x", Some("ex-2")).is_err(),
        "committed key is gone"
    );
    assert!(
        o.commit("chain-2", "chain-1").is_err(),
        "cannot commit twice"
    );

    // A container: active on chain-2, mounted, written, unmounted.
    let m = o.prepare("ctr", Some("chain-2")).unwrap();
    let target = d.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    mount_all(&m, &target).unwrap();
    let guard = MountGuard(target.clone());
    assert_eq!(std::fs::read_to_string(target.join("one")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(target.join("two")).unwrap(), "2");
    std::fs::write(target.join("three"), "3").unwrap();
    std::fs::remove_file(target.join("one")).unwrap();
    unmount_all(&target).unwrap();
    drop(guard);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "unmounted");
    assert!(
        o.usage("ctr").unwrap().inodes >= 2,
        "the container's own layer holds its writes"
    );
    // The committed layers are untouched by the container's writes.
    let m1 = o.view("v", Some("chain-1")).unwrap();
    assert_eq!(m1[0].kind, "bind");
    assert!(m1[0].source.join("one").exists());
    o.remove("v").unwrap();

    // Removal: refused while children exist; missing key is fine.
    let e = o.remove("chain-2").unwrap_err().to_string();
    assert!(e.contains("child"), "{e}");
    o.remove("ctr").unwrap();
    o.remove("chain-2").unwrap();
    o.remove("chain-1").unwrap();
    o.remove("never-existed").unwrap();
    assert!(o.walk().unwrap().is_empty());
    assert!(o.cleanup().unwrap().is_empty());
    // A snapshot directory without metadata (crash between the two) is cleaned up.
    std::fs::create_dir_all(d.path().join("overlay/snapshots/999/fs")).unwrap();
    assert_eq!(o.cleanup().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(d.path().join("overlay/snapshots"))
            .unwrap()
            .count(),
        0
    );
}
