//! `rpaas-images`: image content in, rootfs out.
//!
//! [`store`] holds verified blobs and refs; [`registry`] pulls into it; [`import`]
//! reads OCI layouts and archives; [`apply`] unpacks layers safely into
//! [`snapshot`]s; [`convert`] turns the image config into a runtime spec;
//! [`inject`] drops files into a container's writable layer; [`bundle`] ties it
//! together into a runnable OCI bundle.

pub mod apply;
pub mod bundle;
pub mod convert;
pub mod decompress;
mod error;
pub mod fsroot;
pub mod image;
pub mod import;
pub mod inject;
pub mod manifest;
pub mod mount;
pub mod registry;
pub mod snapshot;
pub mod store;

pub use error::{Error, Result};
pub use image::ImageStore;
