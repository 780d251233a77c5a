//! Shared by the `image_*` bench binaries: timing, medians, and building layers
//! and images from real files with the system's `tar` (no downloads).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Regular files under `root` (walked in order) until `budget` bytes: a file list for tar.
pub fn pick_files(root: &Path, budget: u64) -> Vec<PathBuf> {
    fn walk(dir: &Path, budget: u64, total: &mut u64, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut ents: Vec<_> = rd.flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            if *total >= budget {
                return;
            }
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                walk(&e.path(), budget, total, out);
            } else if md.is_file() || md.file_type().is_symlink() {
                *total += md.len();
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    walk(root, budget, &mut total, &mut out);
    out
}

/// `tar -cf OUT` of `files` (absolute paths stored relative to /), compressed by `flag`
/// ("" | "-z" | "--zstd").
pub fn make_layer(files: &[PathBuf], out: &Path, flag: &str) -> anyhow::Result<()> {
    let list = out.with_extension("list");
    let text: String = files
        .iter()
        .map(|p| format!("{}\n", p.strip_prefix("/").unwrap_or(p).display()))
        .collect();
    std::fs::write(&list, text)?;
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg("/");
    if !flag.is_empty() {
        cmd.arg(flag);
    }
    cmd.arg("-cf").arg(out).arg("-T").arg(&list);
    run(&mut cmd)?;
    std::fs::remove_file(&list)?;
    Ok(())
}

/// Uncompressed size of a layer (for throughput).
pub fn tar_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|p| p.symlink_metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// An OCI layout at `dir` with the given (already compressed) layer files and the
/// diff ids of their uncompressed tars; returns nothing, tag is "bench".
pub fn write_layout(dir: &Path, layers: &[(PathBuf, String, &str)]) -> anyhow::Result<()> {
    use rpaas_images::store::sha256_digest;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for (path, diff, mt) in layers {
        let data = std::fs::read(path)?;
        let d = sha256_digest(&data);
        std::fs::write(blobs.join(&d[7..]), &data)?;
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()}));
        diffs.push(diff.clone());
    }
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diffs}
    }))?;
    let cd = sha256_digest(&cfg);
    std::fs::write(blobs.join(&cd[7..]), &cfg)?;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs
    }))?;
    let md = sha256_digest(&m);
    std::fs::write(blobs.join(&md[7..]), &m)?;
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))?,
    )?;
    Ok(())
}

/// sha256 of a file's uncompressed content, via the system tools (diff id).
pub fn diff_id_of(tar_path: &Path) -> anyhow::Result<String> {
    let data = std::fs::read(tar_path)?;
    Ok(rpaas_images::store::sha256_digest(&data))
}

pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}
