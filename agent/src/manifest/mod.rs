//! Manifest model (serde + schemars), loading of a directory, validation with file:line:col errors.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
