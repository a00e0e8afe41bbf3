//! Local HTTP+JSON API on a root-only Unix socket, used by the CLI.
//!
//! - [`server`]: the axum routes the running agent serves (`agent run`).
//! - [`client`]: the blocking client the CLI uses (`agent ps`, `status`, `inspect`, `events`,
//!   `apply`). When nothing listens on the socket, the CLI reads the store directly instead
//!   (read-only commands only), through the same [`types`] functions, so the output is the same.

pub mod client;
pub mod disk;
pub mod server;
pub mod types;

use std::path::PathBuf;

pub use client::{Client, ClientError};

/// Default path of the API socket.
pub const DEFAULT_SOCKET: &str = "/run/agent/agent.sock";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another agent is already listening on {0}; stop it, or give this one another socket \
         (`socket` in the config)"
    )]
    SocketInUse(PathBuf),
    #[error("API server: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
