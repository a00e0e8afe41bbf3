//! The reconcile loop: triggers, apply, restart policy and backoff, recovery at start-up.
//!
//! Pieces, each pure or tested on its own:
//! - [`config`]: the agent's `config.toml`, validated with file:line errors.
//! - [`restart`]: Docker's restart policies and the exponential restart backoff.
//! - [`health`]: the health-check state machine (starting, healthy, unhealthy).
//! - [`trigger`]: triggers coalesced so that one pass runs at a time.
//! - [`pass`]: one reconcile pass (load, record file status, plan, apply).
//! - [`daemon`]: `agent run` itself: store, watcher, API, timers, signals, the pass loop.
//! - [`supervise`], [`prober`]: exits and restart policies; health checks.
//! - [`network`]: the network driver over the store; bridge-mode containers, start-up cleanup and
//!   drift repair.
//! - [`recover`]: finishing or undoing half-applied changes (intents), orphans at start-up.
//! - [`request`]: `agent stop` / `agent start` (stopped-by-user, as Docker's restart policies
//!   define "stopped").
//! - [`logging`], [`sdnotify`]: log output and systemd's notification protocol.

pub mod apply;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod exits;
pub mod health;
pub mod logging;
pub mod network;
pub mod pass;
pub mod prober;
pub mod queue;
pub mod recover;
pub mod request;
pub mod restart;
pub mod sdnotify;
pub mod supervise;
pub mod trigger;
pub mod work;

pub use config::{Config, ConfigError};

/// Errors of this module.
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
