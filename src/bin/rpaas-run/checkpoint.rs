//! `checkpoint` and `restore` (runc's flags, what podman passes), through CRIU
//! (rpaas_runtime::checkpoint).

use std::path::{Path, PathBuf};

use rpaas_runtime::checkpoint::{CheckpointOptions, RestoreOptions};
use rpaas_runtime::Container;

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// Directory for CRIU's images.
    #[arg(long, default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Directory for CRIU's log and work files (default: the image dir).
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// A pre-dump's image dir, relative to --image-path (as CRIU takes it).
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Dump established TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Dump file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// Accepted for runc compatibility (unix sockets to the outside are detected).
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Accepted for runc compatibility (shell jobs are detected).
    #[arg(long)]
    pub shell_job: bool,
    /// Dump memory only; the container keeps running.
    #[arg(long)]
    pub pre_dump: bool,
    /// soft, full, strict or ignore.
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Accepted for runc compatibility (not supported: no page server).
    #[arg(long, hide = true)]
    pub page_server: Option<String>,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Path to the bundle (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Directory of CRIU's images.
    #[arg(long, default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Directory for CRIU's log and work files (default: the image dir).
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Return once restored (else wait for the container and delete it).
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the restored init's pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket for a terminal's pty master (terminals are refused).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Restore established TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Restore file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// Accepted for runc compatibility (recorded at checkpoint).
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Accepted for runc compatibility (recorded at checkpoint).
    #[arg(long)]
    pub shell_job: bool,
    /// soft, full, strict or ignore.
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Accepted for runc compatibility (no session keyring is made).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub no_pivot: bool,
    /// Run under a keeper that records the exit status (also when the
    /// checkpointed container had one).
    #[arg(long)]
    pub keeper: bool,
    pub id: String,
}

pub fn checkpoint(root: &Path, a: CheckpointArgs) -> anyhow::Result<i32> {
    if a.page_server.is_some() {
        anyhow::bail!("--page-server: not supported (write the images to --image-path)");
    }
    rpaas_runtime::checkpoint::checkpoint(&CheckpointOptions {
        root: root.to_path_buf(),
        id: a.id,
        image_path: a.image_path,
        work_path: a.work_path,
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        file_locks: a.file_locks,
        manage_cgroups_mode: a.manage_cgroups_mode,
        pre_dump: a.pre_dump,
        parent_path: a.parent_path,
    })?;
    Ok(0)
}

pub fn restore(root: &Path, a: RestoreArgs) -> anyhow::Result<i32> {
    let st = rpaas_runtime::checkpoint::restore(&RestoreOptions {
        root: root.to_path_buf(),
        id: a.id.clone(),
        bundle: a.bundle,
        image_path: a.image_path,
        work_path: a.work_path,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        tcp_established: a.tcp_established,
        file_locks: a.file_locks,
        manage_cgroups_mode: a.manage_cgroups_mode,
        keeper: a.keeper,
        subreaper: !a.detach,
    })?;
    if a.detach {
        return Ok(0);
    }
    // Attached (runc's restore without --detach): wait, record, delete.
    let c = Container::load(root, &a.id)?;
    let code = if st.keeper.is_some() {
        c.wait(None)?.map(|r| r.exit_code).unwrap_or(255)
    } else {
        let init = st.init.map(|p| p.pid).unwrap_or(0);
        let code = rpaas_runtime::exec::wait_code(nix::unistd::Pid::from_raw(init))?;
        let _ = c.dir.write_exit(&rpaas_runtime::ExitRecord {
            exit_code: code,
            exit_signal: (code > 128).then_some(code - 128),
            oom_killed: false,
            finished_at: rpaas_runtime::state::now_rfc3339(),
        });
        code
    };
    Container::load(root, &a.id)?.delete(true)?;
    Ok(code)
}
