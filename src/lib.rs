//! rpaas
