//! Exec driver: OCI spec building, the per-container monitor (libcontainer), logs, exec, stop/kill.
//!
//! - [`spec`] holds `ContainerSpec` (the driver's input, independent of the manifest types)
//!   and the OCI runtime spec builder: Docker's entrypoint/command merge, env, user resolution,
//!   mounts, rlimits, cgroup limits, capabilities, masked paths and Docker's seccomp profile.
//! - [`bundle`] writes the container's state directory as an OCI bundle (`config.json`, `/etc`
//!   files); [`paths`] says where everything lives.
//! - [`driver`] is the [`ExecDriver`] trait the reconciler calls and its implementation, which
//!   starts one [`monitor`] process per container.
//! - [`monitor`] (`agent monitor <id>`) creates the container with youki's libcontainer, stays its
//!   parent, writes [`logs`] and records the end in [`state`].
//! - [`orphan`] stops a container whose monitor is gone and reads its real exit status as its
//!   tracer (the driver's stop does this itself for such a container).
//! - [`tenant`] runs a command inside a running container (`agent exec`).
//! - [`cgroups`] reads OOM kills and resource use and changes a running container's limits (v1
//!   and v2); [`time`] formats timestamps; [`delegate`] puts the containers' cgroups below the
//!   systemd unit's delegated cgroup on cgroup v2 (else `/agent`).
//! - [`init`] is the embedded `agent-init`, process 1 of containers with `init: true`.
//!
//! cgroup v1 and v2: libcontainer (pinned, systemd off) creates the cgroups on either; this
//! module's own reads handle both layouts. See `docs/exec.md` for what is tested where.
pub mod bundle;
pub mod cdi;
pub mod cgroups;
pub mod delegate;
pub mod devices;
pub mod driver;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod orphan;
pub mod paths;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod tenant;
pub mod time;

use std::path::PathBuf;

pub use driver::{
    AnyExecDriver, ContainerInfo, ContainerStatus, ExecConfig, ExecDriver, ExecOutput, ExecRequest,
    ExecStdio, LiveUpdate, MonitorDriver, select,
};
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
        "container {container}: ulimit {ulimit}: hard limit {requested} is above {ceiling}; use \
         at most {}", ceiling.limit()
    )]
    UlimitAboveHost {
        container: String,
        ulimit: String,
        /// As the manifest writes it (`unlimited`).
        requested: String,
        ceiling: spec::build::RlimitCeiling,
    },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error(
        "invalid container id {0:?}: use 1-64 characters from [A-Za-z0-9_.-], not starting with '.'"
    )]
    BadId(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `agent exec` into a container whose process does not run, with why in words.
    #[error("container {container} is not running: {detail}")]
    ExecNotRunning { container: String, detail: String },
    #[error("container {0} is running; stop it first")]
    StillRunning(String),
    #[error("the name {name} is already used by container {id}")]
    NameInUse { name: String, id: String },
    #[error("container {container}: starting failed: {reason}")]
    StartFailed { container: String, reason: String },
    #[error("container {container}: {reason}")]
    Runtime { container: String, reason: String },
    #[error("unknown signal {0:?}: use a name such as SIGTERM, TERM or a number 1-64")]
    BadSignal(String),
    #[error("the exec driver cannot run here: {0}")]
    Unsupported(String),
    #[error(
        "{path} has state version {found}; this agent understands version {supported} (upgrade \
         the agent)"
    )]
    StateVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
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
