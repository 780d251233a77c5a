//! Checkpoint and restore of one container through `rpaas-run checkpoint` /
//! `restore` (CRIU; see rpaas_runtime::checkpoint). Container granularity:
//! the instance-level calls of issue 17 (writable layer, same IP and MAC on
//! another host, migrate) are built on these.

use std::ffi::OsStr;
use std::path::Path;

use rpaas_runtime::Container;

use crate::error::Result;
use crate::host::Host;

impl Host {
    /// Checkpoint container `id` into `dir` (CRIU's images plus rpaas's
    /// record). With `leave_running` the container goes on; without, CRIU
    /// stops it and it is deleted (its id is free for [`Host::restore_container`]).
    pub fn checkpoint_container(&self, id: &str, dir: &Path, leave_running: bool) -> Result<()> {
        let mut args: Vec<&OsStr> = vec!["--image-path".as_ref(), dir.as_os_str()];
        if leave_running {
            args.push("--leave-running".as_ref());
        }
        args.push(id.as_ref());
        self.inner
            .runtime_cmd(id, "checkpoint", &args, false)
            .map(drop)
    }

    /// Restore the checkpoint in `dir` as container `id` from `bundle`,
    /// running under a keeper (its exit recorded as any other's, its output
    /// logged to `<root>/<id>/log`). Returns once it runs.
    pub fn restore_container(&self, id: &str, bundle: &Path, dir: &Path) -> Result<Container> {
        let args: [&OsStr; 7] = [
            "--detach".as_ref(),
            "--keeper".as_ref(),
            "--image-path".as_ref(),
            dir.as_os_str(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            id.as_ref(),
        ];
        self.inner.runtime_cmd(id, "restore", &args, false)?;
        self.load(id)
    }
}
