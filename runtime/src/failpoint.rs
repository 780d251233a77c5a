//! Crash points for the crash-safety tests (cargo feature `failpoints`).
//!
//! `FAILPOINTS="create::cgroup-created=return"` makes the process SIGKILL
//! itself at that step: exactly a `kill -9` at that point, with no destructor
//! or undo running, which is what `delete --force` and `gc` must cope with.

/// Die by SIGKILL here if the fail point `name` is configured.
#[inline]
pub fn crash(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        let hit = (|| {
            fail::fail_point!(name, |_| true);
            false
        })();
        if hit {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Read FAILPOINTS from the environment (no-op without the feature).
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    {
        // The scenario lives for the whole process.
        std::mem::forget(fail::FailScenario::setup());
    }
}
