//! security settings (in progress)
