//! The crate's error: one variant per module, each module owning its own `thiserror` enum.

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::Error),
    #[error(transparent)]
    Graph(#[from] crate::driver::graph::Error),
    #[error(transparent)]
    Exec(#[from] crate::driver::exec::Error),
    #[error(transparent)]
    Network(#[from] crate::driver::network::Error),
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    /// The command was called wrongly (a bad flag value, a missing terminal): exit code 64.
    #[error("{0}")]
    Usage(String),
    /// The command could not do what it was asked (no such container, the agent is not
    /// running, ...): exit code 1.
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
