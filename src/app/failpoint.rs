//! Fail points of the app steps (cargo feature `failpoints`), for the crash and
//! undo tests. `FAILPOINTS="app::before-network=return"` makes the step fail
//! with an error (the undo path); `app::crash-before-network=return` SIGKILLs
//! the process there (what `recover` must cope with).

#[cfg(feature = "failpoints")]
use crate::error::Error;
use crate::error::Result;

/// Fail or die here if the fail point `app::<name>` or `app::crash-<name>` is set.
#[inline]
pub fn point(name: &str) -> Result<()> {
    #[cfg(feature = "failpoints")]
    {
        rpaas_runtime::failpoint::crash(&format!("app::crash-{name}"));
        let fail = format!("app::{name}");
        let hit = (|| {
            fail::fail_point!(&fail, |_| true);
            false
        })();
        if hit {
            return Err(Error::Resource {
                field: format!("failpoint {fail}"),
                reason: "injected failure".into(),
            });
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    Ok(())
}
