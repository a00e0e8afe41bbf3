//! Local HTTP+JSON API on a root-only Unix socket, used by the CLI.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
