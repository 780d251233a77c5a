//! Processes, threads and open files of an instance: the cgroup's pids,
//! each read from /proc (a process that exits meanwhile is skipped).

use rpaas_runtime::cgroups::Cgroup;
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessMetrics {
    pub processes: u64,
    pub threads: u64,
    pub file_descriptors: u64,
}

pub fn read(cg: &Cgroup) -> Result<ProcessMetrics> {
    let mut m = ProcessMetrics::default();
    for pid in cg.pids()? {
        let Ok(p) = procfs::process::Process::new(pid) else {
            continue;
        };
        let threads = match p.stat() {
            Ok(st) => st.num_threads.max(0) as u64,
            // Gone meanwhile (or a zombie whose stat went): not counted.
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => {
                return Err(Error::io(
                    "read",
                    format!("/proc/{pid}/stat"),
                    std::io::Error::other(e.to_string()),
                ))
            }
        };
        m.processes += 1;
        m.threads += threads;
        // A zombie has no fd table; a process of another user may refuse it.
        m.file_descriptors += p.fd_count().unwrap_or(0) as u64;
    }
    Ok(m)
}
