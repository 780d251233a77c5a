//! app_scale (issue 13): an app scaled out 0→20 and back in 20→0 by the
//! library (`rpaas::Host`) beside Docker 20.10 and podman 4.3 (crun), in one
//! run, on one image and one host.
//!
//! All three run the same busybox-httpd image, built here as an OCI layout
//! (`rpaas` imports it; `skopeo` turns it into a docker-archive that `docker
//! load` and `podman load` take), one file injected into each instance (the
//! page it serves: `files` of the AppSpec for rpaas, `create` + `cp` + `start`
//! for docker and podman, one instance after another) and a bridged IP per
//! instance (rpaas: the host's pool on a bridge inside a test netns; docker: a
//! user-defined bridge network with `--ip`; podman: a CNI bridge network with
//! `--ip`). The app is `sh` as pid 1 running httpd, with a TERM trap, so the
//! graceful stop is the same quick exit everywhere.
//!
//! Measured, medians over RPAAS_BENCH_ROUNDS rounds (default 3, the systems'
//! order rotated each round):
//!  - scale-out 0→20: wall time of the call(s), and per instance the time from
//!    the start of the scale-out until it answers HTTP on its address (p50,
//!    p95, last), probed from the LAN (the bridge's netns for rpaas, the host
//!    for docker and podman, whose bridges live there);
//!  - scale-in 20→0: graceful stop and full removal (rpaas `scale(app, 0)`,
//!    `docker stop` + `docker rm` of the 20, the same with podman);
//!  - the host memory each running instance costs besides the app: PSS of
//!    rpaas's keeper, Docker's containerd-shim, podman's conmon;
//!  - once: restart the Docker daemon (no live-restore) vs kill -9 the process
//!    that embeds rpaas and call `Host::recover()` from a new one: instances
//!    still running.
//!
//! Every state root is on a private tmpfs mounted here (/run on this host is
//! ext4): rpaas's state and data roots, dockerd's --data-root and --exec-root,
//! podman's --root and --runroot. dockerd (Debian's `docker.io`, installed with
//! apt-get when missing) is started by the bench with everything private
//! (socket, pidfile, config file, cgroup parent; no iptables, no ip_forward
//! change, no docker0) and stopped at the end; everything made is removed at
//! the end, on failure too.
//!
//! Run as root: `make bench`, or `make build && cargo run --release -p
//! rpaas-benches --bin app_scale`. Env: RPAAS_RUN (default target/dist/rpaas-run),
//! RPAAS_BENCH_ROUNDS (3), RPAAS_BENCH_INSTANCES (20).

#[path = "../runtime_support.rs"]
mod runtime_support;

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rpaas::app::spec::Rlimit;
use rpaas::config::{AddressRange, HostNetMode, HostNetwork};
use rpaas::{AppSpec, Host, HostConfig};
use runtime_support::{ensure_hugetlb_v1, find_rpaas_run, median, ms, which, Scratch};

const APP: &str = "benchweb";
const IMAGE_RPAAS: &str = "bench/web:1";
/// podman names a loaded "bench/web:1" docker.io/…: both take the localhost/ name.
const IMAGE_DOCKER: &str = "localhost/bench/web:1";
const IMAGE_PODMAN: &str = "localhost/bench/web:1";
const PORT: u16 = 8080;
/// What every instance serves (the injected file); a probe needs to see it.
const MARKER: &str = "rpaas-bench-page";
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
/// The three LANs: rpaas, docker, podman.
const NET_RPAAS: [u8; 3] = [10, 232, 100];
const NET_DOCKER: [u8; 3] = [10, 232, 101];
const NET_PODMAN: [u8; 3] = [10, 232, 102];
/// The first instance address of each LAN (`.10`, `.11`, …).
const FIRST_HOST: u8 = 10;
const BRIDGE_RPAAS: &str = "rpbench0";
const BRIDGE_DOCKER: &str = "rpbench1";
/// pid 1 is sh: httpd in the background, TERM answered by stopping it.
const APP_CMD: &str = "trap 'kill $p; exit 0' TERM; httpd -f -p 8080 -h /www & p=$!; wait";

fn addr(net: [u8; 3], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], FIRST_HOST + i as u8)
}

/// Run a command; stdout on success, stderr in the error.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sh(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new(prog).args(args))
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(resource, &mut rl) };
    rl.rlim_max
}

// ---------------------------------------------------------------- image

/// The busybox-httpd image as an OCI layout in `dir` (tag "1"): one
/// uncompressed layer made with the system's tar, the app user, /www.
fn build_image(work: &Path, dir: &Path) -> anyhow::Result<()> {
    let rootfs = work.join("image-rootfs");
    runtime_support::busybox_rootfs(&rootfs)?;
    std::fs::create_dir_all(rootfs.join("www"))?;
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/www:/bin/sh\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n")?;
    let layer = work.join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("."))?;
    std::fs::remove_dir_all(&rootfs)?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> anyhow::Result<(String, usize)> {
        let d = rpaas_images::store::sha256_digest(bytes);
        let hex = d.trim_start_matches("sha256:");
        std::fs::write(blobs.join(hex), bytes)?;
        Ok((d, bytes.len()))
    };
    let (layer_d, layer_n) = put(&std::fs::read(&layer)?)?;
    std::fs::remove_file(&layer)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "User": "app",
            "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
            "Cmd": ["sh", "-c", APP_CMD],
            "WorkingDir": "/www",
            "ExposedPorts": {"8080/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_d]}
    });
    let (config_d, config_n) = put(&serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_n}]
    });
    let (manifest_d, manifest_n) = put(&serde_json::to_vec(&manifest)?)?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_d, "size": manifest_n,
            "annotations": {"org.opencontainers.image.ref.name": "1"}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

// ---------------------------------------------------------------- probes

/// One thread per address polls `GET /index.html` until the page answers;
/// each records the time since `t0`. Threads given a netns join it first.
struct Probes {
    stop: Arc<AtomicBool>,
    found: Arc<Mutex<Vec<Option<Duration>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn answers(a: Ipv4Addr) -> bool {
    let sa = SocketAddr::from((a, PORT));
    let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.") && body.contains(" 200") && body.contains(MARKER)
}

fn enter_netns(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on an fd we hold open; it affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Probes {
    fn start(netns: Option<&Path>, addrs: &[Ipv4Addr], t0: Instant) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let found = Arc::new(Mutex::new(vec![None; addrs.len()]));
        let threads = addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let (stop, found) = (stop.clone(), found.clone());
                let ns = netns.map(Path::to_path_buf);
                std::thread::spawn(move || {
                    if let Some(ns) = ns {
                        if let Err(e) = enter_netns(&ns) {
                            eprintln!("probe: setns {}: {e}", ns.display());
                            return;
                        }
                    }
                    while !stop.load(Ordering::Relaxed) {
                        if answers(a) {
                            if let Ok(mut f) = found.lock() {
                                f[i] = Some(t0.elapsed());
                            }
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Probes {
            stop,
            found,
            threads,
        }
    }

    /// Wait until every address answered (or `limit` passed); the times.
    fn finish(self, limit: Duration) -> anyhow::Result<Vec<Duration>> {
        let end = Instant::now() + limit;
        loop {
            let done = self
                .found
                .lock()
                .map(|f| f.iter().all(Option::is_some))
                .unwrap_or(true);
            if done || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let found = self
            .found
            .lock()
            .map_err(|_| anyhow::anyhow!("probe lock poisoned"))?
            .clone();
        let missing = found.iter().filter(|f| f.is_none()).count();
        if missing > 0 {
            bail!("{missing} instances never answered on port {PORT}");
        }
        Ok(found.into_iter().flatten().collect())
    }
}

/// ARP of the probing side: forget old neighbours (instances of the last
/// round, whose MACs may differ), and retry unanswered requests every 10 ms
/// rather than every second, so an instance is seen as soon as it is up.
fn fresh_neighbours(netns: Option<&str>, dev: &str) -> anyhow::Result<()> {
    let mut ip = Command::new("ip");
    if let Some(ns) = netns {
        ip.args(["-n", ns]);
    }
    run(ip.args(["neigh", "flush", "dev", dev]))?;
    let key = format!("net.ipv4.neigh.{dev}.retrans_time_ms=10");
    match netns {
        Some(ns) => sh("ip", &["netns", "exec", ns, "sysctl", "-qw", &key])?,
        None => sh("sysctl", &["-qw", &key])?,
    };
    Ok(())
}

// ---------------------------------------------------------------- memory

/// Pss of `pid` in KiB.
fn pss_kib(pid: i32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("Pss in {path}"))
}

fn ppid_comm(pid: i32) -> anyhow::Result<(i32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let open = stat.find('(').context("stat")?;
    let close = stat.rfind(')').context("stat")?;
    let comm = stat[open + 1..close].to_string();
    let ppid = stat[close + 2..]
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("ppid in stat")?;
    Ok((ppid, comm))
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

// ---------------------------------------------------------------- cleanup helpers

/// Lazily unmount every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir) && Path::new(p) != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

/// rmdir `parent` and the empty cgroups under it, in every v1 hierarchy and v2.
fn remove_cgroup_tree(parent: &str) {
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for h in roots {
        let d = h.join(parent.trim_start_matches('/'));
        if d.is_dir() {
            rmdir_tree(&d);
        }
    }
}

/// Pids whose command line mentions `needle` (a path of ours: processes we
/// started, found by id).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn kill_pid(pid: i32, sig: i32) {
    // SAFETY: kill with a pid we found and a signal number.
    unsafe { libc::kill(pid, sig) };
}

// ---------------------------------------------------------------- rpaas

/// The LAN of the rpaas instances: a netns holding a bridge with the
/// gateway address (where the probes run). Removed on drop.
struct Lan {
    name: String,
}

impl Lan {
    fn new() -> anyhow::Result<Lan> {
        let lan = Lan {
            name: format!("rpaas-bench-lan-{}", std::process::id()),
        };
        sh("ip", &["netns", "add", &lan.name])?;
        let n = lan.name.as_str();
        let [a, b, c] = NET_RPAAS;
        let gw = format!("{}/24", Ipv4Addr::new(a, b, c, 1));
        sh("ip", &["-n", n, "link", "set", "lo", "up"])?;
        sh(
            "ip",
            &["-n", n, "link", "add", BRIDGE_RPAAS, "type", "bridge"],
        )?;
        sh("ip", &["-n", n, "addr", "add", &gw, "dev", BRIDGE_RPAAS])?;
        sh("ip", &["-n", n, "link", "set", BRIDGE_RPAAS, "up"])?;
        Ok(lan)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn links(&self) -> usize {
        sh("ip", &["-n", &self.name, "-o", "link"])
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

struct Rpaas {
    host: Host,
    cfg_path: PathBuf,
    lan: Lan,
}

fn rpaas_config(base: &Path, lan: &Lan) -> anyhow::Result<HostConfig> {
    let mut cfg = HostConfig {
        state_root: base.join("state"),
        data_root: base.join("data"),
        runtime: Some(find_rpaas_run()?),
        ..HostConfig::default()
    };
    let n = NET_RPAAS;
    cfg.network = Some(HostNetwork {
        mode: HostNetMode::Bridge,
        bridge: Some(BRIDGE_RPAAS.into()),
        master: None,
        macvlan_mode: None,
        subnet: format!("{}.{}.{}.0/24", n[0], n[1], n[2])
            .parse()
            .map_err(|e| anyhow::anyhow!("subnet: {e}"))?,
        gateway: Some(Ipv4Addr::new(n[0], n[1], n[2], 1).into()),
        pool: Some(AddressRange {
            first: addr(n, 0).into(),
            last: Ipv4Addr::new(n[0], n[1], n[2], 250).into(),
        }),
        host_netns: Some(lan.path()),
        mtu: None,
    });
    // nofile at the agent's own hard limit, as the docker and podman
    // containers get it here (a root without CAP_SYS_RESOURCE cannot go above).
    cfg.rlimits = [(
        "nofile".to_string(),
        Rlimit::Both(hard_limit(libc::RLIMIT_NOFILE)),
    )]
    .into();
    Ok(cfg)
}

fn app_spec(page: &Path, instances: u32) -> anyhow::Result<AppSpec> {
    let spec = serde_json::json!({
        "name": APP,
        "image": IMAGE_RPAAS,
        "instances": instances,
        "files": [{"source": page, "dest": "/www/index.html", "mode": "0644"}],
        "stop": {"signal": "SIGTERM", "grace": 10}
    });
    Ok(AppSpec::from_json(&serde_json::to_vec(&spec)?)?)
}

impl Rpaas {
    fn new(scratch: &Path, layout: &Path, page: &Path) -> anyhow::Result<Rpaas> {
        let lan = Lan::new()?;
        let base = scratch.join("rpaas");
        let cfg = rpaas_config(&base, &lan)?;
        let cfg_path = scratch.join("rpaas-host.json");
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
        let host = Host::open(cfg)?;
        host.images().import(layout, IMAGE_RPAAS, Some("1"))?;
        host.deploy(&app_spec(page, 0)?)?;
        Ok(Rpaas {
            host,
            cfg_path,
            lan,
        })
    }

    fn addrs(n: usize) -> Vec<Ipv4Addr> {
        (0..n).map(|i| addr(NET_RPAAS, i)).collect()
    }

    fn running(&self) -> anyhow::Result<usize> {
        Ok(self
            .host
            .app(APP)?
            .instances
            .iter()
            .filter(|i| i.status == "running")
            .count())
    }

    fn keeper_pss(&self) -> anyhow::Result<Vec<u64>> {
        let app = self.host.app(APP)?;
        let mut out = Vec::new();
        for i in &app.instances {
            let st = rpaas::Container::load(self.host.root(), &i.id)?.oci_state();
            let pid = st["keeperPid"]
                .as_i64()
                .with_context(|| format!("no keeperPid for {}", i.id))?;
            out.push(pss_kib(pid as i32)?);
        }
        Ok(out)
    }

    fn nothing_left(&self) -> anyhow::Result<()> {
        let app = self.host.app(APP)?;
        if !app.instances.is_empty() {
            bail!(
                "rpaas: {} instances left after scale 0",
                app.instances.len()
            );
        }
        // lo and the bridge.
        if self.lan.links() != 2 {
            bail!("rpaas: {} links left on the LAN", self.lan.links() - 2);
        }
        let left = rpaas::Container::list(self.host.root())?.len();
        if left > 0 {
            bail!("rpaas: {left} containers left");
        }
        Ok(())
    }
}

impl Drop for Rpaas {
    fn drop(&mut self) {
        if let Err(e) = self.host.remove(APP) {
            eprintln!("rpaas cleanup: remove {APP}: {e}");
        }
        match self.host.gc() {
            Ok(r) if !r.errors.is_empty() => eprintln!("rpaas cleanup: gc: {:?}", r.errors),
            Err(e) => eprintln!("rpaas cleanup: gc: {e}"),
            _ => {}
        }
        unmount_under(&self.host.config().state_root);
        unmount_under(&self.host.config().data_root);
    }
}

/// The child modes: a process that embeds rpaas (killed with SIGKILL), and
/// the one that recovers after it.
fn agent(args: &[String]) -> anyhow::Result<()> {
    let cfg = HostConfig::load(Path::new(&args[1]))?;
    let host = Host::open(cfg)?;
    match args[0].as_str() {
        "up" => {
            let n: u32 = args[2].parse()?;
            host.scale(APP, n)?;
            println!("up");
            std::io::stdout().flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "recover" => {
            let r = host.recover()?;
            let running = host
                .app(APP)?
                .instances
                .iter()
                .filter(|i| i.status == "running")
                .count();
            println!(
                "{}",
                serde_json::json!({"running": running, "restarted": r.restarted.len(),
                    "scaled": r.scaled.len(), "errors": r.errors})
            );
            Ok(())
        }
        m => bail!("unknown agent mode {m}"),
    }
}

/// Kill -9 a process that scaled the app to `n`, recover from a new one.
fn rpaas_agent_restart(r: &Rpaas, n: usize) -> anyhow::Result<(usize, String)> {
    let exe = std::env::current_exe()?;
    let cfg = r.cfg_path.to_string_lossy().into_owned();
    let mut child = Command::new(&exe)
        .args(["__agent", "up", &cfg, &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    if line.trim() != "up" {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the agent did not scale the app up: {line:?}");
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let out = run(Command::new(&exe).args(["__agent", "recover", &cfg]))?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("recover said {out:?}"))?;
    let running = r.running()?;
    fresh_neighbours(Some(&r.lan.name), BRIDGE_RPAAS)?;
    let answering = match Probes::start(Some(&r.lan.path()), &Rpaas::addrs(n), Instant::now())
        .finish(Duration::from_secs(10))
    {
        Ok(v) => format!("all {} answer HTTP", v.len()),
        Err(e) => e.to_string(),
    };
    Ok((
        running,
        format!(
            "recover: {} restarted, {} scaled, errors {}; {answering}",
            v["restarted"], v["scaled"], v["errors"]
        ),
    ))
}

// ---------------------------------------------------------------- docker

/// dockerd 20.10 with private roots, socket, pidfile and config, started here.
/// Two paths it takes whatever the flags say (20.10 on Linux): its trust key
/// `/etc/docker/key.json` and the plugin socket dir `/run/docker/plugins`;
/// both are removed at the end when they were not there before.
struct Docker {
    dir: PathBuf,
    daemon: Option<Child>,
    cgroup_parent: String,
    key_existed: bool,
    run_existed: bool,
}

const DOCKER_KEY: &str = "/etc/docker/key.json";
const DOCKER_RUN: &str = "/run/docker";

impl Docker {
    fn new(scratch: &Path) -> anyhow::Result<Docker> {
        let dir = scratch.join("docker");
        std::fs::create_dir_all(dir.join("config"))?;
        std::fs::write(dir.join("daemon.json"), "{}")?;
        let mut d = Docker {
            dir,
            daemon: None,
            cgroup_parent: format!("/rpaas-bench-docker-{}", std::process::id()),
            key_existed: Path::new(DOCKER_KEY).exists(),
            run_existed: Path::new(DOCKER_RUN).exists(),
        };
        d.start()?;
        Ok(d)
    }

    fn sock(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))?;
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .args(["-H", &self.sock()])
            .args(["--storage-driver", "overlay2"])
            .args(["--bridge", "none", "--iptables=false", "--ip-forward=false"])
            .args([
                "--ip-masq=false",
                "--userland-proxy=false",
                "--live-restore=false",
            ])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {DOCKERD}"))?;
        self.daemon = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .cmd(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(());
            }
            if let Some(c) = self.daemon.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!("dockerd exited: {st}: {}", self.log_tail());
                }
            }
            if Instant::now() >= end {
                bail!("dockerd did not answer in 60 s: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// SIGTERM dockerd (it stops its containers: no live-restore) and wait.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.daemon.take() {
            kill_pid(c.id() as i32, libc::SIGTERM);
            let end = Instant::now() + Duration::from_secs(60);
            while c.try_wait()?.is_none() {
                if Instant::now() >= end {
                    let _ = c.kill();
                    c.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("config"));
        c.args(["-H", &self.sock()]).args(args);
        c
    }

    fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        run(&mut self.command(args))
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("rpb-docker-{i}")).collect()
    }

    fn up(&self, page: &str, n: usize) -> anyhow::Result<()> {
        for (i, name) in Self::names(n).iter().enumerate() {
            let ip = addr(NET_DOCKER, i).to_string();
            self.cmd(&[
                "create",
                "--name",
                name,
                "--network",
                "rpaas-bench",
                "--ip",
                &ip,
                IMAGE_DOCKER,
            ])?;
            self.cmd(&["cp", page, &format!("{name}:/www/index.html")])?;
            self.cmd(&["start", name])?;
        }
        Ok(())
    }

    fn down(&self, n: usize) -> anyhow::Result<()> {
        let names = Self::names(n);
        let mut stop = vec!["stop", "-t", "10"];
        stop.extend(names.iter().map(String::as_str));
        self.cmd(&stop)?;
        let mut rm = vec!["rm"];
        rm.extend(names.iter().map(String::as_str));
        self.cmd(&rm)?;
        Ok(())
    }

    fn running(&self) -> anyhow::Result<usize> {
        Ok(self.cmd(&["ps", "-q"])?.lines().count())
    }

    /// PSS of each container's containerd-shim (the parent of its init).
    fn shim_pss(&self, n: usize) -> anyhow::Result<Vec<u64>> {
        let mut args = vec!["inspect", "--format", "{{.State.Pid}}"];
        let names = Self::names(n);
        args.extend(names.iter().map(String::as_str));
        let mut out = Vec::new();
        for l in self.cmd(&args)?.lines() {
            let pid: i32 = l.trim().parse()?;
            let (shim, _) = ppid_comm(pid)?;
            let (_, comm) = ppid_comm(shim)?;
            if !comm.starts_with("containerd-shim") {
                bail!("the parent of a docker container's init is {comm}, not a containerd-shim");
            }
            out.push(pss_kib(shim)?);
        }
        Ok(out)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            if let Ok(ids) = self.cmd(&["ps", "-aq"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut rm = vec!["rm", "-f"];
                    rm.extend(ids);
                    let _ = self.cmd(&rm);
                }
            }
            let _ = self.cmd(&["network", "rm", "rpaas-bench"]);
        }
        let _ = self.stop();
        // Its containerd and any shim left: ours by their paths.
        let needle = self.dir.to_string_lossy().into_owned();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            let pids = pids_mentioning(&needle);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                kill_pid(p, sig);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        unmount_under(&self.dir);
        remove_cgroup_tree(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
        if !self.key_existed {
            let _ = std::fs::remove_file(DOCKER_KEY);
        }
        if !self.run_existed {
            let _ = std::fs::remove_dir(Path::new(DOCKER_RUN).join("plugins"));
            let _ = std::fs::remove_dir(DOCKER_RUN);
        }
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE_DOCKER])
            .stderr(Stdio::null())
            .status();
    }
}

fn ensure_docker() -> anyhow::Result<()> {
    if Path::new(DOCKERD).is_file() && Path::new(DOCKER).is_file() {
        return Ok(());
    }
    println!("installing Debian's docker.io (apt-get) ...");
    let st = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "docker.io"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?;
    if !st.success() || !Path::new(DOCKERD).is_file() {
        bail!("apt-get install docker.io: {st}");
    }
    Ok(())
}

// ---------------------------------------------------------------- podman

struct Podman {
    dir: PathBuf,
    cgroup_parent: String,
    net: String,
    bridge: String,
    cni_existed: bool,
}

impl Podman {
    fn new(scratch: &Path) -> anyhow::Result<Podman> {
        let dir = scratch.join("podman");
        std::fs::create_dir_all(&dir)?;
        let p = Podman {
            dir,
            cgroup_parent: format!("/rpaas-bench-podman-{}", std::process::id()),
            net: format!("rpaas-bench-{}", std::process::id()),
            bridge: String::new(),
            cni_existed: Path::new("/var/lib/cni").exists(),
        };
        Ok(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let mut c = Command::new("podman");
        c.arg("--root").arg(d.join("root"));
        c.arg("--runroot").arg(d.join("runroot"));
        c.arg("--tmpdir").arg(d.join("tmp"));
        c.arg("--network-config-dir").arg(d.join("networks"));
        c.arg("--volumepath").arg(d.join("volumes"));
        c.args(["--storage-driver", "overlay", "--events-backend", "file"]);
        c.args(["--cgroup-manager", "cgroupfs", "--runtime", "crun"]);
        c.args(args);
        c
    }

    fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        run(&mut self.command(args))
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("rpb-podman-{i}")).collect()
    }

    fn make_network(&mut self) -> anyhow::Result<()> {
        let n = NET_PODMAN;
        let subnet = format!("{}.{}.{}.0/24", n[0], n[1], n[2]);
        let gw = Ipv4Addr::new(n[0], n[1], n[2], 1).to_string();
        self.cmd(&[
            "network",
            "create",
            "--disable-dns",
            "--subnet",
            &subnet,
            "--gateway",
            &gw,
            &self.net,
        ])?;
        self.bridge = self
            .cmd(&[
                "network",
                "inspect",
                "--format",
                "{{.NetworkInterface}}",
                &self.net,
            ])?
            .trim()
            .to_string();
        Ok(())
    }

    fn up(&self, page: &str, n: usize) -> anyhow::Result<()> {
        // Within the hard limits: podman's default nproc and a root without
        // CAP_SYS_RESOURCE do not mix.
        let nofile = hard_limit(libc::RLIMIT_NOFILE);
        let nproc = hard_limit(libc::RLIMIT_NPROC).min(4096);
        let nofile = format!("nofile={nofile}:{nofile}");
        let nproc = format!("nproc={nproc}:{nproc}");
        for (i, name) in Self::names(n).iter().enumerate() {
            let ip = addr(NET_PODMAN, i).to_string();
            self.cmd(&[
                "create",
                "--name",
                name,
                "--network",
                &self.net,
                "--ip",
                &ip,
                "--ulimit",
                &nofile,
                "--ulimit",
                &nproc,
                "--cgroup-parent",
                &self.cgroup_parent,
                IMAGE_PODMAN,
            ])?;
            self.cmd(&["cp", page, &format!("{name}:/www/index.html")])?;
            self.cmd(&["start", name])?;
        }
        Ok(())
    }

    fn down(&self, n: usize) -> anyhow::Result<()> {
        let names = Self::names(n);
        let mut stop = vec!["stop", "-t", "10"];
        stop.extend(names.iter().map(String::as_str));
        self.cmd(&stop)?;
        let mut rm = vec!["rm"];
        rm.extend(names.iter().map(String::as_str));
        self.cmd(&rm)?;
        Ok(())
    }

    fn conmon_pss(&self, n: usize) -> anyhow::Result<Vec<u64>> {
        let mut args = vec!["inspect", "--format", "{{.State.ConmonPid}}"];
        let names = Self::names(n);
        args.extend(names.iter().map(String::as_str));
        let mut out = Vec::new();
        for l in self.cmd(&args)?.lines() {
            out.push(pss_kib(l.trim().parse()?)?);
        }
        Ok(out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.cmd(&["network", "rm", "--force", &self.net]);
        let _ = self.cmd(&["rmi", "--all", "--force"]);
        let _ = self.cmd(&["system", "reset", "--force"]);
        unmount_under(&self.dir);
        remove_cgroup_tree(&self.cgroup_parent);
        if !self.bridge.is_empty() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .stderr(Stdio::null())
                .status();
        }
        for d in ["/var/lib/cni/networks", "/var/lib/cni/results"] {
            let _ = std::fs::remove_dir_all(Path::new(d).join(&self.net));
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.net) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if !self.cni_existed {
            let _ = std::fs::remove_dir_all("/var/lib/cni");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// iptables chains that CNI's plugins make (CNI-*), to remove those that
/// were not there before the run.
fn cni_chains() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in ["filter", "nat"] {
        let rules = sh("iptables", &["-t", table, "-S"]).unwrap_or_default();
        for l in rules.lines() {
            if let Some(c) = l.strip_prefix("-N ") {
                if c.starts_with("CNI-") {
                    out.push((table.to_string(), c.to_string()));
                }
            }
        }
    }
    out
}

fn remove_chains(new: &[(String, String)]) {
    for (table, chain) in new {
        // Rules elsewhere that jump to it go first, by their number in their
        // chain, last first (their comments hold quoted spaces).
        let rules = sh("iptables", &["-t", table, "-S"]).unwrap_or_default();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        let mut jumps = Vec::new();
        for l in rules.lines() {
            if let Some(rest) = l.strip_prefix("-A ") {
                let owner = rest.split_whitespace().next().unwrap_or("").to_string();
                let k = count.entry(owner.clone()).or_default();
                *k += 1;
                if l.ends_with(&format!("-j {chain}")) {
                    jumps.push((owner, *k));
                }
            }
        }
        for (owner, k) in jumps.into_iter().rev() {
            let _ = sh("iptables", &["-t", table, "-D", &owner, &k.to_string()]);
        }
        let _ = sh("iptables", &["-t", table, "-F", chain]);
    }
    for (table, chain) in new {
        let _ = sh("iptables", &["-t", table, "-X", chain]);
    }
}

/// Puts back what the run changed on the host: the hugetlb v1 mount crun
/// needs, ip_forward (CNI's bridge turns it on), CNI's iptables chains.
struct HostState {
    mounted_hugetlb: bool,
    ip_forward: String,
    chains: Vec<(String, String)>,
}

impl Drop for HostState {
    fn drop(&mut self) {
        let now = cni_chains();
        let new: Vec<_> = now
            .into_iter()
            .filter(|c| !self.chains.contains(c))
            .collect();
        remove_chains(&new);
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        if self.mounted_hugetlb {
            let _ = Command::new("umount")
                .arg("/sys/fs/cgroup/hugetlb")
                .status();
        }
    }
}

// ---------------------------------------------------------------- rounds

#[derive(Default)]
struct Samples {
    out: Vec<Duration>,
    p50: Vec<Duration>,
    p95: Vec<Duration>,
    last: Vec<Duration>,
    down: Vec<Duration>,
    pss: Vec<u64>,
}

impl Samples {
    fn add(&mut self, out: Duration, ready: &[Duration], down: Duration, pss: &[u64]) {
        self.out.push(out);
        self.p50.push(pct(ready, 0.50));
        self.p95.push(pct(ready, 0.95));
        self.last.push(pct(ready, 1.0));
        self.down.push(down);
        self.pss.extend_from_slice(pss);
    }
}

fn round_rpaas(r: &Rpaas, n: usize, s: &mut Samples) -> anyhow::Result<()> {
    fresh_neighbours(Some(&r.lan.name), BRIDGE_RPAAS)?;
    let t0 = Instant::now();
    let probes = Probes::start(Some(&r.lan.path()), &Rpaas::addrs(n), t0);
    r.host.scale(APP, n as u32)?;
    let out = t0.elapsed();
    let ready = probes.finish(Duration::from_secs(30))?;
    let pss = r.keeper_pss()?;
    let t1 = Instant::now();
    r.host.scale(APP, 0)?;
    let down = t1.elapsed();
    r.nothing_left()?;
    s.add(out, &ready, down, &pss);
    Ok(())
}

fn round_docker(d: &Docker, page: &str, n: usize, s: &mut Samples) -> anyhow::Result<()> {
    fresh_neighbours(None, BRIDGE_DOCKER)?;
    let addrs: Vec<Ipv4Addr> = (0..n).map(|i| addr(NET_DOCKER, i)).collect();
    let t0 = Instant::now();
    let probes = Probes::start(None, &addrs, t0);
    d.up(page, n)?;
    let out = t0.elapsed();
    let ready = probes.finish(Duration::from_secs(30))?;
    let pss = d.shim_pss(n)?;
    let t1 = Instant::now();
    d.down(n)?;
    let down = t1.elapsed();
    if !d.cmd(&["ps", "-aq"])?.trim().is_empty() {
        bail!("docker: containers left after rm");
    }
    s.add(out, &ready, down, &pss);
    Ok(())
}

fn round_podman(p: &Podman, page: &str, n: usize, s: &mut Samples) -> anyhow::Result<()> {
    let addrs: Vec<Ipv4Addr> = (0..n).map(|i| addr(NET_PODMAN, i)).collect();
    // CNI makes the bridge with the first container: tune it when it exists.
    let bridge_up = Path::new("/sys/class/net").join(&p.bridge).exists();
    if bridge_up {
        fresh_neighbours(None, &p.bridge)?;
    }
    let t0 = Instant::now();
    let probes = Probes::start(None, &addrs, t0);
    p.up(page, n)?;
    let out = t0.elapsed();
    let ready = probes.finish(Duration::from_secs(30))?;
    let pss = p.conmon_pss(n)?;
    let t1 = Instant::now();
    p.down(n)?;
    let down = t1.elapsed();
    if !p.cmd(&["ps", "-aq"])?.trim().is_empty() {
        bail!("podman: containers left after rm");
    }
    if bridge_up {
        s.add(out, &ready, down, &pss);
    } else {
        println!("  (podman's first round made its bridge: a warm-up, not counted)");
    }
    Ok(())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(name: &str, s: &Samples) {
    println!(
        "{name:<8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>11.1} {:>11}",
        ms(median(&s.out)),
        ms(median(&s.p50)),
        ms(median(&s.p95)),
        ms(median(&s.last)),
        ms(median(&s.down)),
        median_u64(&s.pss)
    );
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn target(what: &str, r: f64, limit: f64) {
    let met = if r <= limit { "MET" } else { "NOT MET" };
    println!("target {what} <= {limit}x: {r:.3}x -> {met}");
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__agent") {
        return agent(&args[2..]);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("app_scale needs root");
    }
    let rounds = env_usize("RPAAS_BENCH_ROUNDS", 3).max(1);
    let n = env_usize("RPAAS_BENCH_INSTANCES", 20).clamp(1, 200);
    if which("skopeo").is_none() || which("podman").is_none() || which("crun").is_none() {
        bail!("app_scale needs skopeo, podman and crun (scripts/install-deps.sh)");
    }
    let docker_ok = match ensure_docker() {
        Ok(()) => true,
        Err(e) => {
            println!("docker: cannot be installed: {e:#}");
            false
        }
    };

    let _host_state = HostState {
        mounted_hugetlb: ensure_hugetlb_v1()?,
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?,
        chains: cni_chains(),
    };
    let scratch = Scratch::new()?;
    let t = scratch.path();
    println!(
        "state roots on a private tmpfs at {} (/run here is ext4)",
        t.display()
    );
    let page = t.join("index.html");
    std::fs::write(&page, format!("<h1>{MARKER}</h1>\n"))?;
    let page_s = page.to_string_lossy().into_owned();
    let layout = t.join("oci");
    build_image(t, &layout)?;
    let archive = t.join("web.tar");
    sh(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:1", layout.display()),
            &format!("docker-archive:{}:{IMAGE_DOCKER}", archive.display()),
        ],
    )?;
    let archive_s = archive.to_string_lossy().into_owned();

    let rpaas = Rpaas::new(t, &layout, &page).context("rpaas setup")?;
    let docker = if docker_ok {
        match Docker::new(t) {
            Ok(d) => {
                d.cmd(&["load", "-q", "-i", &archive_s])?;
                let n4 = NET_DOCKER;
                d.cmd(&[
                    "network",
                    "create",
                    "--driver",
                    "bridge",
                    "--subnet",
                    &format!("{}.{}.{}.0/24", n4[0], n4[1], n4[2]),
                    "--gateway",
                    &Ipv4Addr::new(n4[0], n4[1], n4[2], 1).to_string(),
                    "-o",
                    &format!("com.docker.network.bridge.name={BRIDGE_DOCKER}"),
                    "rpaas-bench",
                ])?;
                Some(d)
            }
            Err(e) => {
                println!("docker: dockerd cannot run here: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let mut podman = Podman::new(t)?;
    podman.cmd(&["load", "-q", "-i", &archive_s])?;
    podman.make_network()?;

    println!(
        "{n} instances of a busybox httpd app, one file injected into each, one bridged IP each; \
         {rounds} rounds, order rotated"
    );
    println!(
        "rpaas: Host::scale (parallel {}), docker {} and podman {} (crun): create+cp+start one after \
         another, stop+rm of all at once",
        rpaas.host.config().parallel,
        docker
            .as_ref()
            .and_then(|d| d
                .cmd(&["version", "--format", "{{.Server.Version}}"])
                .ok())
            .unwrap_or_else(|| "-".into())
            .trim(),
        sh("podman", &["--version"])?.trim().trim_start_matches("podman version "),
    );
    let mut s: BTreeMap<&str, Samples> = BTreeMap::new();
    // podman's first round makes its bridge: one warm-up round for podman.
    round_podman(&podman, &page_s, n, &mut Samples::default()).context("podman warm-up")?;
    for round in 0..rounds {
        for k in 0..3 {
            match (round + k) % 3 {
                0 => round_rpaas(&rpaas, n, s.entry("rpaas").or_default())
                    .with_context(|| format!("rpaas round {round}"))?,
                1 => {
                    if let Some(d) = &docker {
                        round_docker(d, &page_s, n, s.entry("docker").or_default())
                            .with_context(|| format!("docker round {round}"))?
                    }
                }
                _ => round_podman(&podman, &page_s, n, s.entry("podman").or_default())
                    .with_context(|| format!("podman round {round}"))?,
            }
        }
    }

    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "", "out ms", "ready p50", "ready p95", "all ready", "in ms", "PSS KiB"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "", "(wall)", "ms", "ms", "ms", "(wall)", "/instance"
    );
    for name in ["rpaas", "docker", "podman"] {
        if let Some(x) = s.get(name) {
            row(name, x);
        }
    }
    println!("(ready: from the start of the scale-out until the instance answers HTTP, probed from the LAN)");
    println!("(PSS: rpaas keeper, docker containerd-shim, podman conmon; medians over all instances of all rounds)");
    println!();
    let get = |name: &str| s.get(name);
    let f = |x: &Samples| {
        (
            median(&x.out).as_secs_f64(),
            median(&x.down).as_secs_f64(),
            median(&x.p95).as_secs_f64(),
            median_u64(&x.pss) as f64,
        )
    };
    if let Some(r) = get("rpaas").map(f) {
        for peer in ["docker", "podman"] {
            if let Some(p) = get(peer).map(f) {
                println!(
                    "rpaas/{peer}: scale-out {:.3}x, ready p95 {:.3}x, scale-in {:.3}x, PSS/instance {:.3}x",
                    ratio(r.0, p.0),
                    ratio(r.2, p.2),
                    ratio(r.1, p.1),
                    ratio(r.3, p.3)
                );
            }
        }
        println!();
        match get("docker").map(f) {
            Some(d) => {
                target("scale-out wall rpaas/docker", ratio(r.0, d.0), 0.05);
            }
            None => {
                println!("target scale-out wall rpaas/docker <= 0.05x: cannot judge (no docker)")
            }
        }
        if let Some(p) = get("podman").map(f) {
            target("scale-out wall rpaas/podman", ratio(r.0, p.0), 0.05);
        }
        match get("docker").map(f) {
            Some(d) => {
                target("scale-in wall rpaas/docker", ratio(r.1, d.1), 0.15);
                target(
                    "per-instance PSS keeper/containerd-shim",
                    ratio(r.3, d.3),
                    0.05,
                );
            }
            None => println!("targets scale-in and PSS against docker: cannot judge (no docker)"),
        }
    }

    println!();
    println!(
        "behaviour: the manager restarted while {n} instances run (instances still running after)"
    );
    let (kept, note) = rpaas_agent_restart(&rpaas, n).context("rpaas agent restart")?;
    println!("  rpaas  (kill -9 the process embedding rpaas, Host::recover() in a new one): {kept}/{n}  [{note}]");
    rpaas.host.scale(APP, 0)?;
    if let Some(mut d) = docker {
        d.up(&page_s, n)?;
        let before = d.running()?;
        d.stop()?;
        d.start()?;
        let after = d.running()?;
        println!("  docker (restart dockerd, no live-restore): {after}/{before}");
        drop(d);
    }
    println!("  podman: no daemon to restart (one conmon per container)");
    drop(podman);
    drop(rpaas);
    drop(scratch);
    Ok(())
}
