//! `rpaas-run`: an OCI runtime with runc's command line, plus debug verbs.
//!
//! The runtime verbs and `numa` run here. `image`, `bundle` and `net` are
//! handed, with the whole command line, to the `rpaas-tools` binary beside
//! this one: they need the registry client (TLS, an async runtime) and
//! netlink, and loading those libraries at every `create`/`run`/`exec` cost
//! more than the rest of the start-up (docs/DECISIONS.md, "two binaries").

mod checkpoint;
#[path = "../shared/cli.rs"]
mod cli;
mod login;
mod numa;
mod oci;
mod tools;

pub use cli::Global;

/// The global flags go before the verb, as with runc (see [`Global`]).
pub const FLAGS_AFTER_VERB: bool = false;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

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
#[command(defer = true)]
enum Command {
    #[command(flatten)]
    Oci(oci::OciCommand),
    /// Image store: pull, prefetch, import, ls, inspect, rm, gc (runs rpaas-tools).
    #[command(disable_help_flag = true)]
    Image(tools::Passthrough),
    /// Prepare (or remove) a runnable bundle from an image (runs rpaas-tools).
    #[command(disable_help_flag = true)]
    Bundle(tools::Passthrough),
    /// Container networking debug verbs (runs rpaas-tools).
    #[command(disable_help_flag = true)]
    Net(tools::Passthrough),
    /// Apps and instances: deploy, scale, ls, inspect, restart, rm, recover, gc (runs rpaas-tools).
    #[command(disable_help_flag = true)]
    App(tools::Passthrough),
    /// NUMA topology and placement.
    #[command(subcommand)]
    Numa(numa::NumaCommand),
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    // FAILPOINTS=name=return (builds with the `failpoints` feature only): crash tests.
    rpaas_runtime::failpoint::setup_from_env();
    cli::init_logging(&cli.global);
    let result = match cli.command {
        Command::Oci(cmd) => oci::run(&cli.global, cmd),
        Command::Image(_) | Command::Bundle(_) | Command::Net(_) | Command::App(_) => {
            tools::exec(std::env::args_os().skip(1).collect::<Vec<OsString>>())
        }
        Command::Numa(cmd) => numa::run(&cli.global, cmd),
    };
    cli::finish(&cli.global, result)
}

/// A command-line error on one line, as every other error (clap's own
/// rendering adds a tip, the usage and a hint, over six lines): `rpaas-run:
/// unexpected argument '-x' found (tip: …; usage: rpaas-run kill …)`. Help and
/// --version print as clap does.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    let first = lines.next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let rest: Vec<String> = lines
        .map(|l| match l.strip_prefix("Usage: ") {
            Some(u) => format!("usage: {u}"),
            None => l.to_string(),
        })
        .collect();
    let line = if rest.is_empty() {
        first.to_string()
    } else {
        format!("{first} ({})", rest.join("; "))
    };
    eprintln!("rpaas-run: {}", cli::one_line(&line, cli::MAX_LINE));
    std::process::exit(e.exit_code())
}
