//! `rpaas-tools`: the verbs that need the image and network crates (`image`,
//! `bundle`, `net`) and the apps of the `rpaas` library (`app`).
//! `rpaas-run image|bundle|net|app …` execs this binary with its whole
//! command line, so it takes the same global flags.

mod app;
#[path = "../shared/cli.rs"]
mod cli;
mod image;
mod net;

pub use cli::Global;

/// The global flags are taken after the verb too (`image pull --image-root …`).
pub const FLAGS_AFTER_VERB: bool = true;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rpaas-run",
    version,
    about = "rpaas image, network and app tools (run as `rpaas-run image|bundle|net|app …`)",
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
    /// Apps and instances (the rpaas library's Host): deploy, scale, ls,
    /// inspect, restart, recreate, rm, recover, gc.
    App(app::AppArgs),
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    rpaas_runtime::failpoint::setup_from_env();
    cli::init_logging(&cli.global);
    let result = match cli.command {
        Command::Image(cmd) => image::run(&cli.global, cmd),
        Command::Bundle(args) => image::bundle(&cli.global, args),
        Command::Net(cmd) => net::run(&cli.global, cmd),
        Command::App(args) => {
            let given = app::Explicit {
                root: given(&matches, "root"),
                image_root: given(&matches, "image_root"),
                snapshotter: given(&matches, "snapshotter"),
                dm: ["dm_pool", "dm_loopback", "dm_size"]
                    .iter()
                    .any(|id| given(&matches, id)),
            };
            app::run(&cli.global, given, args)
        }
    };
    cli::finish(&cli.global, result)
}

/// Whether a global flag was given on the command line (before or after the
/// verb), not taken from its default.
fn given(matches: &ArgMatches, id: &str) -> bool {
    let mut m = Some(matches);
    while let Some(cur) = m {
        if cur.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return true;
        }
        m = cur.subcommand().map(|(_, sub)| sub);
    }
    false
}
