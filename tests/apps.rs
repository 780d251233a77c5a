//! Apps through the library (`rpaas::Host`), as an agent drives them: real
//! images, real keeper containers, a real LAN in network namespaces. Root only.

mod common;

use std::collections::HashSet;

use common::apps::{get_eventually, Lan, Leftovers, Roots, IMAGE};
use rpaas::{AppSpec, Host};

fn spec(json: serde_json::Value) -> AppSpec {
    AppSpec::from_json(&serde_json::to_vec(&json).unwrap()).expect("spec")
}

fn page_file(roots: &Roots, text: &str) -> std::path::PathBuf {
    let p = roots
        .image_dir
        .path()
        .join(format!("page-{}.html", text.len()));
    std::fs::write(&p, text).unwrap();
    p
}

fn ips(h: &Host, app: &str) -> Vec<String> {
    h.app(app)
        .unwrap()
        .instances
        .iter()
        .map(|i| {
            i.ip.clone()
                .expect("ip")
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn deploy_scale_restart_recreate_update_remove() {
    let roots = Roots::new();
    let lan = Lan::new(1);
    let before = Leftovers::of(&roots);
    let h = roots.host(Some(lan.network()));
    let page = page_file(&roots, "hello from the app\n");
    let web = spec(serde_json::json!({
        "name": "web", "image": IMAGE, "instances": 3,
        "env": {"GREETING": "hi"},
        "files": [{"source": page, "dest": "/www/index.html", "mode": "0644", "owner": "1000:1000"}],
        "resources": {"cpus": 250, "memory": "64M", "pids": 64},
        "rlimits": {"nproc": 512},
        "stop": {"signal": "SIGTERM", "grace": 0.5}
    }));
    let st = h.deploy(&web).expect("deploy");
    assert_eq!((st.desired, st.running), (3, 3), "{st:?}");
    let names: Vec<&str> = st.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    let first_ips = ips(&h, "web");
    assert_eq!(
        first_ips.iter().collect::<HashSet<_>>().len(),
        3,
        "{first_ips:?}"
    );
    for ip in &first_ips {
        // The app's file is in its writable layer, served over the LAN.
        let body = get_eventually(&lan.peer, &format!("http://{ip}:8080/"));
        assert_eq!(body, "hello from the app\n");
    }
    // A container id per instance name: every rpaas-run verb works on it.
    let c = h.load("web-1").unwrap();
    assert_eq!(c.status(), rpaas::Status::Running);
    let out = h
        .exec("web-1", None, &["sh", "-c", "echo $GREETING; ulimit -u"])
        .unwrap();
    assert_eq!(out.stdout, "hi\n512\n");
    // The file is a real file of the writable layer: replaceable by rename.
    let out = h
        .exec(
            "web-1",
            Some("0"),
            &[
                "sh",
                "-c",
                "echo new > /www/n && mv /www/n /www/index.html && cat /www/index.html",
            ],
        )
        .unwrap();
    assert_eq!((out.code, out.stdout.as_str()), (0, "new\n"), "{out:?}");

    // Scale out: new instances get the next numbers and new addresses.
    let st = h.scale("web", 5).expect("scale out");
    assert_eq!(st.running, 5);
    let five = ips(&h, "web");
    assert_eq!(five.iter().collect::<HashSet<_>>().len(), 5);
    // Scale in: the highest-numbered go, their addresses come back to the pool.
    let st = h.scale("web", 2).expect("scale in");
    let names: Vec<&str> = st.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2"]);
    assert!(h.load("web-5").is_err());
    let st = h.scale("web", 3).expect("scale out again");
    assert_eq!(
        ips(&h, "web")[2],
        first_ips[2],
        "a freed address is handed out again"
    );
    assert_eq!(st.running, 3);

    // Restart keeps the address, MAC, NUMA cpus and writable layer.
    let was = h.app("web").unwrap().instances[0].clone();
    let now = h.restart("web-1").expect("restart");
    assert_eq!(
        (now.ip.clone(), now.mac.clone(), now.cpus.clone()),
        (was.ip, was.mac, was.cpus)
    );
    assert_ne!(now.pid, was.pid);
    assert_eq!(now.restarts, 1);
    let ip1 = &first_ips[0];
    assert_eq!(
        get_eventually(&lan.peer, &format!("http://{ip1}:8080/")),
        "new\n"
    );
    // Recreate gives a fresh writable layer with the app's files written again.
    h.recreate("web-1").expect("recreate");
    assert_eq!(
        get_eventually(&lan.peer, &format!("http://{ip1}:8080/")),
        "hello from the app\n"
    );

    // Live update of every instance's limits.
    let mut res = web.resources.clone();
    res.pids = Some(32);
    h.update("web", &res).expect("update");
    let out = h
        .exec("web-2", None, &["cat", "/sys/fs/cgroup/pids/pids.max"])
        .unwrap();
    assert_eq!(out.stdout.trim(), "32", "{out:?}");
    assert_eq!(h.spec("web").unwrap().resources.pids, Some(32));

    h.remove("web").expect("remove");
    assert!(h.apps().unwrap().is_empty());
    let gc = h.gc().expect("gc");
    assert!(gc.containers.is_empty() && gc.netns.is_empty(), "{gc:?}");
    assert_eq!(Leftovers::of(&roots), before);
    assert!(
        lan.instance_links().is_empty(),
        "{:?}",
        lan.instance_links()
    );
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let roots = Roots::new();
    let lan = Lan::new(2);
    let h = roots.host(Some(lan.network()));
    let page = page_file(&roots, "x\n");
    let before = Leftovers::of(&roots);
    let base = serde_json::json!({"name": "bad", "image": IMAGE, "instances": 2});
    let with = |patch: serde_json::Value| {
        let mut v = base.clone();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        spec(v)
    };
    let cases: Vec<(AppSpec, &str)> = vec![
        (with(serde_json::json!({"image": "nope/none:1"})), "image"),
        (
            with(serde_json::json!({"files": [{"source": "/no/such/file", "dest": "/x"}]})),
            "files[0].source",
        ),
        (
            with(serde_json::json!({"network": {"mode": "bridge", "bridge": "rpnobr0"}})),
            "rpnobr0",
        ),
        (
            with(serde_json::json!({"network": {"mode": "macvlan"}, "instances": 1})),
            "network.master",
        ),
        (
            with(
                serde_json::json!({"resources": {"cpus": 900000, "memory": "64M"},
                                     "numa": {"policy": "single-node"}}),
            ),
            "numa",
        ),
        (
            with(
                serde_json::json!({"user": "nosuchuser", "files": [{"source": page, "dest": "/www/a"}]}),
            ),
            "user",
        ),
    ];
    for (s, field) in cases {
        let e = h.deploy(&s).expect_err(field).to_string();
        assert!(e.contains(field), "{field}: {e}");
        assert!(!e.contains('\n'), "{e}");
        assert_eq!(Leftovers::of(&roots), before, "after {field}: {e}");
        assert!(lan.instance_links().is_empty(), "after {field}");
    }
    // Names that are not apps: refused, and nothing made for them (a name
    // becomes a path under the data root).
    for name in ["..", "a/b", ""] {
        let e = h.remove(name).unwrap_err().to_string();
        assert!(e.contains("name"), "{name:?}: {e}");
    }
    assert!(h
        .scale("nope", 2)
        .unwrap_err()
        .to_string()
        .contains("not found"));
    assert!(h
        .restart("nope-1")
        .unwrap_err()
        .to_string()
        .contains("not found"));
    assert_eq!(Leftovers::of(&roots), before);
    // An address already used by another app, and a pool that runs dry.
    let one = spec(serde_json::json!({"name": "one", "image": IMAGE,
        "network": {"addresses": [format!("{}.10/24", lan.prefix3)]}}));
    h.deploy(&one).expect("deploy one");
    let clash = spec(serde_json::json!({"name": "two", "image": IMAGE,
        "network": {"addresses": [format!("{}.10/24", lan.prefix3)]}}));
    let e = h.deploy(&clash).unwrap_err().to_string();
    assert!(
        e.contains("network.addresses[0]") && e.contains("already used"),
        "{e}"
    );
    h.remove("one").unwrap();
    // No half-made "bad" was left by the failures: it deploys, once.
    h.deploy(&spec(base.clone()))
        .expect("deploy bad after its failures");
    let e = h.deploy(&spec(base.clone())).unwrap_err().to_string();
    assert!(e.contains("already deployed"), "{e}");
    h.remove("bad").unwrap();
    h.gc().unwrap();
    assert_eq!(Leftovers::of(&roots), before);
}

#[test]
fn pool_exhaustion_undoes_the_whole_deploy() {
    let roots = Roots::new();
    let lan = Lan::new(3);
    let mut net = lan.network();
    net.pool = Some(rpaas::config::AddressRange {
        first: format!("{}.10", lan.prefix3).parse().unwrap(),
        last: format!("{}.11", lan.prefix3).parse().unwrap(),
    });
    let h = roots.host(Some(net));
    let before = Leftovers::of(&roots);
    let s = spec(serde_json::json!({"name": "big", "image": IMAGE, "instances": 3}));
    let e = h.deploy(&s).unwrap_err().to_string();
    assert!(e.contains("exhausted") && e.contains("big"), "{e}");
    assert_eq!(Leftovers::of(&roots), before);
    assert!(lan.instance_links().is_empty());
    // Exactly as many as the pool holds.
    let s = spec(serde_json::json!({"name": "big", "image": IMAGE, "instances": 2}));
    h.deploy(&s).expect("deploy 2");
    assert!(h
        .scale("big", 3)
        .unwrap_err()
        .to_string()
        .contains("exhausted"));
    assert_eq!(h.app("big").unwrap().instances.len(), 2);
    h.remove("big").unwrap();
    h.gc().unwrap();
    assert_eq!(Leftovers::of(&roots), before);
}

#[test]
fn threads_deploy_and_scale_apps_at_once() {
    let roots = Roots::new();
    let lan = Lan::new(4);
    let h = roots.host(Some(lan.network()));
    let before = Leftovers::of(&roots);
    std::thread::scope(|s| {
        for a in 0..4 {
            let h = h.clone();
            s.spawn(move || {
                let name = format!("t{a}");
                h.deploy(&spec(
                    serde_json::json!({"name": name, "image": IMAGE, "instances": 2}),
                ))
                .expect("deploy");
                h.scale(&name, 3).expect("scale");
            });
        }
    });
    // Two threads race to scale one app: serialized, both succeed, one wins last.
    std::thread::scope(|s| {
        for n in [1u32, 4] {
            let h = h.clone();
            s.spawn(move || h.scale("t0", n).expect("racing scale"));
        }
    });
    let t0 = h.app("t0").unwrap();
    assert!([1, 4].contains(&t0.instances.len()), "{t0:?}");
    assert_eq!(t0.running as usize, t0.instances.len());
    let all: Vec<String> = h
        .apps()
        .unwrap()
        .iter()
        .flat_map(|a| a.instances.iter().map(|i| i.ip.clone().unwrap()))
        .collect();
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        all.len(),
        "{all:?}"
    );
    for a in 0..4 {
        h.remove(&format!("t{a}")).unwrap();
    }
    h.gc().unwrap();
    assert_eq!(Leftovers::of(&roots), before);
    assert!(lan.instance_links().is_empty());
}
