//! `rpaas-run numa …` (owned by the NUMA work).
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum NumaCommand {
    /// Show the topology.
    Show,
}

pub fn run(_g: &Global, _cmd: NumaCommand) -> anyhow::Result<i32> {
    anyhow::bail!("numa: not implemented yet")
}
