//! The layer applier against real directories: metadata, whiteouts in both modes,
//! and hostile layers (each refused with a clear error or contained in the root,
//! with a canary directory outside the root left untouched).

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rpaas_images::apply::{apply_layer, Limits, WhiteoutMode};
use rpaas_images::Error;
use support::*;

/// A root and, beside it, a canary directory with a file whose content and mtime we
/// check after every hostile apply.
struct Arena {
    _dir: tempfile::TempDir,
    root: PathBuf,
    canary: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempdir("apply");
        let root = dir.path().join("root");
        let canary = dir.path().join("canary");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::write(canary.join("victim"), "canary").unwrap();
        Arena {
            _dir: dir,
            root,
            canary,
        }
    }

    fn apply(
        &self,
        layer: Vec<u8>,
        mode: WhiteoutMode,
    ) -> Result<rpaas_images::apply::Stats, Error> {
        apply_layer(
            &self.root,
            std::io::Cursor::new(layer),
            mode,
            Limits::default(),
            "test-layer",
        )
    }

    fn canary_intact(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.canary)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("victim")],
            "canary dir changed"
        );
        assert_eq!(
            std::fs::read_to_string(self.canary.join("victim")).unwrap(),
            "canary"
        );
        assert_eq!(
            std::fs::metadata(self.canary.join("victim"))
                .unwrap()
                .nlink(),
            1,
            "canary got hardlinked"
        );
    }

    /// The canary's absolute path without its leading '/', for tar names.
    fn canary_rel(&self) -> String {
        self.canary
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string()
    }
}

fn layer_err(r: Result<rpaas_images::apply::Stats, Error>, needle: &str) -> String {
    let e = r.expect_err("hostile layer was accepted");
    let s = e.to_string();
    assert!(matches!(e, Error::Layer { .. }), "wrong error kind: {e:?}");
    assert!(
        s.contains(needle),
        "error {s:?} does not mention {needle:?}"
    );
    s
}

#[test]
fn metadata_and_diff_id() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.dir("d", 0o750)
        .file("d/f", b"content")
        .dir("d/sub", 0o700)
        .file("d/sub/g", b"g");
    let tar = l.finish();
    let want = sha256(&tar);
    for data in [tar.clone(), gzip(&tar), zstd(&tar)] {
        let s = a.apply(data, WhiteoutMode::Direct).unwrap();
        assert_eq!(
            s.diff_id, want,
            "diff id must be the sha256 of the uncompressed tar"
        );
        assert_eq!(s.bytes, 8);
    }
    let d = std::fs::metadata(a.root.join("d")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(
        d.mtime(),
        1_600_000_000,
        "directory mtime must be restored after its children"
    );
    assert_eq!(
        std::fs::metadata(a.root.join("d/sub")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        std::fs::read_to_string(a.root.join("d/f")).unwrap(),
        "content"
    );
}

#[test]
fn overlay_whiteouts_become_overlay_markers() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.dir("o", 0o755)
        .file("o/.wh..wh..opq", b"")
        .file("o/kept", b"k")
        .file(".wh.gone", b"");
    a.apply(l.finish(), WhiteoutMode::Overlay).unwrap();
    let wh = std::fs::symlink_metadata(a.root.join("gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout must be a 0/0 char device"
    );
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(a.root.join("o").as_os_str().as_encoded_bytes()).unwrap();
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            4,
        )
    };
    assert_eq!(&buf[..n.max(0) as usize], b"y");
    assert_eq!(std::fs::read_to_string(a.root.join("o/kept")).unwrap(), "k");
    assert_eq!(
        std::fs::metadata(a.root.join("o")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn direct_whiteouts_delete() {
    let a = Arena::new();
    let mut base = Layer::new();
    base.dir("o", 0o755)
        .file("o/old", b"old")
        .dir("o/deep", 0o755)
        .file("o/deep/x", b"x")
        .file("gone", b"g");
    a.apply(base.finish(), WhiteoutMode::Direct).unwrap();
    let mut l = Layer::new();
    l.file("o/new-before", b"n")
        .file("o/.wh..wh..opq", b"")
        .file("o/new", b"n")
        .file(".wh.gone", b"");
    a.apply(l.finish(), WhiteoutMode::Direct).unwrap();
    assert!(!a.root.join("gone").exists());
    let mut names: Vec<_> = std::fs::read_dir(a.root.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["new", "new-before"],
        "opaque dir must drop lower entries only"
    );
}

#[test]
fn dotdot_path_refused() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.file("../canary/victim", b"pwned");
    layer_err(a.apply(l.finish(), WhiteoutMode::Direct), "'..'");
    a.canary_intact();
    let mut l = Layer::new();
    l.file("ok/../../canary/new", b"pwned");
    layer_err(a.apply(l.finish(), WhiteoutMode::Overlay), "'..'");
    a.canary_intact();
}

#[test]
fn symlink_to_slash_then_write_through_stays_inside() {
    let a = Arena::new();
    let mut l = Layer::new();
    // esc -> / ; then write esc/<canary path>/victim: resolved inside the root.
    l.symlink("esc", "/");
    l.file(&format!("esc/{}/victim", a.canary_rel()), b"pwned");
    a.apply(l.finish(), WhiteoutMode::Direct).unwrap();
    a.canary_intact();
    let inside = a.root.join(a.canary_rel()).join("victim");
    assert_eq!(
        std::fs::read_to_string(inside).unwrap(),
        "pwned",
        "the write must land inside the root"
    );
}

#[test]
fn symlink_to_host_dir_then_write_through_refused() {
    let a = Arena::new();
    let mut l = Layer::new();
    // esc -> the canary's absolute path; in the root that path does not exist.
    l.symlink("esc", &a.canary.to_string_lossy());
    l.file("esc/victim", b"pwned");
    layer_err(a.apply(l.finish(), WhiteoutMode::Direct), "esc");
    a.canary_intact();
}

#[test]
fn symlink_then_replace_file_through_it_refused() {
    let a = Arena::new();
    // A symlink as the final component: a file entry replaces the link, never writes through it.
    let mut l = Layer::new();
    l.symlink("link", &a.canary.join("victim").to_string_lossy());
    l.file("link", b"pwned");
    a.apply(l.finish(), WhiteoutMode::Direct).unwrap();
    a.canary_intact();
    assert_eq!(
        std::fs::read_to_string(a.root.join("link")).unwrap(),
        "pwned"
    );
    assert!(!std::fs::symlink_metadata(a.root.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hardlink_to_host_file_refused() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.hardlink("h", &a.canary.join("victim").to_string_lossy());
    layer_err(
        a.apply(l.finish(), WhiteoutMode::Direct),
        "not found in the layer",
    );
    a.canary_intact();
    let mut l = Layer::new();
    l.hardlink("h", "../canary/victim");
    layer_err(a.apply(l.finish(), WhiteoutMode::Direct), "'..'");
    a.canary_intact();
    // Through a symlinked directory: still resolved inside the root.
    let mut l = Layer::new();
    l.symlink("up", &a.canary.to_string_lossy());
    l.hardlink("h", "up/victim");
    layer_err(
        a.apply(l.finish(), WhiteoutMode::Direct),
        "not found in the layer",
    );
    a.canary_intact();
}

#[test]
fn whiteout_climbing_out_refused() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.file("../canary/.wh.victim", b"");
    layer_err(a.apply(l.finish(), WhiteoutMode::Direct), "'..'");
    a.canary_intact();
    let mut l = Layer::new();
    l.file("../canary/.wh..wh..opq", b"");
    layer_err(a.apply(l.finish(), WhiteoutMode::Direct), "'..'");
    a.canary_intact();
    // Through a symlink to the canary: the whiteout resolves inside the root (no-op).
    let mut l = Layer::new();
    l.symlink("esc", &a.canary.to_string_lossy());
    l.file("esc/.wh.victim", b"").file("esc/.wh..wh..opq", b"");
    a.apply(l.finish(), WhiteoutMode::Direct).unwrap();
    a.canary_intact();
    let mut l = Layer::new();
    l.symlink("esc2", "/");
    l.file(&format!("esc2/{}/.wh.victim", a.canary_rel()), b"");
    a.apply(l.finish(), WhiteoutMode::Direct).unwrap();
    a.canary_intact();
}

#[test]
fn gzip_bomb_stopped_by_size_limit() {
    let a = Arena::new();
    // A multi-member gzip: one tar header for a 256 MiB file, then the same
    // compressed 1 MiB of zeros 256 times (cheap to build, ~1000:1 expansion).
    let mut h = tar::Header::new_gnu();
    h.set_path("bomb").unwrap();
    h.set_size(256 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut gz = gzip(h.as_bytes());
    let mib = gzip_best(&vec![0u8; 1 << 20]);
    for _ in 0..256 {
        gz.extend_from_slice(&mib);
    }
    gz.extend_from_slice(&gzip(&[0u8; 1024]));
    assert!(gz.len() < 2 << 20, "the bomb should be small compressed");
    let limits = Limits {
        max_bytes: 16 << 20,
        max_entries: 1000,
    };
    let e = apply_layer(
        &a.root,
        std::io::Cursor::new(gz),
        WhiteoutMode::Direct,
        limits,
        "bomb",
    )
    .unwrap_err();
    assert!(e.to_string().contains("size limit"), "{e}");
    assert!(
        !a.root.join("bomb").exists(),
        "nothing of the bomb may be written"
    );
    a.canary_intact();
}

#[test]
fn inode_flood_stopped_by_entry_limit() {
    let a = Arena::new();
    let mut l = Layer::new();
    for i in 0..200 {
        l.file(&format!("f{i}"), b"");
    }
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    let e = apply_layer(
        &a.root,
        std::io::Cursor::new(l.finish()),
        WhiteoutMode::Direct,
        limits,
        "flood",
    )
    .unwrap_err();
    assert!(e.to_string().contains("inode limit"), "{e}");
    assert!(std::fs::read_dir(&a.root).unwrap().count() <= 100);
}

#[test]
fn truncated_and_garbage_streams_refused() {
    let a = Arena::new();
    let mut l = Layer::new();
    l.file("f", &[7u8; 100_000]);
    let gz = gzip(&l.finish());
    let cut = gz[..gz.len() / 2].to_vec();
    let e = a.apply(cut, WhiteoutMode::Direct).unwrap_err();
    assert!(matches!(e, Error::Layer { .. }), "{e:?}");
    let p: &Path = &a.root;
    assert!(p.exists());
}
