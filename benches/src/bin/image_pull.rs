//! Pull of a 5-layer image from a local docker-registry: rpaas (into an empty
//! store) vs `skopeo copy docker://… dir:…`, medians over RUNS.
//!
//! `cargo run --release -p rpaas-benches --bin image_pull [-- RUNS]`

#[path = "../image_support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rpaas_images::registry::{pull, PullOptions};
use rpaas_images::ImageStore;
use support::*;

struct Registry(std::process::Child);
impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let work = tempfile::Builder::new()
        .prefix("rpaas-bench-pull")
        .tempdir()?;
    let files = pick_files(Path::new("/usr/lib"), 100 << 20);
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = work.path().join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            work.path().join("registry").display()
        ),
    )?;
    let _reg = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = format!("127.0.0.1:{port}");
    let reference = format!("{host}/bench/pull:1");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("docker://{reference}")))?;

    let opts = PullOptions {
        insecure: vec![host.clone()],
        ..PullOptions::default()
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..runs {
        let store_dir = work.path().join(format!("store{i}"));
        let store = ImageStore::open_overlay(&store_dir)?;
        let (d, r) = time(|| pull(&store, &reference, &opts));
        r?;
        ours.push(d);
        drop(store);
        std::fs::remove_dir_all(&store_dir)?;
        let dest = work.path().join(format!("skopeo{i}"));
        let (d, r) = time(|| {
            run(Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("dir:{}", dest.display())))
        });
        r?;
        theirs.push(d);
        std::fs::remove_dir_all(&dest)?;
    }
    let total: u64 = layers
        .iter()
        .filter_map(|(p, _, _)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let (o, t) = (median(ours), median(theirs));
    println!(
        "pull 5 layers ({:.0} MB compressed): rpaas {:.0} ms, skopeo copy {:.0} ms; ratio rpaas/skopeo time {:.2}",
        total as f64 / 1e6,
        o.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        o.as_secs_f64() / t.as_secs_f64()
    );
    Ok(())
}
