//! Exec driver: OCI spec building, the per-container monitor (libcontainer), logs, exec, stop/kill.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
