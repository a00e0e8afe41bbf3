//! Exec driver: OCI spec building, the per-container monitor (libcontainer), logs, exec, stop/kill.
//!
//! - [`spec`] holds `ContainerSpec` (the driver's input, independent of the manifest types)
//!   and the OCI runtime spec builder: Docker's entrypoint/command merge, env, user resolution,
//!   mounts, rlimits, cgroup limits, capabilities, masked paths and Docker's seccomp profile.
//! - [`bundle`] writes the container's state directory as an OCI bundle (`config.json`, `/etc` files).
pub mod bundle;
pub mod spec;

use std::path::PathBuf;

pub use spec::ContainerSpec;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value of the container spec that cannot be used; names the field and what is allowed.
    #[error("container {container}: {field}: {reason}")]
    InvalidSpec {
        container: String,
        field: String,
        reason: String,
    },
    /// An rlimit above what this host lets the agent grant.
    #[error(
        "container {container}: ulimit {ulimit}: hard limit {requested} is above this host's hard \
         limit {host_hard} and the agent lacks CAP_SYS_RESOURCE to raise it; use at most {host_hard}"
    )]
    UlimitAboveHost {
        container: String,
        ulimit: String,
        requested: u64,
        host_hard: u64,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("building the OCI runtime spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
