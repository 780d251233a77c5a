//! Filesystem primitives shared by the rpaas crates (a leaf: it depends on
//! none of them, only on libc).
//!
//! - [`write_atomic`]: replace a file whole for readers (temp file + rename),
//!   optionally durable across a power loss (fsync of the file and its dir);
//! - [`FileLock`]: an exclusive `flock(2)` on a lock file, blocking or not,
//!   released on drop;
//! - [`open_in_root`]: `openat2(2)` with `RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS`, so no symlink or `..` can leave the root.
//!
//! Errors are plain `std::io::Error`s; each crate maps them into its own
//! error enum together with the path it was working on.

mod atomic;
mod lock;
mod root;

pub use atomic::write_atomic;
pub use lock::FileLock;
pub use root::open_in_root;
