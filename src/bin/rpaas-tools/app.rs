//! `rpaas-run app …`: apps and instances through the `rpaas::Host` library, the
//! same calls an agent makes (deploy, scale, restart, recreate, remove, look,
//! recover, gc).
//!
//! Where things live: the host config (`--host-config FILE`, JSON with the
//! `HostConfig` keys; without one, the defaults of a fresh host). The global
//! `--root`, when given, is the state root (`stateRoot`); `--image-root`,
//! when given, must be `<dataRoot>/images` (the store `rpaas-run image
//! --image-root D/images` fills); without a host config it sets `dataRoot`
//! to its parent. The snapshotter comes from the host config.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rpaas::{AppSpec, AppStatus, Host, HostConfig, InstanceStatus};

use crate::Global;

#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// Host config (JSON: stateRoot, dataRoot, snapshotter, network, numa,
    /// rlimits, sysctls, …); default: a fresh host's defaults.
    #[arg(long, value_name = "FILE")]
    pub host_config: Option<PathBuf>,
    #[command(subcommand)]
    pub verb: AppVerb,
}

#[derive(Debug, clap::Subcommand)]
pub enum AppVerb {
    /// Deploy an app from a spec file (JSON AppSpec); relative `files[].source`
    /// paths are taken from the spec file's directory.
    Deploy {
        file: PathBuf,
        /// Instances to start (overrides the spec's `instances`).
        #[arg(long, value_name = "N")]
        instances: Option<u32>,
    },
    /// Scale an app to N instances (in: the highest-numbered ones go).
    Scale { name: String, n: u32 },
    /// List apps: APP IMAGE DESIRED RUNNING.
    Ls {
        /// Print JSON (every app with its instances).
        #[arg(long)]
        json: bool,
    },
    /// Show an app and each of its instances.
    Inspect {
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart an instance (`<app>-<n>`): same address, MAC, NUMA cpus and writable layer.
    Restart { instance: String },
    /// Recreate an instance with a fresh writable layer (the app's files written again).
    Recreate { instance: String },
    /// Remove an app: every instance, its netns, links, address, NUMA cpus, layer, records.
    Rm { name: String },
    /// After a killed agent or a reboot: finish or undo half-done work, bring
    /// instances back, converge every app to its desired count.
    Recover {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove what no app record claims (containers, layers, netns, placements).
    Gc {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The login audit log: TIME INSTANCE MODE WHO EXIT DURATION COMMAND.
    Logins {
        /// Only this instance's.
        #[arg(long)]
        instance: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resource usage of every instance (or one app's): cAdvisor's metric
    /// names in the Prometheus text format, or JSON.
    Metrics {
        name: Option<String>,
        #[arg(long, value_enum, default_value = "prometheus")]
        format: MetricsFormat,
    },
    /// Instance events as JSON lines: what happened so far (starts and
    /// exits on record), then, with --follow, new ones as they come.
    Events {
        #[arg(long, short)]
        follow: bool,
    },
    /// An instance's logged output.
    Logs {
        instance: String,
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only lines since this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Prefix each line with its time and stream.
        #[arg(long, short)]
        timestamps: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MetricsFormat {
    Prometheus,
    Json,
}

/// Which global flags were given on the command line (not defaulted).
#[derive(Debug, Default, Clone, Copy)]
pub struct Explicit {
    pub root: bool,
    pub image_root: bool,
    pub snapshotter: bool,
    pub dm: bool,
}

/// The host config the flags and the file say.
pub fn host_config(g: &Global, given: Explicit, file: Option<&Path>) -> anyhow::Result<HostConfig> {
    let mut cfg = match file {
        Some(f) => HostConfig::load(f)?,
        None => HostConfig::default(),
    };
    if given.root {
        cfg.state_root = absolute(&g.root).context("--root")?;
    }
    if given.image_root {
        let images = absolute(&g.image_root).context("--image-root")?;
        match (file, images.parent()) {
            (None, Some(parent)) if images.file_name() == Some("images".as_ref()) => {
                cfg.data_root = parent.to_path_buf();
            }
            (None, _) => anyhow::bail!(
                "--image-root {}: apps keep images in <dataRoot>/images: name a directory called \"images\" (its parent becomes dataRoot) or give a host config",
                images.display()
            ),
            (Some(f), _) if images != cfg.images_root() => anyhow::bail!(
                "--image-root {}: the host config {} has dataRoot {}, whose images are in {}",
                images.display(),
                f.display(),
                cfg.data_root.display(),
                cfg.images_root().display()
            ),
            _ => {}
        }
    }
    if given.dm || (given.snapshotter && g.snapshotter != snapshotter_kind(&cfg)) {
        anyhow::bail!(
            "--snapshotter/--dm-*: an app host's snapshotter is set in its host config (snapshotter.kind: {})",
            snapshotter_kind(&cfg)
        );
    }
    cfg.validate()?;
    Ok(cfg)
}

fn snapshotter_kind(cfg: &HostConfig) -> &'static str {
    match cfg.snapshotter {
        rpaas::config::SnapshotterConfig::Overlay => "overlay",
        rpaas::config::SnapshotterConfig::Devmapper { .. } => "devmapper",
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(p)
    })
}

/// Read a spec file: a field that does not fit is named with the file.
pub fn read_spec(path: &Path) -> anyhow::Result<AppSpec> {
    let bytes = std::fs::read(path).with_context(|| format!("read app spec {}", path.display()))?;
    let mut spec =
        AppSpec::from_json(&bytes).with_context(|| format!("app spec {}", path.display()))?;
    let dir = absolute(path)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    for f in &mut spec.files {
        if f.source.is_relative() {
            f.source = dir.join(&f.source);
        }
    }
    Ok(spec)
}

pub fn run(g: &Global, given: Explicit, args: AppArgs) -> anyhow::Result<i32> {
    run_verb(g, given, args).map_err(|e| anyhow::anyhow!(chain_text(&e)))
}

/// The error and its causes on one line, each said once: some errors of the
/// library put their cause in their own message as well as in `source()`.
fn chain_text(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if msg.contains(&t) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&t);
    }
    msg
}

fn run_verb(g: &Global, given: Explicit, args: AppArgs) -> anyhow::Result<i32> {
    let cfg = host_config(g, given, args.host_config.as_deref())?;
    // Read the spec before opening the host: a bad file makes nothing.
    let spec = match &args.verb {
        AppVerb::Deploy { file, instances } => {
            let mut spec = read_spec(file)?;
            if let Some(n) = instances {
                spec.instances = *n;
                spec.validate()
                    .with_context(|| format!("app spec {} with --instances {n}", file.display()))?;
            }
            Some(spec)
        }
        _ => None,
    };
    check_names(&args.verb)?;
    let host = Host::open(cfg)?;
    // A verb on an app that is not there says so before it takes the app's
    // lock (which would make the app's directory).
    match &args.verb {
        AppVerb::Scale { name, .. } => drop(host.app(name)?),
        AppVerb::Restart { instance } | AppVerb::Recreate { instance } => {
            drop(host.app(app_of(instance).unwrap_or_default())?)
        }
        _ => {}
    }
    match args.verb {
        AppVerb::Deploy { .. } => {
            let spec = spec.context("no spec")?;
            let st = host.deploy(&spec)?;
            print_app(&st);
        }
        AppVerb::Scale { name, n } => print_app(&host.scale(&name, n)?),
        AppVerb::Ls { json } => {
            let apps = host.apps()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&apps)?);
            } else {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.image.clone(),
                            a.desired.to_string(),
                            a.running.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["APP", "IMAGE", "DESIRED", "RUNNING"], &rows);
            }
        }
        AppVerb::Inspect { name, json } => {
            let st = host.app(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print_app(&st);
            }
        }
        AppVerb::Restart { instance } => print_instances(&[host.restart(&instance)?]),
        AppVerb::Recreate { instance } => print_instances(&[host.recreate(&instance)?]),
        AppVerb::Rm { name } => {
            host.remove(&name)?;
            println!("removed app {name}");
        }
        AppVerb::Recover { json } => {
            let r = host.recover()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let exited: Vec<String> = r
                    .exited
                    .iter()
                    .map(|(id, e)| format!("{id} ({})", exit_text(e)))
                    .collect();
                for (what, list) in [
                    ("exited while away", &exited),
                    ("restarted", &r.restarted),
                    ("undone", &r.undone),
                    ("removed", &r.removed),
                    ("scaled", &sorted(&r.scaled)),
                    ("abandoned apps", &r.abandoned_apps),
                ] {
                    print_list(what, list);
                }
            }
            for e in &r.errors {
                eprintln!(
                    "rpaas-run: app recover: {}",
                    crate::cli::one_line(e, crate::cli::MAX_LINE)
                );
            }
            return Ok(i32::from(!r.errors.is_empty()));
        }
        AppVerb::Gc { json } => {
            let r = host.gc()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for (what, list) in [
                    ("containers", &r.containers),
                    ("writable layers", &r.snapshots),
                    ("netns", &r.netns),
                    ("bundles", &r.bundles),
                    ("placements", &r.placements),
                ] {
                    print_list(what, list);
                }
            }
            for e in &r.errors {
                eprintln!(
                    "rpaas-run: app gc: {}",
                    crate::cli::one_line(e, crate::cli::MAX_LINE)
                );
            }
            return Ok(i32::from(!r.errors.is_empty()));
        }
        AppVerb::Logins { instance, json } => {
            let mut list = host.logins()?;
            list.retain(|r| instance.as_deref().is_none_or(|i| r.instance == i));
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|r| {
                        vec![
                            r.time.clone(),
                            r.instance.clone(),
                            r.mode.clone(),
                            r.who.clone(),
                            r.exit_code.map_or("-".into(), |c| c.to_string()),
                            r.duration_ms
                                .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                            r.command.join(" "),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "TIME", "INSTANCE", "MODE", "WHO", "EXIT", "DURATION", "COMMAND",
                    ],
                    &rows,
                );
            }
        }
        AppVerb::Metrics { name, format } => {
            let opts = rpaas::MetricsOptions {
                app: name,
                ..Default::default()
            };
            let m = host.metrics_with(&opts)?;
            match format {
                MetricsFormat::Json => println!("{}", serde_json::to_string_pretty(&m)?),
                MetricsFormat::Prometheus => print!("{}", rpaas::metrics::prometheus::render(&m)),
            }
        }
        AppVerb::Events { follow } => {
            use std::io::Write;
            // Subscribed first: nothing between the record and the stream is lost.
            let sub = if follow { Some(host.events()?) } else { None };
            let mut past: Vec<rpaas::Event> = Vec::new();
            for a in host.apps()? {
                for i in &a.instances {
                    if let Some(t) = &i.started {
                        let mut e = rpaas::Event::now(&i.id, rpaas::EventKind::Started);
                        e.time = t.clone();
                        past.push(e);
                    }
                    if let Some(x) = &i.exit {
                        past.push(rpaas::Event::exited(&i.id, x));
                    }
                }
            }
            past.sort_by(|a, b| a.time.cmp(&b.time));
            let mut out = std::io::stdout().lock();
            for e in past {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            }
            out.flush()?;
            if let Some(sub) = sub {
                for e in sub {
                    writeln!(out, "{}", serde_json::to_string(&e)?)?;
                    out.flush()?;
                }
            }
        }
        AppVerb::Logs {
            instance,
            follow,
            tail,
            since,
            timestamps,
        } => {
            use std::io::Write;
            let since = match since {
                Some(s) => Some(
                    rpaas::logs::parse_time(&s)
                        .with_context(|| format!("--since {s:?}: not an RFC 3339 time"))?,
                ),
                None => None,
            };
            let logs = host.logs(
                &instance,
                rpaas::LogOptions {
                    tail,
                    follow,
                    since,
                },
            )?;
            let mut out = std::io::stdout().lock();
            for e in logs {
                let e = e?;
                let end = if e.partial { "" } else { "\n" };
                if timestamps {
                    write!(out, "{} {} {}{end}", e.time, e.stream, e.log)?;
                } else {
                    write!(out, "{}{end}", e.log)?;
                }
                if follow {
                    out.flush()?;
                }
            }
        }
    }
    Ok(0)
}

/// `<app>` of an instance name `<app>-<n>`.
fn app_of(instance: &str) -> Option<&str> {
    let (app, n) = instance.rsplit_once('-')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(app)
}

/// App and instance names from the command line become paths under the data
/// root: they are checked as a spec's `name` is before anything is opened.
fn check_names(verb: &AppVerb) -> anyhow::Result<()> {
    let app = |name: &str| {
        rpaas::app::spec::validate_app_name(name).with_context(|| format!("app {name:?}"))
    };
    match verb {
        AppVerb::Scale { name, .. } | AppVerb::Inspect { name, .. } | AppVerb::Rm { name } => {
            app(name)
        }
        AppVerb::Metrics {
            name: Some(name), ..
        } => app(name),
        AppVerb::Restart { instance }
        | AppVerb::Recreate { instance }
        | AppVerb::Logs { instance, .. } => match app_of(instance) {
            Some(a) => app(a),
            None => anyhow::bail!("instance {instance:?}: not <app>-<n>"),
        },
        _ => Ok(()),
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn print_list(what: &str, list: &[String]) {
    let items = if list.is_empty() {
        "-".to_string()
    } else {
        list.join(" ")
    };
    println!("{what}: {items}");
}

fn exit_text(e: &rpaas::ExitRecord) -> String {
    let mut s = match e.exit_signal {
        Some(sig) => format!("signal {sig}"),
        None => format!("code {}", e.exit_code),
    };
    if e.oom_killed {
        s.push_str(" oom");
    }
    s
}

fn print_app(a: &AppStatus) {
    println!(
        "app {}  image {}  desired {}  running {}",
        a.name, a.image, a.desired, a.running
    );
    print_instances(&a.instances);
}

fn print_instances(list: &[InstanceStatus]) {
    let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.status.clone(),
                dash(i.pid.map(|p| p.to_string())),
                dash(i.ip.clone()),
                dash(i.mac.clone()),
                dash(i.numa_node.map(|n| n.to_string())),
                dash(i.cpus.clone()),
                dash(i.started.clone()),
                i.restarts.to_string(),
                dash(i.health.clone()),
                dash(i.ready.map(|r| if r { "yes" } else { "no" }.to_string())),
                dash(i.exit.as_ref().map(exit_text)),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "STATUS", "PID", "IP", "MAC", "NODE", "CPUS", "STARTED", "RESTARTS", "HEALTH",
            "READY", "EXIT",
        ],
        &rows,
    );
}

/// Columns padded to their widest cell, two spaces apart.
fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
