//! cgroups v1/v2 (in progress)
