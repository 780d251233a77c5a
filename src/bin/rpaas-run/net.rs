//! `rpaas-run net …` (owned by the netsetup work).
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Show a netns's interfaces.
    Show,
}

pub fn run(_g: &Global, _cmd: NetCommand) -> anyhow::Result<i32> {
    anyhow::bail!("net: not implemented yet")
}
