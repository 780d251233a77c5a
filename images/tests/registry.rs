//! Pulling from a real `docker-registry` on 127.0.0.1 (with and without htpasswd
//! auth, images pushed with skopeo), and from a fake registry that misbehaves:
//! dies mid-blob, serves wrong digests, lies about sizes, uses unknown media types.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rpaas_images::registry::{pull, PullOptions};
use rpaas_images::{Error, ImageStore};
use support::registry::{FakeRegistry, Registry, Reply};
use support::*;

struct BundleGuard<'a>(&'a ImageStore, std::path::PathBuf);
impl Drop for BundleGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_bundle(&self.1);
        let _ = nix::mount::umount2(&self.1.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn opts(host: &str) -> PullOptions {
    PullOptions {
        insecure: vec![host.to_string()],
        backoff: Duration::from_millis(20),
        ..PullOptions::default()
    }
}

#[test]
fn pull_from_registry_then_bundle() {
    assert!(is_root(), "needs root (mounts)");
    let work = tempdir("pull");
    let layout = write_layout(
        &work.path().join("layout"),
        "v1",
        &test_image_layers(),
        test_image_config(),
    );
    let reg = Registry::start(None);
    reg.push(&layout.dir, "v1", "rpaas/bb", None);

    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/bb:v1", reg.host());
    let entry = pull(&store, &reference, &opts(&reg.host())).unwrap();
    assert_eq!(entry.layers.len(), 4);
    assert_eq!(entry.chain_ids[0], layout.diff_ids[0]);
    for d in &entry.layers {
        assert!(store.store.has(d), "layer {d} not stored");
    }
    // A second pull finds everything in the store.
    pull(&store, &reference, &opts(&reg.host())).unwrap();

    let bdir = work.path().join("bundle");
    store.create_bundle(&reference, &bdir, &[]).unwrap();
    let _g = BundleGuard(&store, bdir.clone());
    check_tree(&bdir.join("rootfs"), "hello from rpaas\n");
}

#[test]
fn prefetch_unpacks_as_layers_arrive() {
    assert!(is_root(), "needs root (mounts)");
    let work = tempdir("prefetch");
    let layout = write_layout(
        &work.path().join("layout"),
        "v1",
        &test_image_layers(),
        test_image_config(),
    );
    let reg = Registry::start(None);
    reg.push(&layout.dir, "v1", "rpaas/pre", None);
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/pre:v1", reg.host());
    let (entry, top) =
        rpaas_images::registry::prefetch(&store, &reference, &opts(&reg.host())).unwrap();
    assert_eq!(&top, entry.chain_ids.last().unwrap());
    for c in &entry.chain_ids {
        assert!(
            store.snapshotter.stat(c).unwrap().is_some(),
            "chain {c} not unpacked"
        );
    }
    // Prefetched: a bundle only takes a snapshot (no new committed snapshots).
    let before = store.snapshotter.walk().unwrap().len();
    let bdir = work.path().join("bundle");
    store.create_bundle(&reference, &bdir, &[]).unwrap();
    let _g = BundleGuard(&store, bdir.clone());
    assert_eq!(store.snapshotter.walk().unwrap().len(), before + 1);
    check_tree(&bdir.join("rootfs"), "hello from rpaas\n");
}

#[test]
fn prefetch_reports_the_download_error() {
    let (blob, diff) = big_layer();
    let (mut routes, layer) = fake_image(
        blob,
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        diff,
    );
    let r = routes
        .get_mut(&format!("/v2/rpaas/fake/blobs/{layer}"))
        .unwrap();
    r.cut_at = Some(1000);
    r.cut_times = 100;
    r.ranges = false;
    let fake = FakeRegistry::start(routes);
    let work = tempdir("prefetch-fail");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = rpaas_images::registry::prefetch(
        &store,
        &format!("{}/rpaas/fake:v1", fake.host()),
        &opts(&fake.host()),
    )
    .unwrap_err();
    assert!(e.to_string().contains(&layer), "{e}");
    assert!(
        store.snapshotter.walk().unwrap().is_empty(),
        "no snapshot for a layer that never arrived"
    );
    no_partial_left(&store);
}

#[test]
fn pull_with_htpasswd_auth() {
    let work = tempdir("auth");
    let layout = write_layout(
        &work.path().join("layout"),
        "v1",
        &test_image_layers()[3..],
        serde_json::json!({"Cmd": ["true"]}),
    );
    let reg = Registry::start(Some(("rpaas", "s3cret")));
    reg.push(&layout.dir, "v1", "rpaas/small", Some(("rpaas", "s3cret")));
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/small:v1", reg.host());

    let e = pull(&store, &reference, &opts(&reg.host())).unwrap_err();
    assert!(matches!(e, Error::Registry { .. }), "{e:?}");
    assert!(store.store.refs().unwrap().is_empty());

    let mut o = opts(&reg.host());
    o.username = Some("rpaas".into());
    o.password = Some("wrong".into());
    assert!(
        pull(&store, &reference, &o).is_err(),
        "a wrong password must fail"
    );

    // Credentials from a docker-style config.json.
    use base64::Engine;
    let creds = work.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("rpaas:s3cret");
    std::fs::write(
        &creds,
        serde_json::json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let mut o = opts(&reg.host());
    o.creds_file = Some(creds);
    let entry = pull(&store, &reference, &o).unwrap();
    // skopeo gzips plain layers on push: compare the uncompressed identity.
    assert_eq!(entry.chain_ids[0], layout.diff_ids[0]);
}

/// A one-layer image served by the fake registry; returns (routes, layer digest).
fn fake_image(
    layer_blob: Vec<u8>,
    declared_size: Option<usize>,
    media_type: &str,
    diff_id: String,
) -> (HashMap<String, Reply>, String) {
    let layer_digest = sha256(&layer_blob);
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    }))
    .unwrap();
    let cfg_digest = sha256(&cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg.len()},
        "layers": [{"mediaType": media_type, "digest": layer_digest, "size": declared_size.unwrap_or(layer_blob.len())}]
    }))
    .unwrap();
    let mut routes = HashMap::new();
    routes.insert(
        "/v2/rpaas/fake/manifests/v1".to_string(),
        Reply::new("application/vnd.oci.image.manifest.v1+json", manifest),
    );
    routes.insert(
        format!("/v2/rpaas/fake/blobs/{cfg_digest}"),
        Reply::new("application/octet-stream", cfg),
    );
    routes.insert(
        format!("/v2/rpaas/fake/blobs/{layer_digest}"),
        Reply::new("application/octet-stream", layer_blob),
    );
    (routes, layer_digest)
}

fn big_layer() -> (Vec<u8>, String) {
    let mut l = Layer::new();
    // Incompressible-ish content so the blob is large enough to be cut in the middle.
    let data: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    l.file("payload.bin", &data);
    let tar = l.finish();
    let diff = sha256(&tar);
    (gzip(&tar), diff)
}

fn no_partial_left(store: &ImageStore) {
    let ingest = store.root().join("ingest");
    let partial: Vec<_> = std::fs::read_dir(&ingest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(
        partial.is_empty(),
        "half-downloaded files left: {partial:?}"
    );
}

#[test]
fn registry_dies_mid_blob_then_resumes() {
    let (blob, diff) = big_layer();
    let (mut routes, layer) = fake_image(
        blob.clone(),
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        diff,
    );
    let r = routes
        .get_mut(&format!("/v2/rpaas/fake/blobs/{layer}"))
        .unwrap();
    r.cut_at = Some(blob.len() / 2);
    r.cut_times = 1;
    let fake = FakeRegistry::start(routes);
    let work = tempdir("resume");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/fake:v1", fake.host());
    pull(&store, &reference, &opts(&fake.host())).unwrap();
    assert!(store.store.has(&layer));
    let log = fake.requests();
    let blob_reqs: Vec<_> = log.iter().filter(|l| l.contains(&layer)).collect();
    assert_eq!(blob_reqs.len(), 2, "{log:?}");
    assert!(
        blob_reqs[1].contains(&format!("range={}", blob.len() / 2)),
        "the retry must resume: {log:?}"
    );
    no_partial_left(&store);
}

#[test]
fn registry_keeps_dying_nothing_half_done_visible() {
    let (blob, diff) = big_layer();
    let (mut routes, layer) = fake_image(
        blob.clone(),
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        diff,
    );
    let r = routes
        .get_mut(&format!("/v2/rpaas/fake/blobs/{layer}"))
        .unwrap();
    r.cut_at = Some(1000);
    r.cut_times = 100;
    r.ranges = false;
    let fake = FakeRegistry::start(routes);
    let work = tempdir("dying");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/fake:v1", fake.host());
    let e = pull(&store, &reference, &opts(&fake.host())).unwrap_err();
    assert!(e.to_string().contains(&layer), "{e}");
    assert!(!store.store.has(&layer), "a cut blob must not be stored");
    assert!(
        store.store.refs().unwrap().is_empty(),
        "no ref for a failed pull"
    );
    no_partial_left(&store);
}

#[test]
fn wrong_digest_refused_not_stored() {
    let (blob, diff) = big_layer();
    let (mut routes, layer) = fake_image(
        blob.clone(),
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        diff,
    );
    let mut evil = blob.clone();
    let n = evil.len();
    evil[n / 2] ^= 0xff;
    routes
        .get_mut(&format!("/v2/rpaas/fake/blobs/{layer}"))
        .unwrap()
        .body = evil;
    let fake = FakeRegistry::start(routes);
    let work = tempdir("digest");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = pull(
        &store,
        &format!("{}/rpaas/fake:v1", fake.host()),
        &opts(&fake.host()),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Content { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("digest"), "{e}");
    assert!(!store.store.has(&layer));
    no_partial_left(&store);
    let tries = fake
        .requests()
        .iter()
        .filter(|l| l.contains(&layer))
        .count();
    assert_eq!(tries, 1, "bad content must not be retried");
}

#[test]
fn manifest_lying_about_sizes_refused() {
    let (blob, diff) = big_layer();
    for declared in [blob.len() - 100, blob.len() + 100] {
        let (routes, layer) = fake_image(
            blob.clone(),
            Some(declared),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            diff.clone(),
        );
        let fake = FakeRegistry::start(routes);
        let work = tempdir("size");
        let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
        let e = pull(
            &store,
            &format!("{}/rpaas/fake:v1", fake.host()),
            &opts(&fake.host()),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Content { .. }), "{e:?}");
        let s = e.to_string();
        assert!(
            s.contains("larger than") || s.contains("size mismatch"),
            "{s}"
        );
        assert!(!store.store.has(&layer));
        no_partial_left(&store);
    }
}

#[test]
fn unknown_media_type_refused() {
    let (blob, diff) = big_layer();
    let (routes, layer) = fake_image(blob, None, "application/vnd.rpaas.mystery.v1", diff);
    let fake = FakeRegistry::start(routes);
    let work = tempdir("media");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let e = pull(
        &store,
        &format!("{}/rpaas/fake:v1", fake.host()),
        &opts(&fake.host()),
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("unknown media type") && s.contains("application/vnd.rpaas.mystery.v1"),
        "{s}"
    );
    assert!(
        !store.store.has(&layer),
        "nothing of an unknown image is downloaded"
    );
}

#[test]
fn wrong_diff_id_refused_at_unpack() {
    let (blob, _) = big_layer();
    let (routes, _) = fake_image(
        blob,
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        format!("sha256:{}", "0".repeat(64)),
    );
    let fake = FakeRegistry::start(routes);
    let work = tempdir("diffid");
    let store = ImageStore::open_overlay(&work.path().join("store")).unwrap();
    let reference = format!("{}/rpaas/fake:v1", fake.host());
    pull(&store, &reference, &opts(&fake.host())).unwrap();
    let e = store.unpack(&reference).unwrap_err();
    assert!(e.to_string().contains("diff id"), "{e}");
    assert!(
        store.snapshotter.walk().unwrap().is_empty(),
        "a refused layer leaves no snapshot"
    );
}
