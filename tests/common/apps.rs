//! Support for the app tests: a busybox httpd image built locally as an OCI
//! layout, a LAN (a netns holding a bridge, and a peer netns as "another
//! machine"), a `Host` on temp roots joined to that LAN, and a listing of what
//! an app may leave on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use rpaas::config::{AddressRange, HostNetMode, HostNetwork};
use rpaas::{Host, HostConfig};

use super::{busybox_rootfs, rpaas_run_bin, unique_id};

/// Run a command that must succeed; its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_of(p: &Path) -> String {
    sh(&["sha256sum", &p.display().to_string()])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Write an OCI layout of a busybox image at `dir`: httpd serving /www on
/// :8080 as user app, unless `cmd` is given.
pub fn httpd_layout(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    let rootfs = work.join("rootfs");
    busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(rootfs.join("www/index.html"), "image page\n").unwrap();
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = work.join("layer.tar.gz");
    sh(&[
        "tar",
        "-C",
        &rootfs.display().to_string(),
        "--numeric-owner",
        "-czf",
        &layer.display().to_string(),
        ".",
    ]);
    let put = |p: &Path| {
        let d = sha256_of(p);
        std::fs::copy(p, blobs.join(&d)).unwrap();
        (d, std::fs::metadata(p).unwrap().len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let diff_id = {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | sha256sum", layer.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "app", "Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin", "APP_KIND=web"],
                   "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"], "WorkingDir": "/www",
                   "ExposedPorts": {"8080/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]}
    });
    let cfg_path = work.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (cfg_digest, cfg_size) = put(&cfg_path);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{cfg_digest}"), "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
    });
    let m_path = work.join("manifest.json");
    std::fs::write(&m_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (m_digest, m_size) = put(&m_path);
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{m_digest}"), "size": m_size}]});
    std::fs::write(oci.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    oci
}

/// A network namespace made with `ip netns`, deleted on drop.
pub struct Ns(pub String);

impl Ns {
    pub fn new(role: &str) -> Ns {
        let name = format!("rpaas-app-{}-{role}", unique_id("n"));
        sh(&["ip", "netns", "add", &name]);
        Ns(name)
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.0];
        v.extend_from_slice(args);
        sh(&v)
    }
    /// GET `url` from inside this netns (busybox wget): the body, or why not.
    pub fn get(&self, url: &str) -> Result<String, String> {
        let out = Command::new("ip")
            // busybox 1.35's wget segfaults with -T: bound it with timeout(1).
            .args([
                "netns", "exec", &self.0, "timeout", "3", "busybox", "wget", "-q", "-O-", url,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A LAN: bridge `rpbr0` in netns `lan`, and `peer` on it at .250.
pub struct Lan {
    pub lan: Ns,
    pub peer: Ns,
    pub subnet: String,
    pub prefix3: String,
}

impl Lan {
    /// `third` picks the /24 (10.<third>.0.0/24... as 10.233.<third>.0/24).
    pub fn new(third: u8) -> Lan {
        let (lan, peer) = (Ns::new("lan"), Ns::new("peer"));
        lan.ip(&["link", "set", "lo", "up"]);
        lan.ip(&["link", "add", "rpbr0", "type", "bridge"]);
        lan.ip(&["link", "set", "rpbr0", "up"]);
        sh(&[
            "ip", "link", "add", "rppeer0", "netns", &lan.0, "type", "veth", "peer", "name",
            "eth0", "netns", &peer.0,
        ]);
        lan.ip(&["link", "set", "rppeer0", "master", "rpbr0", "up"]);
        let prefix3 = format!("10.233.{third}");
        peer.ip(&["addr", "add", &format!("{prefix3}.250/24"), "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        peer.ip(&["link", "set", "lo", "up"]);
        Lan {
            lan,
            peer,
            subnet: format!("{prefix3}.0/24"),
            prefix3,
        }
    }

    pub fn network(&self) -> HostNetwork {
        HostNetwork {
            mode: HostNetMode::Bridge,
            bridge: Some("rpbr0".into()),
            master: None,
            macvlan_mode: None,
            subnet: self.subnet.parse().unwrap(),
            gateway: Some(format!("{}.1", self.prefix3).parse().unwrap()),
            pool: Some(AddressRange {
                first: format!("{}.10", self.prefix3).parse().unwrap(),
                last: format!("{}.99", self.prefix3).parse().unwrap(),
            }),
            host_netns: Some(self.lan.path()),
            mtu: None,
        }
    }

    /// Links in the LAN netns besides the bridge and the peer's uplink.
    pub fn instance_links(&self) -> Vec<String> {
        self.lan
            .ip(&["-o", "link"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| !["lo", "rpbr0", "rppeer0"].contains(&n.as_str()))
            .collect()
    }
}

/// Temp state and data roots, with an imported image `test/httpd:1`.
pub struct Roots {
    pub state: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub image_dir: tempfile::TempDir,
}

pub const IMAGE: &str = "test/httpd:1";

impl Roots {
    pub fn new() -> Roots {
        let r = Roots {
            state: tempfile::Builder::new()
                .prefix("rpaas-st")
                .tempdir_in("/run")
                .unwrap(),
            data: tempfile::Builder::new()
                .prefix("rpaas-data")
                .tempdir()
                .unwrap(),
            image_dir: tempfile::tempdir().unwrap(),
        };
        let oci = httpd_layout(r.image_dir.path());
        let store = rpaas_images::ImageStore::open_overlay(&r.data.path().join("images")).unwrap();
        store.import(&oci, IMAGE, None).expect("import test image");
        // Unpacked now, so that the image's own snapshots are there before
        // any "before" listing of a test.
        store.unpack(IMAGE).expect("unpack test image");
        r
    }

    pub fn config(&self, network: Option<HostNetwork>) -> HostConfig {
        HostConfig {
            state_root: self.state.path().to_path_buf(),
            data_root: self.data.path().to_path_buf(),
            runtime: Some(rpaas_run_bin()),
            network,
            ..HostConfig::default()
        }
    }

    pub fn host(&self, network: Option<HostNetwork>) -> Host {
        Host::open(self.config(network)).expect("open host")
    }
}

impl Drop for Roots {
    /// A test that failed half-way must not leave running apps behind: kill
    /// every container of the state root, then unmount whatever is mounted
    /// under the roots (deepest first), before the temp dirs go.
    fn drop(&mut self) {
        if let Ok(list) = rpaas::Container::list(self.state.path()) {
            for c in list {
                let _ = c.delete(true);
            }
        }
        let roots = [
            self.state.path().display().to_string(),
            self.data.path().display().to_string(),
        ];
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| roots.iter().any(|r| m.starts_with(r.as_str())))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// What apps can leave behind on the machine, for before/after comparisons.
#[derive(Debug, PartialEq, Eq)]
pub struct Leftovers {
    pub mounts: Vec<String>,
    pub cgroups: Vec<String>,
    pub containers: Vec<String>,
    pub netns: Vec<String>,
    pub snapshots: Vec<String>,
    pub records: Vec<String>,
}

fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Leftovers {
    /// Everything of `roots` (mounts under them, cgroups of its containers,
    /// state dirs, pinned netns, writable snapshots, app records).
    pub fn of(roots: &Roots) -> Leftovers {
        let st = roots.state.path().display().to_string();
        let data = roots.data.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&st) || m.starts_with(&data))
            .collect();
        let containers: Vec<String> = ls(roots.state.path())
            .into_iter()
            .filter(|n| !n.starts_with('#'))
            .collect();
        let mut cgroups = Vec::new();
        for h in ls(Path::new("/sys/fs/cgroup")) {
            for c in &containers {
                let p = Path::new("/sys/fs/cgroup")
                    .join(&h)
                    .join(format!("rpaas-{c}"));
                if p.exists() {
                    cgroups.push(p.display().to_string());
                }
            }
        }
        let snapshots = ls(&roots.data.path().join("images/snapshots/overlay/snapshots"));
        let mut records = Vec::new();
        for app in ls(&roots.data.path().join("apps")) {
            records.push(app.clone());
            for i in ls(&roots.data.path().join("apps").join(&app).join("instances")) {
                records.push(format!("{app}/{i}"));
            }
        }
        Leftovers {
            mounts,
            cgroups,
            containers,
            netns: ls(&roots.state.path().join("#netns")),
            snapshots,
            records,
        }
    }
}

/// GET from the peer until it answers (the app may still be starting).
pub fn get_eventually(peer: &Ns, url: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        match peer.get(url) {
            Ok(body) => return body,
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{url}: no answer from {}: {last}", peer.0);
}
