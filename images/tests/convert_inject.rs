//! Image config → runtime spec (user resolution through the rootfs's own files),
//! and file injection through the root fd.

mod support;

use std::os::unix::fs::MetadataExt;

use rpaas_images::convert::{resolve_user, runtime_spec, ImageConfigFile, ResolvedUser};
use rpaas_images::inject::{inject, parse_file_arg, FileSpec, Source};
use support::tempdir;

fn rootfs() -> tempfile::TempDir {
    let d = tempdir("convert");
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:1001:app\nweb:x:33:\n",
    )
    .unwrap();
    d
}

#[test]
fn users_resolve_through_the_image_files() {
    let r = rootfs();
    let u = |s: &str| resolve_user(r.path(), s, "img");
    assert_eq!(
        u("").unwrap(),
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![]
        }
    );
    assert_eq!(
        u("app").unwrap(),
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1001]
        }
    );
    assert_eq!(
        u("1000").unwrap().gid,
        1000,
        "a numeric uid in passwd takes its gid"
    );
    assert_eq!(
        u("4242").unwrap(),
        ResolvedUser {
            uid: 4242,
            gid: 0,
            additional_gids: vec![]
        }
    );
    assert_eq!(
        u("app:web").unwrap(),
        ResolvedUser {
            uid: 1000,
            gid: 33,
            additional_gids: vec![]
        }
    );
    assert_eq!(u("app:77").unwrap().gid, 77);
    let e = u("nobody-here").unwrap_err().to_string();
    assert!(
        e.contains("config.User") && e.contains("nobody-here") && e.contains("img"),
        "{e}"
    );
    let e = u("app:nogroup").unwrap_err().to_string();
    assert!(e.contains("group \"nogroup\" not found"), "{e}");
}

#[test]
fn passwd_symlinked_to_host_is_read_inside_the_root() {
    let r = rootfs();
    std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
    // On the host /etc/passwd has root; inside this root the link points nowhere.
    std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/passwd")).unwrap();
    let e = resolve_user(r.path(), "root", "img")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found in the image's /etc/passwd"), "{e}");
}

#[test]
fn spec_from_config() {
    let r = rootfs();
    let cfg: ImageConfigFile = serde_json::from_value(serde_json::json!({
        "config": {"Cmd": ["serve"], "Entrypoint": ["/app"], "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}, "53/udp": {}}}
    }))
    .unwrap();
    let s = runtime_spec(&cfg, r.path(), "img", "host").unwrap();
    assert_eq!(s["process"]["args"], serde_json::json!(["/app", "serve"]));
    assert_eq!(s["process"]["env"][0], rpaas_images::convert::DEFAULT_PATH);
    assert_eq!(s["process"]["cwd"], "/");
    assert_eq!(
        s["annotations"][rpaas_images::convert::EXPOSED_PORTS_ANNOTATION],
        "53/udp,80/tcp"
    );
    assert!(s["linux"]["maskedPaths"].as_array().unwrap().len() > 3);
    let empty: ImageConfigFile = serde_json::from_value(serde_json::json!({"config": {}})).unwrap();
    let e = runtime_spec(&empty, r.path(), "img", "h")
        .unwrap_err()
        .to_string();
    assert!(e.contains("Entrypoint") && e.contains("no command"), "{e}");
    let rel: ImageConfigFile =
        serde_json::from_value(serde_json::json!({"config": {"Cmd": ["x"], "WorkingDir": "rel"}}))
            .unwrap();
    assert!(runtime_spec(&rel, r.path(), "img", "h")
        .unwrap_err()
        .to_string()
        .contains("WorkingDir"));
}

#[test]
fn inject_replaces_by_rename_and_never_follows_links() {
    let r = rootfs();
    let outside = tempdir("outside");
    std::fs::write(outside.path().join("victim"), "canary").unwrap();
    // A symlink at the destination, and a symlinked parent dir, both pointing out.
    std::os::unix::fs::symlink(outside.path().join("victim"), r.path().join("etc/app.conf"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), r.path().join("conf.d")).unwrap();
    let mut f = FileSpec::new("/etc/app.conf", Source::Bytes(b"v1".to_vec()));
    f.mode = 0o600;
    inject(r.path(), &f).unwrap();
    let md = std::fs::symlink_metadata(r.path().join("etc/app.conf")).unwrap();
    assert!(md.is_file(), "the link must be replaced, not followed");
    assert_eq!(md.mode() & 0o7777, 0o600);
    let e = inject(
        r.path(),
        &FileSpec::new("/conf.d/x", Source::Bytes(b"x".to_vec())),
    );
    // conf.d resolves inside the root to a missing path: refused, nothing written outside.
    assert!(e.is_err());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "canary"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    // Replacing an existing file keeps a reader's open handle on the old content (rename).
    let mut old = std::fs::File::open(r.path().join("etc/app.conf")).unwrap();
    inject(
        r.path(),
        &FileSpec::new("/etc/app.conf", Source::Bytes(b"v2".to_vec())),
    )
    .unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut old, &mut s).unwrap();
    assert_eq!(s, "v1");
    assert_eq!(
        std::fs::read_to_string(r.path().join("etc/app.conf")).unwrap(),
        "v2"
    );
    assert!(inject(r.path(), &FileSpec::new("/../x", Source::Bytes(vec![]))).is_err());
}

#[test]
fn file_args() {
    let f = parse_file_arg("/src/a:/etc/a:0640:10:20").unwrap();
    assert_eq!((f.mode, f.uid, f.gid), (0o640, 10, 20));
    assert_eq!(f.dest, std::path::Path::new("/etc/a"));
    assert!(parse_file_arg("/src/a").is_err());
    assert!(parse_file_arg("/src/a:rel/path").is_err());
    assert!(parse_file_arg("/src/a:/etc/a:999").is_err());
    assert!(parse_file_arg("/src/a:/etc/a:0644:10").is_err());
}
