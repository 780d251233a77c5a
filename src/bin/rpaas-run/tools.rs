//! `image`, `bundle` and `net`: run by the `rpaas-tools` binary.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

/// The environment variable that names the `rpaas-tools` binary (default:
/// the one beside this binary).
pub const TOOLS_ENV: &str = "RPAAS_TOOLS_BIN";

/// The verb's own arguments: `rpaas-tools` parses them (and `--help`).
#[derive(Debug, clap::Args)]
pub struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// Replace this process with `rpaas-tools ARGS` (our own argv, global flags
/// included, so both binaries read one command line the same way).
pub fn exec(args: Vec<OsString>) -> anyhow::Result<i32> {
    let bin = tools_bin()?;
    let err = std::process::Command::new(&bin)
        .arg0("rpaas-run")
        .args(args)
        .exec();
    Err(err).with_context(|| {
        format!(
            "exec {} (image, bundle and net run in rpaas-tools: install it beside rpaas-run or name it in {TOOLS_ENV})",
            bin.display()
        )
    })
}

fn tools_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(TOOLS_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().context("find this binary (/proc/self/exe)")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no directory", exe.display()))?;
    Ok(dir.join("rpaas-tools"))
}
