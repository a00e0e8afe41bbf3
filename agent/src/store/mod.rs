//! SQLite state store: schema, migrations, the state-directory lock, queries and the event log.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
