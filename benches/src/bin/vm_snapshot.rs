//! Container rootfs from an unpacked image: thin snapshot (devmapper) vs
//! overlay, on the same image in the same run. Each run is `create_bundle`
//! (prepare the container snapshot + mount it + config.json) and, timed apart,
//! `remove_bundle` (unmount + remove the snapshot).
//!
//! Needs device-mapper, so it runs in the VM (TCG: absolute times are ~15x
//! off, the ratio is what counts):
//! `cargo build --release -p rpaas-benches --bin vm_snapshot &&
//!  tests/vm/run-in-vm --disk 0 -- target/release/vm_snapshot [RUNS]`

#[path = "../image_support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rpaas_images::snapshot::devmapper::{Config, DevmapperSnapshotter};
use rpaas_images::ImageStore;
use support::*;

const IMAGE: &str = "bench/vm-snapshot:1";

/// Tears the pool down even when the bench fails half-way.
struct PoolGuard(Config);
impl Drop for PoolGuard {
    fn drop(&mut self) {
        match DevmapperSnapshotter::new(self.0.clone()) {
            Ok(s) => {
                if let Err(e) = s.shutdown() {
                    eprintln!("pool teardown: {e}");
                }
            }
            Err(e) => eprintln!("pool teardown: {e}"),
        }
    }
}

fn measure(
    store: &ImageStore,
    work: &Path,
    tag: &str,
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let (d, top) = time(|| store.unpack(IMAGE));
    top?;
    println!(
        "{tag}: unpack of the image (once): {:.0} ms",
        d.as_secs_f64() * 1e3
    );
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dir = work.join(format!("{tag}-b{i}"));
        let (d, r) = time(|| store.create_bundle(IMAGE, &dir, &[]));
        r?;
        up.push(d);
        let (d, r) = time(|| store.remove_bundle(&dir));
        r?;
        down.push(d);
    }
    Ok((median(up), median(down)))
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    if !Path::new("/dev/mapper/control").exists() {
        anyhow::bail!(
            "no device-mapper here: run it in the VM (tests/vm/run-in-vm -- {})",
            std::env::args().next().unwrap_or_default()
        );
    }
    let work = tempfile::Builder::new()
        .prefix("rpaas-bench-vmsnap")
        .tempdir()?;
    // a 3-layer image of real files (~12 MB: TCG is slow)
    let files = pick_files(Path::new("/usr/lib"), 12 << 20);
    let chunk = files.len().div_ceil(3);
    let mut layers = Vec::new();
    for (i, part) in files.chunks(chunk).enumerate() {
        let plain = work.path().join(format!("l{i}.tar"));
        make_layer(part, &plain, "")?;
        let diff = diff_id_of(&plain)?;
        run(Command::new("gzip").arg("-1").arg(&plain))?;
        layers.push((
            plain.with_extension("tar.gz"),
            diff,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ));
    }
    let layout = work.path().join("layout");
    write_layout(&layout, &layers)?;

    let overlay = ImageStore::open_overlay(&work.path().join("ov"))?;
    overlay.import(&layout, IMAGE, None)?;
    let (ov_up, ov_down) = measure(&overlay, work.path(), "overlay", runs)?;

    let mut cfg = Config::loopback(
        work.path().join("dm/state"),
        "rpaas-bench-pool",
        work.path().join("dm/pool"),
        1 << 30,
    );
    cfg.base_size = 256 << 20;
    let _guard = PoolGuard(cfg.clone());
    let dm = ImageStore::open(
        &work.path().join("dm"),
        Box::new(DevmapperSnapshotter::new(cfg)?),
    )?;
    dm.import(&layout, IMAGE, None)?;
    let (dm_up, dm_down) = measure(&dm, work.path(), "devmapper", runs)?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{} files, {runs} runs, medians:", files.len());
    println!(
        "  prepare+mount  overlay {:8.2} ms   devmapper {:8.2} ms   ratio dm/overlay {:.2}",
        ms(ov_up),
        ms(dm_up),
        ms(dm_up) / ms(ov_up)
    );
    println!(
        "  unmount+remove overlay {:8.2} ms   devmapper {:8.2} ms   ratio dm/overlay {:.2}",
        ms(ov_down),
        ms(dm_down),
        ms(dm_down) / ms(ov_down)
    );
    Ok(())
}
