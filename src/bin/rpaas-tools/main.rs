//! `rpaas-tools`: the debug verbs that need the image and network crates
//! (`image`, `bundle`, `net`). `rpaas-run image|bundle|net …` execs this
//! binary with its whole command line, so it takes the same global flags.

#[path = "../shared/cli.rs"]
mod cli;
mod image;
mod net;

pub use cli::Global;

/// The global flags are taken after the verb too (`image pull --image-root …`).
pub const FLAGS_AFTER_VERB: bool = true;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rpaas-run",
    version,
    about = "rpaas image and network tools (run as `rpaas-run image|bundle|net …`)",
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
    /// Image store: pull, prefetch, import, ls, inspect, rm, gc.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Prepare (or remove) a runnable bundle from an image.
    Bundle(image::BundleArgs),
    /// Container networking (debug verbs).
    #[command(subcommand)]
    Net(net::NetCommand),
}

fn main() {
    let cli = Cli::parse();
    rpaas_runtime::failpoint::setup_from_env();
    cli::init_logging(&cli.global);
    let result = match cli.command {
        Command::Image(cmd) => image::run(&cli.global, cmd),
        Command::Bundle(args) => image::bundle(&cli.global, args),
        Command::Net(cmd) => net::run(&cli.global, cmd),
    };
    cli::finish(&cli.global, result)
}
