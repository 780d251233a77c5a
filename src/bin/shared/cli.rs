//! What `rpaas-run` and `rpaas-tools` share: the global flags (both parse
//! the same command line: `rpaas-run image …` hands its whole argv to
//! `rpaas-tools`) and the error/debug logging.
//!
//! Included by path from both binaries rather than put in the `rpaas`
//! library: the library links the image and network crates, and the point of
//! two binaries is that the OCI runtime does not load them (see
//! docs/DECISIONS.md, "two binaries").

use std::io::Write;
use std::path::PathBuf;

/// Global flags, in runc's dialect, plus the image-store settings.
///
/// Each binary says in `FLAGS_AFTER_VERB` whether they are also taken after
/// the verb (clap's `global`): rpaas-tools takes `image pull --image-root …`;
/// rpaas-run takes them before the verb only, as runc does, because clap
/// copies every global flag into every subcommand at each start-up (most of
/// rpaas-run's heap allocations on every create, start and delete).
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = crate::FLAGS_AFTER_VERB, default_value = "/run/rpaas")]
    pub root: PathBuf,
    /// Log file (runc's --log); errors are also written there.
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub log: Option<PathBuf>,
    /// Format of the log file: text or json.
    #[arg(long, global = crate::FLAGS_AFTER_VERB, default_value = "text")]
    pub log_format: String,
    /// Use systemd for cgroups (not supported: rpaas writes cgroupfs directly).
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub systemd_cgroup: bool,
    /// Verbose logging to stderr.
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub debug: bool,
    /// Accepted for runc compatibility; rootless mode is not supported.
    #[arg(long, global = crate::FLAGS_AFTER_VERB, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Image store directory (blobs, refs, snapshots).
    #[arg(long, global = crate::FLAGS_AFTER_VERB, default_value = "/var/lib/rpaas")]
    pub image_root: PathBuf,
    /// Snapshotter: overlay or devmapper.
    #[arg(long, global = crate::FLAGS_AFTER_VERB, default_value = "overlay")]
    pub snapshotter: String,
    /// devmapper: an existing thin pool (e.g. LVM's).
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub dm_pool: Option<String>,
    /// devmapper: directory holding a loop-file-backed pool (created on first use).
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub dm_loopback: Option<PathBuf>,
    /// devmapper: size of a loop-backed pool's data file, e.g. 20G.
    #[arg(long, global = crate::FLAGS_AFTER_VERB)]
    pub dm_size: Option<String>,
}

/// Warnings (a failed poststart/poststop hook, an ignored setting) always go
/// to stderr and to --log, as runc's do; `--debug` or `RPAAS_LOG` add the
/// rest on stderr. No EnvFilter is built unless asked: every container start
/// runs this.
pub fn init_logging(g: &Global) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let debug = g.debug || std::env::var_os("RPAAS_LOG").is_some();
    let warnings = WarnLayer {
        log: g.log.clone(),
        json: g.log_format == "json",
        // With --debug the fmt layer below already prints them on stderr.
        stderr: !debug,
    };
    let registry = tracing_subscriber::registry().with(warnings);
    if debug {
        use tracing_subscriber::Layer;
        let filter = tracing_subscriber::EnvFilter::try_from_env("RPAAS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter);
        let _ = registry.with(fmt).try_init();
    } else {
        let _ = registry.try_init();
    }
}

/// Writes WARN and ERROR events as one bounded line each: `rpaas-run:
/// warning: …` on stderr, and runc's format in --log.
struct WarnLayer {
    log: Option<PathBuf>,
    json: bool,
    stderr: bool,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarnLayer {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // Lower is more severe: ERROR < WARN < INFO.
        *meta.level() <= tracing::Level::WARN
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut text = Fields(String::new());
        event.record(&mut text);
        let line = one_line(&text.0, MAX_LINE);
        let level = if *event.metadata().level() == tracing::Level::ERROR {
            "error"
        } else {
            "warning"
        };
        if self.stderr {
            eprintln!("rpaas-run: {level}: {line}");
        }
        if let Some(path) = &self.log {
            append_log(path, self.json, level, &line);
        }
    }
}

/// An event's message, then its other fields as ` key=value`.
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The longest line rpaas-run prints for an error or a warning: a list of
/// 70,000 gids, a kernel message or a hook's path must not flood a log.
pub const MAX_LINE: usize = 4096;

/// `line` made fit for one line of output: control characters (a newline
/// from a kernel message or a hook's output) escaped, and at most `max`
/// bytes, the rest replaced by "… (N more bytes)".
pub fn one_line(line: &str, max: usize) -> String {
    let mut out = String::with_capacity(line.len().min(max) + 32);
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if out.len() > max {
        let total = out.len();
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!("… ({} more bytes)", total - cut));
    }
    out
}

/// One line in --log: JSON (`{"level","msg","time"}`, as runc writes it) or
/// logfmt-like text.
fn append_log(path: &std::path::Path, json: bool, level: &str, line: &str) {
    append_log_with(path, json, level, line, None)
}

/// One log record; an error's JSON record also carries its kind, container
/// and field (`rpaas::Host` turns them back into `rpaas_runtime::Error`s).
fn append_log_with(
    path: &std::path::Path,
    json: bool,
    level: &str,
    line: &str,
    report: Option<&rpaas_runtime::Report>,
) {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let now = rpaas_runtime::state::now_rfc3339();
    let text = if json {
        let mut v = serde_json::json!({"level": level, "msg": line, "time": now});
        if let Some(r) = report {
            v["kind"] = serde_json::json!(r.kind);
            if let Some(c) = &r.container {
                v["container"] = serde_json::json!(c);
            }
            if let Some(f) = &r.field {
                v["field"] = serde_json::json!(f);
            }
        }
        v.to_string()
    } else {
        format!("time=\"{now}\" level={level} msg={line:?}")
    };
    let _ = writeln!(f, "{text}");
}

/// Exit with the command's code, or print the error chain on one line
/// (also to --log) and exit 1.
pub fn finish(g: &Global, result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let line = one_line(&format!("{err:#}"), MAX_LINE);
            let report = err
                .chain()
                .find_map(|e| e.downcast_ref::<rpaas_runtime::Error>())
                .map(|e| e.report(&line));
            if let Some(path) = &g.log {
                append_log_with(
                    path,
                    g.log_format == "json",
                    "error",
                    &line,
                    report.as_ref(),
                );
            }
            eprintln!("rpaas-run: {line}");
            std::process::exit(1);
        }
    }
}
