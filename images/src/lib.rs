//! `rpaas-images`: image content in, rootfs out.

pub mod apply;
pub mod decompress;
mod error;
pub mod fsroot;
pub mod mount;
pub mod snapshot;
pub mod store;

pub use error::{Error, Result};
