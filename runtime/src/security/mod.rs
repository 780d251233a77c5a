//! Process security settings applied by the container's init (and by `exec`)
//! just before execve, plus the checks that validate them early in `create`.
//!
//! Split so that everything that can fail on bad input is done in the parent
//! before clone (`parse_*`, `compile_seccomp`, `validate_sysctl`), and the
//! child only performs a few cheap system calls (`apply_*`, `load_seccomp`).
//!
//! In the runtime: a [`Dmz`] made before clone/fork, whose sealed program is
//! the last thing a container process execs before its own (CVE-2019-5736),
//! and `check_raw_config` on the raw config.json before the typed parse
//! (field-precise errors for unknown names).
//!
//! Order in the init process (and `exec`'s child), as runc and crun do it:
//! 1. `set_dumpable(false)` before joining namespaces,
//! 2. `apply_sysctl` (before /proc/sys goes read-only),
//! 3. all that needs a system call a seccomp profile may deny (close_range,
//!    getcwd, ...): the cwd entered and proven inside the root, the program
//!    looked up, `cloexec_fds_from(3 + preserved, keep)`,
//! 4. `apply_rlimits`; without noNewPrivileges `load_seccomp` now, while
//!    CAP_SYS_ADMIN is still held,
//! 5. `keep_caps_across_setuid`, setgroups/setgid/setuid, `clear_keep_caps`,
//!    `apply_capabilities`,
//! 6. with noNewPrivileges: `set_no_new_privileges`, `load_seccomp` last;
//!    execve through the dmz (`cloexec_fds_from` falls back to a
//!    /proc/self/fd walk when a filter denies close_range).

pub mod caps;
pub mod dmz;
pub mod fds;
pub mod raw;
pub mod rlimits;
pub mod seccomp;
pub mod sysctl;

pub use self::caps::{
    apply_capabilities, clear_keep_caps, keep_caps_across_setuid, parse_capabilities, CapSets,
};
pub use dmz::Dmz;
pub use fds::{
    cloexec_fds_from, close_fds_from, set_dumpable, set_no_new_privileges, set_oom_score_adj,
};
pub use raw::{check_raw_config, check_raw_process, check_raw_seccomp};
pub use rlimits::{apply_rlimits, parse_rlimits, Rlimit};
pub use seccomp::{compile_seccomp, load_seccomp, load_seccomp_notify, SeccompFilter};
pub use sysctl::{apply_sysctl, validate_sysctl, NsFlags};
