//! The reconcile loop: triggers, apply, restart policy and backoff, recovery at start-up.
//!
//! Pieces, each pure or tested on its own:
//! - [`config`]: the agent's `config.toml`, validated with file:line errors.
//! - [`restart`]: Docker's restart policies and the exponential restart backoff.
//! - [`health`]: the health-check state machine (starting, healthy, unhealthy).
//! - [`trigger`]: triggers coalesced so that one pass runs at a time.
//! - [`watch`]: the manifest directory watcher (settled changes, content hashes).
//! - [`perms`]: sshd-style ownership and mode checks of manifest files.

pub mod config;
pub mod health;
pub mod perms;
pub mod restart;
pub mod trigger;
pub mod watch;

pub use config::{Config, ConfigError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
}
