//! The calls a PaaS host agent makes on `rpaas::Host`, in the order it makes
//! them: open the host and recover (the agent may have been killed, or the
//! host rebooted), deploy an app from its spec, look at it, scale it out and
//! in, restart an instance, collect garbage, remove the app.
//!
//! ```sh
//! cargo build --bins && cargo run --example agent -- \
//!     --host-config host.json --spec app.json [--scale 4] [--keep]
//! ```
//!
//! `--host-config` is the JSON `HostConfig` (default: a fresh host's
//! defaults), `--spec` the JSON `AppSpec` whose image is already in the host's
//! store (`rpaas-run --image-root <dataRoot>/images image import|prefetch …`).
//! `--runtime` names the `rpaas-run` binary (default: the one cargo built
//! beside this example, else `rpaas-run` on PATH). `--keep` leaves the app
//! deployed (a later run recovers and reuses it).

use std::path::PathBuf;
use std::process::ExitCode;

use rpaas::{AppSpec, AppStatus, Host, HostConfig};

struct Args {
    host_config: Option<PathBuf>,
    spec: PathBuf,
    runtime: Option<PathBuf>,
    scale: u32,
    keep: bool,
}

const USAGE: &str =
    "usage: agent [--host-config FILE] --spec FILE [--runtime RPAAS_RUN] [--scale N] [--keep]";

fn parse_args() -> Result<Args, String> {
    let mut host_config = None;
    let mut spec = None;
    let mut runtime = None;
    let mut scale = None;
    let mut keep = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--host-config" => host_config = Some(PathBuf::from(value(&a)?)),
            "--spec" => spec = Some(PathBuf::from(value(&a)?)),
            "--runtime" => runtime = Some(PathBuf::from(value(&a)?)),
            "--scale" => {
                let v = value(&a)?;
                scale = Some(v.parse().map_err(|_| format!("--scale {v}: not a count"))?);
            }
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} ({USAGE})")),
        }
    }
    Ok(Args {
        host_config,
        spec: spec.ok_or(format!("--spec is required ({USAGE})"))?,
        runtime,
        scale: scale.unwrap_or(0),
        keep,
    })
}

/// `target/<profile>/rpaas-run` when this runs from `target/<profile>/examples/`.
fn runtime_beside_examples() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("rpaas-run");
    bin.is_file().then_some(bin)
}

fn show(what: &str, app: &AppStatus) {
    println!(
        "{what}: app {} ({}): {} desired, {} running",
        app.name, app.image, app.desired, app.running
    );
    for i in &app.instances {
        println!(
            "  {:<12} {:<9} ip {:<18} numa node {:<4} pid {}",
            i.id,
            i.status,
            i.ip.as_deref().unwrap_or("-"),
            i.numa_node.map_or("-".into(), |n| n.to_string()),
            i.pid.map_or("-".into(), |p| p.to_string()),
        );
    }
}

fn run(args: Args) -> rpaas::Result<()> {
    // 1. The host: where state and data live, the LAN, NUMA, defaults.
    let mut config = match &args.host_config {
        Some(f) => HostConfig::load(f)?,
        None => HostConfig::default(),
    };
    if config.runtime.is_none() {
        config.runtime = args.runtime.clone().or_else(runtime_beside_examples);
    }
    let host = Host::open(config)?;

    // 2. At every start: the agent may have been killed mid-operation, or the
    //    host rebooted. Recover finishes or undoes what was cut short and
    //    brings every app back to its desired count.
    let report = host.recover()?;
    for (id, exit) in &report.exited {
        println!("recover: {id} exited while the agent was away: {exit:?}");
    }
    for e in &report.errors {
        eprintln!("recover: {e}");
    }

    // 3. Deploy (or find) the app of the spec.
    let bytes = std::fs::read(&args.spec).map_err(|source| rpaas::Error::Io {
        what: "read app spec".into(),
        path: args.spec.clone(),
        source,
    })?;
    let mut spec = AppSpec::from_json(&bytes)?;
    // Files named relative to the spec are found beside it.
    let spec_dir = args.spec.parent().unwrap_or(std::path::Path::new("."));
    for f in &mut spec.files {
        if f.source.is_relative() {
            f.source = spec_dir.join(&f.source);
        }
    }
    let app = match host.app(&spec.name) {
        Ok(app) => app,
        Err(rpaas::Error::NotFound { .. }) => host.deploy(&spec)?,
        Err(e) => return Err(e),
    };
    show("deployed", &app);

    // 4. Scale out and back in (the highest-numbered instances go).
    let target = if args.scale > 0 {
        args.scale
    } else {
        app.desired + 2
    };
    show("scaled out", &host.scale(&spec.name, target)?);
    show("scaled in", &host.scale(&spec.name, app.desired)?);

    // 5. Restart one instance: same address, MAC, NUMA cpus and writable layer.
    if let Some(first) = host.app(&spec.name)?.instances.first() {
        let i = host.restart(&first.id)?;
        println!(
            "restarted {}: {} (pid {}, restarts {})",
            i.id,
            i.status,
            i.pid.map_or("-".into(), |p| p.to_string()),
            i.restarts
        );
    }

    // 6. Collect whatever no record claims (a crash of something else).
    let gc = host.gc()?;
    println!(
        "gc: {} containers, {} layers, {} netns removed",
        gc.containers.len(),
        gc.snapshots.len(),
        gc.netns.len()
    );

    // 7. Remove the app: containers, netns and links, addresses, NUMA
    //    reservations, writable layers and records.
    if args.keep {
        show("kept", &host.app(&spec.name)?);
    } else {
        host.remove(&spec.name)?;
        println!(
            "removed app {}; apps left: {}",
            spec.name,
            host.apps()?.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agent: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::FAILURE
        }
    }
}
