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

pub fn init_logging(g: &Global) {
    if g.debug || std::env::var_os("RPAAS_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::try_from_env("RPAAS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Append the error to --log (JSON with --log-format json, as runc does).
pub fn log_error(g: &Global, line: &str) {
    let Some(path) = &g.log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let now = rpaas_runtime::state::now_rfc3339();
    let text = if g.log_format == "json" {
        serde_json::json!({"level": "error", "msg": line, "time": now}).to_string()
    } else {
        format!("time=\"{now}\" level=error msg=\"{line}\"")
    };
    let _ = writeln!(f, "{text}");
}

/// Exit with the command's code, or print the error chain on one line
/// (also to --log) and exit 1.
pub fn finish(g: &Global, result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let line = format!("{err:#}");
            log_error(g, &line);
            eprintln!("rpaas-run: {line}");
            std::process::exit(1);
        }
    }
}
