//! Layer apply throughput: rpaas's applier vs `tar -xzf` (gzip) and `tar --zstd -xf`
//! on the same ~200 MB layer of real files (from /usr). Prints medians and the
//! ratio rpaas/tar (target ≥ 0.9).
//!
//! `cargo run --release -p rpaas-benches --bin image_apply [-- MB RUNS]` (env RPAAS_BENCH_DIR: where to unpack)

#[path = "../image_support.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use rpaas_images::apply::{apply_layer, Limits, WhiteoutMode};
use support::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mb: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let work = tempfile::Builder::new()
        .prefix("rpaas-bench-apply")
        .tempdir()?;
    let files = pick_files(Path::new("/usr/lib"), mb << 20);
    let bytes = tar_size(&files);
    println!(
        "layer: {} files, {:.0} MB of content, {runs} runs each",
        files.len(),
        bytes as f64 / 1e6
    );
    for (flag, name, tar_x) in [
        ("-z", "gzip", vec!["-xzf"]),
        ("--zstd", "zstd", vec!["--zstd", "-xf"]),
    ] {
        let layer = work.path().join(format!("layer.{name}"));
        make_layer(&files, &layer, flag)?;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for i in 0..runs {
            // Alternate who goes first so page-cache warmth does not favour one side.
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                let out = work.path().join("out");
                std::fs::create_dir(&out)?;
                if side == 0 {
                    let f = std::fs::File::open(&layer)?;
                    let (d, r) = time(|| {
                        apply_layer(&out, f, WhiteoutMode::Direct, Limits::default(), "bench")
                    });
                    r?;
                    ours.push(d);
                } else {
                    let (d, r) = time(|| {
                        run(Command::new("tar")
                            .args(&tar_x)
                            .arg(&layer)
                            .arg("-C")
                            .arg(&out))
                    });
                    r?;
                    theirs.push(d);
                }
                std::fs::remove_dir_all(&out)?;
            }
        }
        let (o, t) = (median(ours), median(theirs));
        println!(
            "{name:5} rpaas apply {:>8.1} ms ({:>6.1} MB/s)   tar {:>8.1} ms ({:>6.1} MB/s)   ratio rpaas/tar throughput {:.2} (target >= 0.90)",
            o.as_secs_f64() * 1e3,
            mbps(bytes, o),
            t.as_secs_f64() * 1e3,
            mbps(bytes, t),
            t.as_secs_f64() / o.as_secs_f64()
        );
    }
    Ok(())
}
