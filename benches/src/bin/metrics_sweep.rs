//! One metrics sweep over N running instances (`Host::metrics`), wall and
//! CPU time, against `podman stats --no-stream` over N podman containers of
//! the same busybox image.
//!
//! Usage: `metrics_sweep [N]` (default 100). Root. Everything it makes
//! (instances, podman containers and image, scratch tmpfs) is removed.
//!
//! Measured here (2 cores, debug rpaas-run, release library): 100 instances,
//! one sweep 51 ms wall / 51 ms CPU (layers cached) and 54 / 54 ms (every
//! layer walked); `podman stats --no-stream` over 100 containers 160 ms wall,
//! 87 ms CPU of its processes.

#[path = "../runtime_support.rs"]
mod runtime_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rpaas::{AppSpec, Host, HostConfig, MetricsOptions};
use runtime_support::{busybox_rootfs, children_cpu, find_rpaas_run, ms, Scratch};

const IMAGE: &str = "bench/sweep:1";
const PODMAN_IMAGE: &str = "localhost/rpaas-bench-sweep:1";
const PODMAN_PREFIX: &str = "rpaas-msweep-";

fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn check(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A one-layer OCI layout of a busybox rootfs at `dir`; the layer tar is
/// kept at `tar` (podman imports the same bytes).
fn layout(work: &Path, dir: &Path, tar: &Path) -> anyhow::Result<()> {
    let rootfs = work.join("rootfs");
    busybox_rootfs(&rootfs)?;
    check(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
            .arg(tar)
            .arg("."),
    )?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> anyhow::Result<(String, usize)> {
        let d = rpaas_images::store::sha256_digest(bytes);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes)?;
        Ok((d, bytes.len()))
    };
    let (layer, layer_n) = put(&std::fs::read(tar)?)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "Cmd": ["sleep", "100000"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]}
    });
    let (cfg, cfg_n) = put(&serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_n}]
    });
    let (m, m_n) = put(&serde_json::to_vec(&manifest)?)?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_n}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// (wall, cpu) of `f`, cpu from `cpu()` before and after.
fn timed<T>(cpu: fn() -> Duration, f: impl FnOnce() -> T) -> (Duration, Duration, T) {
    let (c0, t0) = (cpu(), Instant::now());
    let v = f();
    (t0.elapsed(), cpu().saturating_sub(c0), v)
}

fn median(mut v: Vec<(Duration, Duration)>) -> (Duration, Duration) {
    v.sort();
    v[v.len() / 2]
}

fn rpaas_sweeps(scratch: &Path, layout_dir: &Path, n: u32) -> anyhow::Result<()> {
    let cfg = HostConfig {
        state_root: scratch.join("state"),
        data_root: scratch.join("data"),
        runtime: Some(find_rpaas_run()?),
        parallel: 8,
        ..HostConfig::default()
    };
    let host = Host::open(cfg)?;
    host.images().import(layout_dir, IMAGE, None)?;
    let spec = AppSpec::from_json(&serde_json::to_vec(&serde_json::json!({
        "name": "sweep", "image": IMAGE, "instances": n,
        "resources": {"memory": "16M", "pids": 16}, "stop": {"grace": 0.1}
    }))?)?;
    let t0 = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        let st = host.deploy(&spec)?;
        eprintln!(
            "deployed {} instances in {:.1}s",
            st.running,
            t0.elapsed().as_secs_f64()
        );
        let cached = MetricsOptions::default();
        let walk = MetricsOptions {
            fs_max_age: Duration::ZERO,
            app: None,
        };
        host.metrics_with(&cached)?; // warm: layers walked once
        for (what, opts) in [("cached layers", &cached), ("layers walked", &walk)] {
            let mut runs = Vec::new();
            for _ in 0..5 {
                let (wall, cpu, m) = timed(self_cpu, || host.metrics_with(opts));
                let m = m?;
                if m.len() != n as usize || m.iter().any(|x| !x.errors.is_empty()) {
                    bail!(
                        "sweep: {} instances, errors {:?}",
                        m.len(),
                        m.iter().find(|x| !x.errors.is_empty())
                    );
                }
                runs.push((wall, cpu));
            }
            let (wall, cpu) = median(runs);
            println!(
                "rpaas Host::metrics ({what}), {n} instances: wall {:.1} ms, cpu {:.1} ms (median of 5)",
                ms(wall),
                ms(cpu)
            );
        }
        let text = rpaas::metrics::prometheus::render(&host.metrics()?);
        println!(
            "  prometheus text: {} bytes, {} samples",
            text.len(),
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
        Ok(())
    })();
    let _ = host.remove("sweep");
    result
}

fn podman_sweeps(tar: &Path, n: u32) -> anyhow::Result<()> {
    check(
        Command::new("podman")
            .arg("import")
            .arg(tar)
            .arg(PODMAN_IMAGE),
    )?;
    let names: Vec<String> = (1..=n).map(|i| format!("{PODMAN_PREFIX}{i}")).collect();
    let result = (|| -> anyhow::Result<()> {
        let t0 = Instant::now();
        for name in &names {
            check(Command::new("podman").args([
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "--memory",
                "16m",
                "--pids-limit",
                "16",
                // Under this session's hard limit (podman's default may not be).
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                PODMAN_IMAGE,
                "sleep",
                "100000",
            ]))?;
        }
        eprintln!(
            "podman: {n} containers in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        let mut runs = Vec::new();
        for _ in 0..5 {
            let (wall, cpu, out) = timed(children_cpu, || {
                check(Command::new("podman").args(["stats", "--no-stream", "--format", "json"]))
            });
            let v: serde_json::Value = serde_json::from_str(&out?)?;
            let ours = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|c| {
                            c["name"]
                                .as_str()
                                .is_some_and(|s| s.starts_with(PODMAN_PREFIX))
                        })
                        .count()
                })
                .unwrap_or(0);
            if ours != n as usize {
                bail!("podman stats listed {ours} of our {n} containers");
            }
            runs.push((wall, cpu));
        }
        let (wall, cpu) = median(runs);
        println!(
            "podman stats --no-stream, {n} containers: wall {:.1} ms, cpu {:.1} ms (median of 5)",
            ms(wall),
            ms(cpu)
        );
        Ok(())
    })();
    for chunk in names.chunks(50) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-i", "-t", "0"])
            .args(chunk)
            .output();
    }
    let _ = Command::new("podman").args(["rmi", PODMAN_IMAGE]).output();
    result
}

fn main() -> anyhow::Result<()> {
    let n: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse().context("N: a number of instances")?,
        None => 100,
    };
    let scratch = Scratch::new()?;
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work)?;
    let (layout_dir, tar) = (scratch.path().join("oci"), work.join("layer.tar"));
    layout(&work, &layout_dir, &tar)?;
    rpaas_sweeps(scratch.path(), &layout_dir, n)?;
    if runtime_support::which("podman").is_some() {
        podman_sweeps(&tar, n)?;
    } else {
        println!("podman: not installed, skipped");
    }
    Ok(())
}
