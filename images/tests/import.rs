//! Import without a registry: a `docker save` style archive and a tarred OCI layout.

mod support;

use std::process::Command;

use rpaas_images::ImageStore;
use support::*;

#[test]
fn docker_save_archive_imports_and_unpacks() {
    let work = tempdir("docker-archive");
    let dir = work.path().join("save");
    std::fs::create_dir_all(dir.join("l1")).unwrap();
    std::fs::create_dir_all(dir.join("l2")).unwrap();
    let mut a = Layer::new();
    a.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/old", b"old");
    let mut b = Layer::new();
    b.file("etc/.wh.old", b"").file("etc/new", b"new");
    let (ta, tb) = (a.finish(), b.finish());
    std::fs::write(dir.join("l1/layer.tar"), &ta).unwrap();
    // docker save may also carry compressed layers: detected from the bytes.
    std::fs::write(dir.join("l2/layer.tar"), gzip(&tb)).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&ta), sha256(&tb)]}
    }))
    .unwrap();
    let cfg_name = format!("{}.json", &sha256(&config)[7..]);
    std::fs::write(dir.join(&cfg_name), &config).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&serde_json::json!([{
            "Config": cfg_name, "RepoTags": ["rpaas/saved:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]
        }]))
        .unwrap(),
    )
    .unwrap();
    let archive = work.path().join("saved.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());

    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = store.import(&archive, "rpaas/saved:1", None).unwrap();
    assert_eq!(e.layers.len(), 2);
    assert_eq!(e.chain_ids[0], sha256(&ta));
    assert!(e.source.starts_with("import:"));
    if is_root() {
        let top = store.unpack("rpaas/saved:1").unwrap();
        assert_eq!(&top, e.chain_ids.last().unwrap());
    }
    // The import scratch directory is gone.
    let leftovers: Vec<_> = std::fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rpaas-import"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn archive_symlinks_cannot_read_host_files() {
    let work = tempdir("import-symlink");
    let host_secret = work.path().join("secret");
    std::fs::write(&host_secret, "host secret").unwrap();
    let dir = work.path().join("save");
    std::fs::create_dir_all(&dir).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["x"]},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    std::fs::write(dir.join("c.json"), config).unwrap();
    std::os::unix::fs::symlink(&host_secret, dir.join("layer.tar")).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "Layers": ["layer.tar"]}]))
            .unwrap(),
    )
    .unwrap();
    let archive = work.path().join("evil.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = store
        .import(&archive, "evil:1", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer.tar"), "{e}");
    assert!(
        !store.store.has(&sha256(b"host secret")),
        "a host file was copied into the store"
    );
}

#[test]
fn import_refuses_what_is_not_an_image() {
    let work = tempdir("not-image");
    std::fs::create_dir_all(work.path().join("empty")).unwrap();
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = store
        .import(&work.path().join("empty"), "x:1", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("neither an OCI layout") && e.contains("empty"),
        "{e}"
    );
    let e = store
        .import(&work.path().join("missing"), "x:1", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
    // A layout whose blob does not match its digest is refused and nothing is registered.
    let layout = write_layout(
        &work.path().join("layout"),
        "v1",
        &test_image_layers()[3..],
        serde_json::json!({"Cmd": ["x"]}),
    );
    let blob = layout
        .dir
        .join("blobs/sha256")
        .join(&layout.layer_digests[0][7..]);
    let mut data = std::fs::read(&blob).unwrap();
    data[0] ^= 1;
    std::fs::write(&blob, data).unwrap();
    let e = store
        .import(&layout.dir, "x:1", Some("v1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(store.store.refs().unwrap().is_empty());
    assert!(!store.store.has(&layout.layer_digests[0]));
}
