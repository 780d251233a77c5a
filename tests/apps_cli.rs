//! `rpaas-run app …` end to end: the real binary (which runs the library in
//! `rpaas-tools`) on temp state and data roots, an image imported with
//! `rpaas-run image import` into `<dataRoot>/images`, a LAN made of netns,
//! instances reached over HTTP from a peer netns. Bad input is refused in one
//! line naming the field, with nothing left.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::apps::{httpd_layout, Lan, Leftovers, Roots};
use common::*;

const IMAGE: &str = "cli/httpd:1";

/// Temp roots with the test image imported through the CLI, and files
/// (host config, specs, pages) in a work directory.
struct Env {
    roots: Roots,
    work: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        assert!(is_root(), "the app CLI tests need root");
        let roots = Roots {
            state: tempfile::Builder::new()
                .prefix("rpaas-cli-st")
                .tempdir_in("/run")
                .unwrap(),
            data: tempfile::Builder::new()
                .prefix("rpaas-cli-data")
                .tempdir()
                .unwrap(),
            image_dir: tempfile::tempdir().unwrap(),
        };
        let oci = httpd_layout(roots.image_dir.path());
        let env = Env {
            roots,
            work: tempfile::tempdir().unwrap(),
        };
        let images = env.images();
        let out = Command::new(rpaas_run_bin())
            .arg("--root")
            .arg(env.state())
            .arg("--image-root")
            .arg(&images)
            .args(["image", "import", "--unpack"])
            .arg(&oci)
            .arg(IMAGE)
            .output()
            .unwrap();
        assert!(out.status.success(), "import: {}", text(&out.stderr));
        env
    }

    fn state(&self) -> &Path {
        self.roots.state.path()
    }

    fn data(&self) -> &Path {
        self.roots.data.path()
    }

    fn images(&self) -> PathBuf {
        self.data().join("images")
    }

    /// Write a file in the work directory; returns its path.
    fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// A host config on these roots, joined to `lan` when given.
    fn host_config(&self, lan: Option<&Lan>) -> PathBuf {
        let mut cfg = serde_json::json!({
            "stateRoot": self.state(),
            "dataRoot": self.data(),
            "runtime": rpaas_run_bin(),
        });
        if let Some(lan) = lan {
            cfg["network"] = serde_json::json!({
                "mode": "bridge",
                "bridge": "rpbr0",
                "hostNetns": lan.lan.path(),
                "subnet": lan.subnet,
                "gateway": format!("{}.1", lan.prefix3),
                "pool": {"first": format!("{}.10", lan.prefix3), "last": format!("{}.20", lan.prefix3)},
            });
        }
        self.file("host.json", &cfg.to_string())
    }

    /// `rpaas-run --root STATE app --host-config CFG ARGS`.
    fn app(&self, cfg: &Path, args: &[&str]) -> Output {
        Command::new(rpaas_run_bin())
            .arg("--root")
            .arg(self.state())
            .arg("app")
            .arg("--host-config")
            .arg(cfg)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn app_ok(&self, cfg: &Path, args: &[&str]) -> String {
        let out = self.app(cfg, args);
        assert!(
            out.status.success(),
            "app {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn inspect(&self, cfg: &Path, app: &str) -> serde_json::Value {
        serde_json::from_str(&self.app_ok(cfg, &["inspect", app, "--json"])).unwrap()
    }
}

/// Whatever a failed test left of `app` goes (instances, then leftovers).
struct Cleanup<'a> {
    env: &'a Env,
    cfg: PathBuf,
    app: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.env.app(&self.cfg, &["rm", self.app]);
        let _ = self.env.app(&self.cfg, &["gc"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// GET http://`addr`/ from inside the netns at `netns` (a thread of ours
/// joins it, so no helper program is needed); None when it fails.
fn http_get(netns: &Path, addr: &str) -> Option<String> {
    let ns = std::fs::File::open(netns).ok()?;
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let (head, body) = resp.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.")
            .then(|| head.contains(" 200 "))
            .filter(|ok| *ok)
            .map(|_| body.to_string())
    })
    .join()
    .ok()
    .flatten()
}

/// GET until it answers (the app may still be starting).
fn get_eventually(netns: &Path, addr: &str) -> String {
    for _ in 0..100 {
        if let Some(b) = http_get(netns, addr) {
            return b;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("http://{addr}/: no answer from {}", netns.display());
}

/// The instances of an `inspect --json`: (id, status, ip without prefix, pid).
fn instances(v: &serde_json::Value) -> Vec<(String, String, String, i64)> {
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["ip"]
                    .as_str()
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string(),
                i["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn app_cli_deploy_ls_inspect_scale_restart_recreate_rm() {
    let env = Env::new();
    let lan = Lan::new(241);
    let cfg = env.host_config(Some(&lan));
    let before = Leftovers::of(&env.roots);
    env.file("page.html", "hello from the cli\n");
    // A relative source is found beside the spec file.
    let spec = env.file(
        "web.json",
        &serde_json::json!({
            "name": "cliweb",
            "image": IMAGE,
            "instances": 1,
            "files": [{"source": "page.html", "dest": "/www/index.html", "mode": "0644"}],
            "resources": {"cpus": 200, "memory": "64M"},
            "stop": {"grace": 1}
        })
        .to_string(),
    );
    let _cleanup = Cleanup {
        env: &env,
        cfg: cfg.clone(),
        app: "cliweb",
    };

    // deploy: --instances overrides the spec's count; a table of instances.
    let out = env.app_ok(
        &cfg,
        &["deploy", spec.to_str().unwrap(), "--instances", "3"],
    );
    for head in [
        "ID", "STATUS", "PID", "IP", "MAC", "NODE", "CPUS", "STARTED", "RESTARTS", "EXIT",
    ] {
        assert!(out.contains(head), "{head} missing in:\n{out}");
    }
    for n in 1..=3 {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("cliweb-{n} ")) && l.contains(" running ")),
            "cliweb-{n} not running in:\n{out}"
        );
    }

    // ls: a table and JSON.
    let ls = env.app_ok(&cfg, &["ls"]);
    let mut lines = ls.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["APP", "IMAGE", "DESIRED", "RUNNING"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, ["cliweb", IMAGE, "3", "3"]);
    let json: serde_json::Value =
        serde_json::from_str(&env.app_ok(&cfg, &["ls", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "cliweb");
    assert_eq!(json[0]["running"], 3);

    // inspect: 3 running instances with distinct pool addresses, each serving
    // the page file from its writable layer to another machine on the LAN.
    let v = env.inspect(&cfg, "cliweb");
    let inst = instances(&v);
    assert_eq!(inst.len(), 3, "{v}");
    let mut ips: Vec<&str> = inst.iter().map(|i| i.2.as_str()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "addresses not unique: {v}");
    for (id, status, ip, _) in &inst {
        assert_eq!(status, "running", "{id}");
        assert!(ip.starts_with(&lan.prefix3), "{id}: {ip}");
        assert_eq!(
            get_eventually(&lan.peer.path(), &format!("{ip}:8080")),
            "hello from the cli\n"
        );
    }
    assert_eq!(lan.instance_links().len(), 3);

    // scale out to 5, in to 2: the highest-numbered go, their links with them.
    let v5 = env.app_ok(&cfg, &["scale", "cliweb", "5"]);
    assert!(v5.contains("cliweb-5 "), "{v5}");
    let v = env.inspect(&cfg, "cliweb");
    assert_eq!(v["running"], 5, "{v}");
    for (_, _, ip, _) in instances(&v) {
        get_eventually(&lan.peer.path(), &format!("{ip}:8080"));
    }
    env.app_ok(&cfg, &["scale", "cliweb", "2"]);
    let v = env.inspect(&cfg, "cliweb");
    let ids: Vec<String> = instances(&v).into_iter().map(|i| i.0).collect();
    assert_eq!(ids, ["cliweb-1", "cliweb-2"], "{v}");
    assert_eq!(lan.instance_links().len(), 2);

    // restart: same address, a new process, one more restart.
    let (_, _, ip1, pid1) = instances(&v)[0].clone();
    let out = env.app_ok(&cfg, &["restart", "cliweb-1"]);
    assert!(
        out.contains("cliweb-1 ") && out.contains(" running "),
        "{out}"
    );
    let (_, status, ip, pid) = instances(&env.inspect(&cfg, "cliweb"))[0].clone();
    assert_eq!((status.as_str(), ip.as_str()), ("running", ip1.as_str()));
    assert_ne!(pid, pid1);
    assert_eq!(env.inspect(&cfg, "cliweb")["instances"][0]["restarts"], 1);
    get_eventually(&lan.peer.path(), &format!("{ip1}:8080"));

    // recreate: a fresh writable layer (what the app wrote is gone), the
    // app's files written again; the same address.
    let exec = |args: &[&str]| {
        let mut a = vec!["exec", "cliweb-2"];
        a.extend_from_slice(args);
        rpaas(env.state(), &a)
    };
    assert!(exec(&["sh", "-c", "echo scratch > /tmp/mark"])
        .status
        .success());
    let ip2 = instances(&env.inspect(&cfg, "cliweb"))[1].2.clone();
    env.app_ok(&cfg, &["recreate", "cliweb-2"]);
    assert!(
        !exec(&["cat", "/tmp/mark"]).status.success(),
        "/tmp/mark survived recreate"
    );
    assert_eq!(
        get_eventually(&lan.peer.path(), &format!("{ip2}:8080")),
        "hello from the cli\n"
    );

    // rm: everything goes; gc finds nothing more.
    let out = env.app_ok(&cfg, &["rm", "cliweb"]);
    assert!(out.contains("cliweb"), "{out}");
    let gc: serde_json::Value = serde_json::from_str(&env.app_ok(&cfg, &["gc", "--json"])).unwrap();
    for k in ["containers", "snapshots", "netns", "bundles", "placements"] {
        assert_eq!(gc[k], serde_json::json!([]), "gc {k}: {gc}");
    }
    assert_eq!(env.app_ok(&cfg, &["ls", "--json"]).trim(), "[]");
    assert_eq!(Leftovers::of(&env.roots), before);
    assert!(lan.instance_links().is_empty());
    // What is not there is said in one line.
    let out = env.app(&cfg, &["inspect", "cliweb"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("app cliweb: not found"), "{err}");
}

#[test]
fn app_cli_bad_input_is_refused_in_one_line_naming_the_field() {
    let env = Env::new();
    let cfg = env.host_config(None);
    let before = Leftovers::of(&env.roots);
    let page = env.file("page.html", "x\n");
    let refused = |args: &[&str], cfg: &Path, needles: &[&str]| {
        let out = env.app(cfg, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
        assert_eq!(Leftovers::of(&env.roots), before, "{args:?} left something");
    };
    let spec = |name: &str, v: serde_json::Value| env.file(name, &v.to_string());

    let unknown = spec(
        "unknown.json",
        serde_json::json!({"name": "clibad", "image": IMAGE, "resources": {"cpu": 1}}),
    );
    refused(
        &["deploy", unknown.to_str().unwrap()],
        &cfg,
        &["resources.cpu", unknown.to_str().unwrap()],
    );
    let bad_file = spec(
        "bad-file.json",
        serde_json::json!({"name": "clibad", "image": IMAGE,
            "files": [{"source": page, "dest": "relative/index.html"}]}),
    );
    refused(
        &["deploy", bad_file.to_str().unwrap()],
        &cfg,
        &["files[0].dest"],
    );
    let missing = spec(
        "missing.json",
        serde_json::json!({"name": "clibad", "image": IMAGE,
            "files": [{"source": "/nonexistent/page", "dest": "/www/index.html"}]}),
    );
    refused(
        &["deploy", missing.to_str().unwrap()],
        &cfg,
        &["files[0].source"],
    );
    let no_image = spec(
        "no-image.json",
        serde_json::json!({"name": "clibad", "image": "cli/absent:1"}),
    );
    refused(
        &["deploy", no_image.to_str().unwrap()],
        &cfg,
        &["image", "cli/absent:1"],
    );
    let two = spec(
        "two.json",
        serde_json::json!({"name": "clibad", "image": IMAGE, "network": {"mode": "none"},
            "stop": {"signal": "SIGNOPE"}}),
    );
    refused(&["deploy", two.to_str().unwrap()], &cfg, &["stop.signal"]);
    refused(
        &["deploy", "/nonexistent/app.json"],
        &cfg,
        &["/nonexistent/app.json"],
    );
    refused(
        &["scale", "clinone", "2"],
        &cfg,
        &["app clinone: not found"],
    );
    refused(&["restart", "clinone-1"], &cfg, &["app clinone: not found"]);
    refused(&["recreate", "clinone"], &cfg, &["clinone", "<app>-<n>"]);
    // Names become paths under the data root: ".." is not an app.
    refused(&["rm", ".."], &cfg, &["\"..\"", "name"]);
    refused(&["scale", "../apps", "1"], &cfg, &["name"]);
    assert!(
        env.images().join("blobs").is_dir(),
        "the image store is gone"
    );

    // A host config that does not fit is named with its field.
    let bad_cfg = env.file(
        "bad-host.json",
        &serde_json::json!({"stateRoot": env.state(), "dataRoot": env.data(),
            "network": {"mode": "bridge", "subnet": "10.9.0.0/24"}})
        .to_string(),
    );
    refused(&["ls"], &bad_cfg, &["network.bridge"]);
    let typo_cfg = env.file(
        "typo-host.json",
        &serde_json::json!({"stateRoot": env.state(), "dataroot": "/x"}).to_string(),
    );
    refused(&["ls"], &typo_cfg, &["dataroot", "typo-host.json"]);

    // --image-root must be the host's <dataRoot>/images.
    let out = Command::new(rpaas_run_bin())
        .arg("--root")
        .arg(env.state())
        .arg("--image-root")
        .arg(env.work.path())
        .args(["app", "--host-config"])
        .arg(&cfg)
        .arg("ls")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--image-root") && err.contains("dataRoot"),
        "{err}"
    );
    // ... and without a host config it names the images directory, whose
    // parent is the data root: the store `image import` filled is found.
    let no_net = spec(
        "ok.json",
        serde_json::json!({"name": "cliok", "image": IMAGE, "network": {"mode": "none"},
            "stop": {"grace": 0}}),
    );
    let out = Command::new(rpaas_run_bin())
        .arg("--root")
        .arg(env.state())
        .arg("--image-root")
        .arg(env.images())
        .args(["app", "deploy"])
        .arg(&no_net)
        .output()
        .unwrap();
    let _cleanup = Cleanup {
        env: &env,
        cfg: cfg.clone(),
        app: "cliok",
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(env.inspect(&cfg, "cliok")["running"], 1);
    env.app_ok(&cfg, &["rm", "cliok"]);
    env.app_ok(&cfg, &["gc"]);
    assert_eq!(Leftovers::of(&env.roots), before);
}

#[test]
fn app_cli_recover_after_the_agent_is_killed_mid_scale() {
    let env = Env::new();
    let cfg = env.host_config(None);
    let before = Leftovers::of(&env.roots);
    let spec = env.file(
        "app.json",
        &serde_json::json!({"name": "clikill", "image": IMAGE, "instances": 1,
            "network": {"mode": "none"}, "stop": {"grace": 0}})
        .to_string(),
    );
    let _cleanup = Cleanup {
        env: &env,
        cfg: cfg.clone(),
        app: "clikill",
    };
    env.app_ok(&cfg, &["deploy", spec.to_str().unwrap()]);
    let pid1 = instances(&env.inspect(&cfg, "clikill"))[0].3;

    // `app scale clikill 4` is killed with SIGKILL once its first new
    // instance has a record.
    let mut agent = Command::new(rpaas_run_bin())
        .arg("--root")
        .arg(env.state())
        .args(["app", "--host-config"])
        .arg(&cfg)
        .args(["scale", "clikill", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let record = env.data().join("apps/clikill/instances/2.json");
    for _ in 0..500 {
        if record.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(40));
    agent.kill().unwrap();
    let status = agent.wait().unwrap();
    // (It may have finished first on a fast machine; recover is then a no-op.)
    let _ = status;

    // A new process recovers: every instance of the desired count runs, the
    // first one was never touched.
    let out = env.app(&cfg, &["recover", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let v = env.inspect(&cfg, "clikill");
    assert_eq!(v["desired"], 4, "{v}");
    assert_eq!(v["running"], 4, "{v}");
    assert_eq!(
        instances(&v)[0].3,
        pid1,
        "the running instance was restarted"
    );
    let human = env.app_ok(&cfg, &["recover"]);
    assert!(
        human.contains("undone: -"),
        "a second recover found work: {human}"
    );

    env.app_ok(&cfg, &["rm", "clikill"]);
    env.app_ok(&cfg, &["gc"]);
    assert_eq!(Leftovers::of(&env.roots), before);
}
