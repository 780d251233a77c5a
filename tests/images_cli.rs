//! `rpaas-run image …` / `bundle …` end to end: an image built here from
//! busybox-static (layers made by GNU tar: gzip, zstd, plain; whiteouts, an opaque
//! dir, a hardlink, a device node, absolute symlinks), pushed with skopeo to a
//! docker-registry on 127.0.0.1, pulled, bundled, compared with the expected tree,
//! and run with `rpaas-run run`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha(data: &[u8]) -> String {
    rpaas_images::store::sha256_digest(data)
}

/// A tar layer of directory `dir` compressed as asked; returns (blob, diff id, media type).
fn layer(dir: &Path, out: &Path, comp: &str) -> (Vec<u8>, String, &'static str) {
    let plain = out.with_extension("tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-cf"])
        .arg(&plain)
        .arg("."));
    let raw = std::fs::read(&plain).unwrap();
    let diff = sha(&raw);
    let (blob, mt) = match comp {
        "gzip" => {
            sh(Command::new("gzip").args(["-k", "-f"]).arg(&plain));
            (
                std::fs::read(plain.with_extension("tar.gz")).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        "zstd" => {
            sh(Command::new("zstd").args(["-q", "-f", "-k"]).arg(&plain));
            (
                std::fs::read(plain.with_extension("tar.zst")).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        }
        _ => (raw, "application/vnd.oci.image.layer.v1.tar"),
    };
    (blob, diff, mt)
}

fn put(dir: &Path, data: &[u8]) -> String {
    let d = sha(data);
    std::fs::write(dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
    d
}

/// The three layer directories and the expected final tree (built by applying the
/// same changes with plain file operations).
struct Fixture {
    _tmp: tempfile::TempDir,
    layout: PathBuf,
    expected: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("rpaas-images-cli")
        .tempdir()
        .unwrap();
    let w = tmp.path().to_path_buf();
    let (l1, l2, l3, exp) = (w.join("l1"), w.join("l2"), w.join("l3"), w.join("expected"));
    // Layer 1: busybox + data.
    busybox_rootfs(&l1);
    for (p, c) in [
        ("data/old/a.txt", "a"),
        ("data/old/b.txt", "b"),
        ("opq/lower.txt", "lower"),
        ("gone.txt", "gone"),
    ] {
        std::fs::create_dir_all(l1.join(p).parent().unwrap()).unwrap();
        std::fs::write(l1.join(p), c).unwrap();
    }
    // Layer 2: whiteout, opaque dir, hardlink, device node, motd.
    for d in ["opq", "data", "dev", "etc"] {
        std::fs::create_dir_all(l2.join(d)).unwrap();
    }
    std::fs::write(l2.join(".wh.gone.txt"), "").unwrap();
    std::fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
    std::fs::write(l2.join("opq/upper.txt"), "upper").unwrap();
    std::fs::write(l2.join("data/hard-src.txt"), "linked").unwrap();
    std::fs::hard_link(l2.join("data/hard-src.txt"), l2.join("data/hard-link.txt")).unwrap();
    nix::sys::stat::mknod(
        &l2.join("dev/rpaas-null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    std::fs::write(l2.join("etc/motd"), "hello from rpaas\n").unwrap();
    std::os::unix::fs::symlink("/etc/motd", l2.join("data/abs-link")).unwrap();
    // Layer 3: a whiteout in a lower dir.
    std::fs::create_dir_all(l3.join("data/old")).unwrap();
    std::fs::write(l3.join("data/old/.wh.a.txt"), "").unwrap();

    // Expected: l1, then l2's changes, then l3's.
    sh(Command::new("cp").arg("-a").arg(&l1).arg(&exp));
    std::fs::remove_file(exp.join("gone.txt")).unwrap();
    std::fs::remove_file(exp.join("opq/lower.txt")).unwrap();
    sh(Command::new("cp")
        .args(["-a", "--no-target-directory"])
        .arg(&l2)
        .arg(&exp)
        .arg("-T")
        .env("LC_ALL", "C"));
    for wh in [".wh.gone.txt", "opq/.wh..wh..opq"] {
        std::fs::remove_file(exp.join(wh)).unwrap();
    }
    std::fs::remove_file(exp.join("data/old/a.txt")).unwrap();

    // The OCI layout.
    let layout = w.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs = vec![];
    let mut diffs = vec![];
    for (dir, comp) in [(&l1, "gzip"), (&l2, "zstd"), (&l3, "plain")] {
        let (blob, diff, mt) = layer(dir, &dir.with_extension("layer"), comp);
        let d = put(&layout, &blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
        diffs.push(diff);
    }
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["cat /etc/motd; cat /etc/app.conf; ls /opq; id -u; pwd; test -d /var/rpaas-vol && echo vol"],
            "User": "app", "WorkingDir": "/data", "Volumes": {"/var/rpaas-vol": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": diffs}
    }))
    .unwrap();
    let cd = put(&layout, &cfg);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs
    }))
    .unwrap();
    let md = put(&layout, &m);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
        .unwrap(),
    )
    .unwrap();
    Fixture {
        _tmp: tmp,
        layout,
        expected: exp,
        work: w,
    }
}

/// path → (type, mode, uid, gid, content or link target or rdev, inode-group for hardlinks)
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
        inodes: &mut BTreeMap<u64, String>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = p.symlink_metadata().unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                walk(root, &p, out, inodes);
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link:{}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                format!("chr:{}", md.rdev())
            } else if ft.is_file() {
                let first = inodes
                    .entry(md.ino())
                    .or_insert_with(|| rel.clone())
                    .clone();
                let digest = if md.len() > 1 << 20 {
                    format!("{}B", md.len())
                } else {
                    rpaas_images::store::sha256_digest(&std::fs::read(&p).unwrap())
                };
                format!(
                    "file:{digest}:nlink{}:{}",
                    md.nlink(),
                    if first == rel { "" } else { "hardlink" }
                )
            } else {
                "other".into()
            };
            out.insert(
                rel,
                format!(
                    "{what} mode={:o} {}:{}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid()
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut BTreeMap::new());
    out
}

struct Registry(
    std::process::Child,
    u16,
    #[allow(dead_code)] tempfile::TempDir,
);
impl Registry {
    fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("rpaas-registry")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let r = Registry(child, port, dir);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start");
    }
}
impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the bundle through the CLI (and, failing that, lazily unmounts) on drop.
struct BundleGuard(Vec<String>, PathBuf);
impl Drop for BundleGuard {
    fn drop(&mut self) {
        let mut args: Vec<&str> = self.0.iter().map(String::as_str).collect();
        let dir = self.1.display().to_string();
        args.extend(["bundle", "--remove", &dir]);
        let _ = Command::new(rpaas_run_bin()).args(&args).output();
        let _ = nix::mount::umount2(&self.1.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(rpaas_run_bin())
        .args(args)
        .output()
        .expect("spawn rpaas-run")
}

fn ok(args: &[&str]) -> String {
    let out = run_cli(args);
    assert!(
        out.status.success(),
        "rpaas-run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pull_bundle_run_from_local_registry() {
    assert!(is_root(), "needs root");
    let fx = fixture();
    let reg = Registry::start();
    let host = format!("127.0.0.1:{}", reg.1);
    let reference = format!("{host}/rpaas/cli:v1");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", fx.layout.display()))
        .arg(format!("docker://{reference}")));

    let image_root = fx.work.join("store");
    let ir = image_root.display().to_string();
    let g = ["--image-root", ir.as_str()];
    let with =
        |rest: &[&str]| -> Vec<String> { g.iter().chain(rest).map(|s| s.to_string()).collect() };
    let call = |rest: &[&str]| ok(&with(rest).iter().map(String::as_str).collect::<Vec<_>>());

    // Plain http is refused unless the registry is named insecure.
    let refused = run_cli(
        &with(&["image", "pull", &reference])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!refused.status.success());
    call(&["image", "pull", "--insecure", &reference]);
    assert!(call(&["image", "ls"]).contains(&reference));
    let inspect: serde_json::Value =
        serde_json::from_str(&call(&["image", "inspect", &reference])).unwrap();
    assert_eq!(inspect["unpacked"], false);
    call(&["image", "prefetch", "--insecure", &reference]);
    let inspect: serde_json::Value =
        serde_json::from_str(&call(&["image", "inspect", &reference])).unwrap();
    assert_eq!(inspect["unpacked"], true);

    let conf = fx.work.join("app.conf");
    std::fs::write(&conf, "port=8080\n").unwrap();
    let bdir = fx.work.join("bundle");
    let file_arg = format!("{}:/etc/app.conf:0640:1000:1000", conf.display());
    call(&[
        "bundle",
        &reference,
        bdir.to_str().unwrap(),
        "--file",
        &file_arg,
    ]);
    let _guard = BundleGuard(with(&[]), bdir.clone());
    let rootfs = bdir.join("rootfs");

    // The rootfs is exactly the expected tree, plus the volume dir and the injected file.
    let mut got = listing(&rootfs);
    let app = got.remove("etc/app.conf").expect("injected file missing");
    assert!(
        app.starts_with(&format!("file:{}", sha(b"port=8080\n")))
            && app.ends_with("mode=640 1000:1000"),
        "{app}"
    );
    assert!(got.remove("var/rpaas-vol").is_some(), "volume dir missing");
    let want = listing(&fx.expected);
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .collect();
    let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "tree differs:\nwanted but not found: {missing:#?}\nunexpected: {extra:#?}"
    );

    // Run it with rpaas-run.
    let state = state_root();
    let id = unique_id("rpaas-img");
    let out = rpaas(
        state.path(),
        &["run", "--bundle", bdir.to_str().unwrap(), &id],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "hello from rpaas\nport=8080\nupper.txt\n1000\n/data\nvol\n"
    );

    // Remove: nothing mounted, snapshot gone; rm + gc empties the store.
    call(&["bundle", "--remove", bdir.to_str().unwrap()]);
    assert!(!rootfs.exists() || std::fs::read_dir(&rootfs).unwrap().next().is_none());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(bdir.to_str().unwrap()),
        "bundle still mounted"
    );
    call(&["image", "rm", &reference]);
    let gc = call(&["image", "gc"]);
    assert_eq!(
        gc.lines().filter(|l| l.starts_with("snapshot ")).count(),
        3,
        "{gc}"
    );
    assert_eq!(
        gc.lines().filter(|l| l.starts_with("blob ")).count(),
        5,
        "{gc}"
    );
    assert_eq!(
        std::fs::read_dir(image_root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn import_archive_offline() {
    assert!(is_root(), "needs root");
    let fx = fixture();
    let archive = fx.work.join("image.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&fx.layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    let ir = fx.work.join("store").display().to_string();
    let out = ok(&[
        "--image-root",
        &ir,
        "image",
        "import",
        archive.to_str().unwrap(),
        "local/app:1",
        "--unpack",
    ]);
    assert!(out.starts_with("local/app:1 sha256:"), "{out}");
    let bdir = fx.work.join("b");
    ok(&[
        "--image-root",
        &ir,
        "bundle",
        "local/app:1",
        bdir.to_str().unwrap(),
    ]);
    let _guard = BundleGuard(vec!["--image-root".into(), ir.clone()], bdir.clone());
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bdir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(
        std::fs::read_to_string(bdir.join("rootfs/etc/motd")).unwrap(),
        "hello from rpaas\n"
    );
    // An unknown image is a clear error naming it.
    let bad = run_cli(&[
        "--image-root",
        &ir,
        "bundle",
        "nope/missing:1",
        fx.work.join("b2").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope/missing:1"));
}
