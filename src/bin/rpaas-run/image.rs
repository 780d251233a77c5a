//! `rpaas-run image …` and `rpaas-run bundle …` (owned by the images work).
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// List images.
    Ls,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Image reference.
    pub reference: Option<String>,
}

pub fn run(_g: &Global, _cmd: ImageCommand) -> anyhow::Result<i32> {
    anyhow::bail!("image: not implemented yet")
}

pub fn bundle(_g: &Global, _args: BundleArgs) -> anyhow::Result<i32> {
    anyhow::bail!("bundle: not implemented yet")
}
