//! Test support: build tar layers (including hostile ones, by writing raw header
//! bytes the `tar` crate's safe setters would refuse), compress them, and write
//! OCI image layouts — all locally, no downloads.
#![allow(dead_code)]

pub mod registry;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar layer under construction.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h
}

/// Put raw bytes in the header's name field (no validation: hostile names allowed).
fn raw_name(h: &mut tar::Header, name: &[u8]) {
    let n = &mut h.as_old_mut().name;
    n.fill(0);
    n[..name.len()].copy_from_slice(name);
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = header(tar::EntryType::Directory, mode, 0, 0, 0);
        raw_name(
            &mut h,
            format!("{}/", path.trim_end_matches('/')).as_bytes(),
        );
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn file_owned(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        raw_name(&mut h, path.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_owned(path, data, 0o644, 0, 0)
    }

    /// A file of `size` zero bytes streamed without holding it in memory twice.
    pub fn zeros(&mut self, path: &str, size: u64) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, size);
        raw_name(&mut h, path.as_bytes());
        h.set_cksum();
        self.b.append(&h, std::io::repeat(0).take_n(size)).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        raw_name(&mut h, path.as_bytes());
        h.set_link_name_literal(target).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
        raw_name(&mut h, path.as_bytes());
        h.set_link_name_literal(target).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn chardev(&mut self, path: &str, major: u32, minor: u32, mode: u32) -> &mut Self {
        let mut h = header(tar::EntryType::Char, mode, 0, 0, 0);
        raw_name(&mut h, path.as_bytes());
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Fifo, 0o600, 0, 0, 0);
        raw_name(&mut h, path.as_bytes());
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    /// A file preceded by a pax header carrying one xattr.
    pub fn file_xattr(&mut self, path: &str, data: &[u8], key: &str, value: &str) -> &mut Self {
        let body = format!("SCHILY.xattr.{key}={value}\n");
        // The record length counts its own digits.
        let mut len = body.len() + 3;
        loop {
            let candidate = format!("{len} {body}");
            if candidate.len() == len {
                break;
            }
            len = candidate.len();
        }
        let rec = format!("{len} {body}");
        let mut h = header(tar::EntryType::XHeader, 0o644, 0, 0, rec.len() as u64);
        raw_name(&mut h, b"PaxHeader");
        h.set_cksum();
        self.b.append(&h, rec.as_bytes()).unwrap();
        self.file(path, data)
    }

    /// busybox-static with one absolute symlink per applet, passwd and group.
    pub fn busybox(&mut self) -> &mut Self {
        for d in [
            "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr", "usr/bin",
            "usr/sbin", "var", "run", "home", "home/app",
        ] {
            self.dir(d, 0o755);
        }
        let bb = std::fs::read("/bin/busybox").expect("busybox-static is not installed");
        self.file_owned("bin/busybox", &bb, 0o755, 0, 0);
        let list = Command::new("/bin/busybox")
            .arg("--list-full")
            .output()
            .expect("busybox --list-full");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            self.symlink(applet, "/bin/busybox");
        }
        self.file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        );
        self.file(
            "etc/group",
            b"root:x:0:\napp:x:1000:\nextra:x:1001:app\nnogroup:x:65534:\n",
        );
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

trait TakeN: std::io::Read + Sized {
    fn take_n(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeN for R {}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

#[derive(Clone, Copy, Debug)]
pub enum Comp {
    Plain,
    Gzip,
    Zstd,
}

/// An image written as an OCI layout directory.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest_digest: String,
    pub layer_digests: Vec<String>,
    pub diff_ids: Vec<String>,
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    d
}

/// Write an OCI layout at `dir` holding one image tagged `tag`, with `layers`
/// (uncompressed tars, compressed as asked) and `config` merged into the image
/// config's "config" object.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[(Vec<u8>, Comp)],
    config: serde_json::Value,
) -> Layout {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for (tar, comp) in layers {
        diff_ids.push(sha256(tar));
        let (data, mt) = match comp {
            Comp::Plain => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Comp::Zstd => (zstd(tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
        };
        let d = put_blob(dir, &data);
        layer_digests.push(d.clone());
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()}));
    }
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": []
    });
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let cfg_digest = put_blob(dir, &cfg_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_bytes.len()},
        "layers": descs
    });
    let mb = serde_json::to_vec(&manifest).unwrap();
    let md = put_blob(dir, &mb);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mb.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Layout {
        dir: dir.to_path_buf(),
        manifest_digest: md,
        layer_digests,
        diff_ids,
    }
}

/// The test image: busybox base plus layers exercising whiteouts, an opaque dir,
/// a hardlink, a device node, a fifo, owners/modes, an xattr; gzip, zstd and plain.
pub fn test_image_layers() -> Vec<(Vec<u8>, Comp)> {
    let mut base = Layer::new();
    base.busybox();
    base.dir("data", 0o755).dir("data/old", 0o755);
    base.file("data/old/a.txt", b"a")
        .file("data/old/b.txt", b"b");
    base.dir("opq", 0o755).file("opq/lower.txt", b"lower");
    base.file("gone.txt", b"to be whited out");
    let mut l2 = Layer::new();
    l2.file(".wh.gone.txt", b"");
    l2.dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/upper.txt", b"upper");
    l2.file_owned("data/hard-src.txt", b"linked", 0o640, 1000, 1000);
    l2.hardlink("data/hard-link.txt", "data/hard-src.txt");
    l2.chardev("dev/rpaas-null", 1, 3, 0o666);
    l2.fifo("run/rpaas.fifo");
    l2.file_owned("usr/bin/rpaas-setuid", b"#!/bin/sh\n", 0o4755, 1000, 1001);
    l2.file_xattr("data/xattr.txt", b"x", "user.rpaas", "yes");
    let mut l3 = Layer::new();
    l3.file("data/old/.wh.a.txt", b"");
    l3.file("etc/motd", b"hello from rpaas\n");
    l3.symlink("data/abs-link", "/etc/motd");
    let mut l4 = Layer::new();
    l4.file("data/plain.txt", b"plain layer");
    vec![
        (base.finish(), Comp::Gzip),
        (l2.finish(), Comp::Gzip),
        (l3.finish(), Comp::Zstd),
        (l4.finish(), Comp::Plain),
    ]
}

/// The image config of the test image.
pub fn test_image_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["cat /etc/motd"],
        "Env": ["APP=rpaas"],
        "WorkingDir": "/data",
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/var/rpaas-vol": {}}
    })
}

/// Unmounts `path` on drop (tests must not leak mounts even when they fail).
pub struct MountGuard(pub PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A temp dir whose name contains "rpaas".
pub fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rpaas-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Check a rootfs holds exactly what `test_image_layers` describes.
pub fn check_tree(rootfs: &Path, motd: &str) {
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
