//! Prefetched image → mounted overlay rootfs + config.json (what `create` waits for
//! when the image is already unpacked). Target: median ≤ 5 ms. Also prints the
//! teardown (unmount + snapshot removal) and, as a peer, a plain `mount -t overlay`
//! of the same lowerdirs done by the mount(8) binary.
//!
//! `cargo run --release -p rpaas-benches --bin image_mount [-- RUNS]`

#[path = "../image_support.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use rpaas_images::ImageStore;
use support::*;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(51);
    let work = tempfile::Builder::new()
        .prefix("rpaas-bench-mount")
        .tempdir()?;
    // A 5-layer image of real files (~10 MB each).
    let files = pick_files(Path::new("/usr/lib"), 50 << 20);
    let chunk = files.len().div_ceil(5);
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
    let store = ImageStore::open_overlay(&work.path().join("store"))?;
    store.import(&layout, "bench/mount:1", None)?;
    let (d, top) = time(|| store.unpack("bench/mount:1"));
    let top = top?;
    println!(
        "prefetch (unpack 5 layers, {} files): {:.0} ms",
        files.len(),
        d.as_secs_f64() * 1e3
    );

    let mut up = Vec::new();
    let mut down = Vec::new();
    for i in 0..runs {
        let dir = work.path().join(format!("b{i}"));
        let (d, r) = time(|| store.create_bundle("bench/mount:1", &dir, &[]));
        r?;
        up.push(d);
        let (d, r) = time(|| store.remove_bundle(&dir));
        r?;
        down.push(d);
    }
    // Peer: the bare kernel cost of the same overlay mount, via mount(8).
    let lowers: Vec<String> = {
        let k = "bench-peer";
        let m = store.snapshotter.view(k, Some(&top))?;
        store.snapshotter.remove(k)?;
        m[0].options
            .iter()
            .filter_map(|o| o.strip_prefix("lowerdir=").map(str::to_string))
            .collect()
    };
    let mut peer = Vec::new();
    if let Some(lower) = lowers.first() {
        for _ in 0..runs {
            let t = tempfile::Builder::new()
                .prefix("rpaas-bench-peer")
                .tempdir_in(work.path())?;
            let (u, w, m) = (t.path().join("u"), t.path().join("w"), t.path().join("m"));
            for p in [&u, &w, &m] {
                std::fs::create_dir(p)?;
            }
            let opts = format!(
                "lowerdir={lower},upperdir={},workdir={}",
                u.display(),
                w.display()
            );
            let (d, r) = time(|| {
                run(Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o", &opts])
                    .arg(&m))
            });
            r?;
            peer.push(d);
            run(Command::new("umount").arg(&m))?;
        }
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let up = median(up);
    println!(
        "bundle (snapshot + mount + config.json): median {:.2} ms (target <= 5 ms)",
        ms(up)
    );
    println!(
        "bundle --remove (unmount + drop snapshot): median {:.2} ms",
        ms(median(down))
    );
    if !peer.is_empty() {
        let p = median(peer);
        println!(
            "peer: mount(8) -t overlay of the same layers: median {:.2} ms; ratio rpaas/peer {:.2}",
            ms(p),
            ms(up) / ms(p)
        );
    }
    store.remove("bench/mount:1")?;
    store.gc()?;
    Ok(())
}
