//! `rpaas-images`: image content in, rootfs out.

mod error;
pub mod snapshot;

pub use error::{Error, Result};
