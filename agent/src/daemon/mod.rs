//! The daemon's composition root: `agent run` ([`run`]) wires the store, the manifest intake,
//! the drivers, the API and the reconcile loop together; the agent's configuration file
//! ([`config`]), logging ([`logging`]), systemd's notification protocol ([`sdnotify`]) and socket activation ([`activation`]) and its
//! use of the C allocator ([`alloc`]) live here too. The loop itself is [`crate::reconcile`], which knows nothing of the API.
//!
//! [`config`] is a leaf: it imports nothing of the daemon, so that the loop and the drivers'
//! translation can read their settings from it.

pub mod activation;
pub mod alloc;
pub mod config;
pub mod logging;
pub mod run;
pub mod sdnotify;

pub use config::{Config, ConfigError};

/// Errors of `agent run`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    #[error("agent runtime: {0}")]
    Runtime(String),
    /// Start-up refused (the message says why and the way out).
    #[error("{0}")]
    Refused(String),
}
