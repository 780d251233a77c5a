//! `rpaas-keeper`: the per-container monitor, as a small binary.
//!
//! `rpaas-run create --keeper` forks a keeper, which clones the container's
//! init and then execs this program to wait for it: only the keeper code is
//! mapped (no image, registry or TLS code), so 20 idle keepers cost little.
//! Usage (internal): `rpaas-keeper STATE_DIR INIT_PID CGROUP_ID CGROUP_PATH
//! LOG_SIZE:LOG_FILES:LOG_DRIVER [STDOUT_FD STDERR_FD]`.

use std::os::fd::{FromRawFd, OwnedFd};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 && args.len() != 8 {
        eprintln!(
            "rpaas-keeper: internal program of rpaas-run (create --keeper), not for direct use"
        );
        std::process::exit(2);
    }
    let (Ok(init), Some(log)) = (
        args[2].parse::<i32>(),
        rpaas_runtime::keeper::LogOptions::from_arg(&args[5]),
    ) else {
        eprintln!("rpaas-keeper: bad arguments {args:?}");
        std::process::exit(2);
    };
    let dir = rpaas_runtime::state::Dir {
        path: args[1].clone().into(),
    };
    let cgroup = match rpaas_runtime::cgroups::Cgroup::new(&args[3], Some(&args[4])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rpaas-keeper: {}", e.chain());
            std::process::exit(2);
        }
    };
    let logs = match (args.get(6), args.get(7)) {
        (Some(o), Some(e)) => match (o.parse::<i32>(), e.parse::<i32>()) {
            // SAFETY: the forking keeper handed these two pipe fds over execve to us alone.
            (Ok(o), Ok(e)) => Some(unsafe { (OwnedFd::from_raw_fd(o), OwnedFd::from_raw_fd(e)) }),
            _ => None,
        },
        _ => None,
    };
    std::process::exit(rpaas_runtime::keeper::run(&dir, init, &cgroup, logs, log));
}
