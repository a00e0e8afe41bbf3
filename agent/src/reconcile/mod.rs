//! The reconcile loop: triggers, apply, restart policy and backoff, recovery at start-up.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
