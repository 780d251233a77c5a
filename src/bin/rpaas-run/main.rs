//! `rpaas-run`: an OCI runtime with runc's command line, plus debug verbs
//! (`image`, `bundle`, `net`, `numa`) over the rpaas crates.

mod image;
mod net;
mod numa;
mod oci;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Global flags, in runc's dialect, plus the image-store settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/rpaas")]
    pub root: PathBuf,
    /// Log file (runc's --log); errors are also written there.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log file: text or json.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    /// Use systemd for cgroups (not supported: rpaas writes cgroupfs directly).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Verbose logging to stderr.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; rootless mode is not supported.
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Image store directory (blobs, refs, snapshots).
    #[arg(long, global = true, default_value = "/var/lib/rpaas")]
    pub image_root: PathBuf,
    /// Snapshotter: overlay or devmapper.
    #[arg(long, global = true, default_value = "overlay")]
    pub snapshotter: String,
    /// devmapper: an existing thin pool (e.g. LVM's).
    #[arg(long, global = true)]
    pub dm_pool: Option<String>,
    /// devmapper: directory holding a loop-file-backed pool (created on first use).
    #[arg(long, global = true)]
    pub dm_loopback: Option<PathBuf>,
    /// devmapper: size of a loop-backed pool's data file, e.g. 20G.
    #[arg(long, global = true)]
    pub dm_size: Option<String>,
}

#[derive(Debug, Parser)]
#[command(
    name = "rpaas-run",
    version,
    about = "rpaas OCI runtime",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Oci(oci::OciCommand),
    /// Image store: pull, prefetch, import, ls, inspect, rm, gc.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Prepare (or remove) a runnable bundle from an image.
    Bundle(image::BundleArgs),
    /// Container networking (debug verbs).
    #[command(subcommand)]
    Net(net::NetCommand),
    /// NUMA topology and placement.
    #[command(subcommand)]
    Numa(numa::NumaCommand),
}

fn main() {
    let cli = Cli::parse();
    // FAILPOINTS=name=return (builds with the `failpoints` feature only): crash tests.
    rpaas_runtime::failpoint::setup_from_env();
    oci::init_logging(&cli.global);
    let result = match cli.command {
        Command::Oci(cmd) => oci::run(&cli.global, cmd),
        Command::Image(cmd) => image::run(&cli.global, cmd),
        Command::Bundle(args) => image::bundle(&cli.global, args),
        Command::Net(cmd) => net::run(&cli.global, cmd),
        Command::Numa(cmd) => numa::run(&cli.global, cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let line = format!("{err:#}");
            oci::log_error(&cli.global, &line);
            eprintln!("rpaas-run: {line}");
            std::process::exit(1);
        }
    }
}
