//! Local HTTP+JSON API on a root-only Unix socket, used by the CLI.

/// Default path of the API socket.
pub const DEFAULT_SOCKET: &str = "/run/agent/agent.sock";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
