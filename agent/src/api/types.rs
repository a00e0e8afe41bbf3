//! What the API returns, and how it is read from the store.
//!
//! The same functions serve the running agent (through the socket) and the CLI's fallback when
//! the agent is not running (reading the store directly), so both print the same thing.

use serde::{Deserialize, Serialize};

use crate::store::{self, ContainerRecord, Event, ManifestFileRecord, Tx};

/// One line of `agent ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsRow {
    pub name: String,
    pub id: String,
    /// `running`, `exited`, `restarting`, `stopped-by-user`, ...
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`; `None` without a health check.
    pub health: Option<String>,
    pub image_digest: String,
    /// `127.0.0.1:8080->80/tcp`.
    pub ports: Vec<String>,
    /// Unix milliseconds of the last start.
    pub started_at: Option<i64>,
    /// Unix milliseconds of the last exit.
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub restarts: u32,
}

/// One line of `agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    /// `ok` or `error`.
    pub status: String,
    /// The load error with file:line:col; the file's last good objects stay in force.
    pub error: Option<String>,
    /// Unix milliseconds of the latest load attempt and of the last apply.
    pub loaded_at: Option<i64>,
    pub applied_at: Option<i64>,
}

/// The answer of `agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether the answer came from the running agent (false: read from the store).
    pub agent_running: bool,
    pub files: Vec<FileStatus>,
    /// The manifest directory itself could not be read (nothing is removed meanwhile).
    pub dir_error: Option<String>,
    /// Changes queued or being applied (pulls, imports, stops in their grace period, ...).
    #[serde(default)]
    pub in_flight: Vec<InFlight>,
    /// Host problems the agent found (another firewall dropping its bridges' traffic, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `agent inspect NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspect {
    pub container: ContainerRecord,
    pub ports: Vec<store::PortBinding>,
    pub addresses: Vec<store::IpAllocation>,
    pub links: Vec<store::LinkRecord>,
    /// The newest events about this container, oldest first.
    pub events: Vec<Event>,
}

pub use crate::reconcile::report::{ActionReport, InFlight, PassReport};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `host_ip:host_port->container_port/proto`, as `docker ps` prints it.
pub fn port_text(p: &store::PortBinding) -> String {
    let ip = match p.host_ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    format!(
        "{ip}:{}->{}/{}",
        p.host_port,
        p.container_port,
        p.proto.as_str()
    )
}

/// Every container, by name.
pub fn ps(tx: &Tx<'_>) -> store::Result<Vec<PsRow>> {
    let ports = tx.port_bindings()?;
    Ok(tx
        .containers()?
        .into_iter()
        .map(|c| PsRow {
            ports: ports
                .iter()
                .filter(|p| p.container == c.name)
                .map(port_text)
                .collect(),
            name: c.name,
            id: c.id,
            state: c.state.to_string(),
            health: c.health.map(|h| h.to_string()),
            image_digest: c.image_digest,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            restarts: c.restart_count,
        })
        .collect())
}

/// Per manifest file status.
pub fn files(tx: &Tx<'_>) -> store::Result<Vec<FileStatus>> {
    Ok(tx
        .manifest_files()?
        .into_iter()
        .map(|m: ManifestFileRecord| FileStatus {
            status: if m.last_error.is_some() {
                "error"
            } else {
                "ok"
            }
            .into(),
            path: m.path,
            error: m.last_error,
            loaded_at: m.loaded_at,
            applied_at: m.applied_at,
        })
        .collect())
}

/// One container in full; `None` when there is no such container.
pub fn inspect(tx: &Tx<'_>, name: &str) -> store::Result<Option<Inspect>> {
    let Some(container) = tx.container(name)? else {
        return Ok(None);
    };
    Ok(Some(Inspect {
        ports: tx.container_ports(name)?,
        addresses: tx.container_ips(name)?,
        links: tx.links_from(name)?,
        events: tx.recent_events(Some(&format!("container/{name}")), 20)?,
        container,
    }))
}
