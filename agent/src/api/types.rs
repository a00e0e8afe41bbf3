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
    /// Why its last change failed (`failed`), or was not tried because a change it depends on
    /// failed (`pending`); from the running agent only.
    #[serde(default)]
    pub error: Option<String>,
    /// Unix milliseconds of the next try after a failure.
    #[serde(default)]
    pub retry_at: Option<i64>,
    /// Unix milliseconds when its stop began (`stopping`) and the grace period before SIGKILL.
    #[serde(default)]
    pub stopping_since: Option<i64>,
    #[serde(default)]
    pub grace_ms: Option<u64>,
}

/// One line of `agent status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    /// `ok`, `error` (it does not load) or `failing` (it loads, but changes of its objects
    /// fail: see `failing`).
    pub status: String,
    /// The load error with file:line:col; the file's last good objects stay in force.
    pub error: Option<String>,
    /// The failures of the objects it declares (`create web failed: ...`), each with its next
    /// try; from the running agent only.
    #[serde(default)]
    pub failing: Vec<Failure>,
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
    /// Failures of objects no manifest file declares (a pull of an image named by reference).
    #[serde(default)]
    pub failures: Vec<Failure>,
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

pub use crate::reconcile::report::{ActionReport, Failure, InFlight, PassReport, Stopping};

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
            error: None,
            retry_at: None,
            stopping_since: None,
            grace_ms: None,
        })
        .collect())
}

/// What only the running agent knows, added to `agent ps`'s rows: a container in its stop's
/// grace period is `stopping`; one whose last change failed is `failed` (`pending` when it was
/// not tried because a change it depends on failed), listed even when it does not exist (its
/// create failed), with the error and the next try. A running container keeps its state and
/// shows the error.
pub fn ps_live(
    mut rows: Vec<PsRow>,
    failures: &[Failure],
    stopping: &std::collections::BTreeMap<String, Stopping>,
) -> Vec<PsRow> {
    for f in failures {
        let Some(name) = f.object.strip_prefix("container/") else {
            continue;
        };
        let state = if f.skipped { "pending" } else { "failed" };
        match rows.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                if r.state != "running" {
                    r.state = state.into();
                }
                r.error = Some(f.error.clone());
                r.retry_at = f.retry_at;
            }
            None => rows.push(PsRow {
                name: name.to_string(),
                id: String::new(),
                state: state.into(),
                health: None,
                image_digest: String::new(),
                ports: Vec::new(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                restarts: 0,
                error: Some(f.error.clone()),
                retry_at: f.retry_at,
                stopping_since: None,
                grace_ms: None,
            }),
        }
    }
    for (name, s) in stopping {
        if let Some(r) = rows.iter_mut().find(|r| &r.name == name) {
            r.state = "stopping".into();
            r.stopping_since = Some(s.since);
            r.grace_ms = Some(s.grace_ms);
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// What only the running agent knows, added to `agent status`'s files: a file that loads but
/// whose objects' changes fail is `failing`, with those failures.
pub fn files_live(mut files: Vec<FileStatus>, failures: &[Failure]) -> Vec<FileStatus> {
    for f in &mut files {
        f.failing = failures
            .iter()
            .filter(|x| x.file.as_deref() == Some(f.path.as_str()))
            .cloned()
            .collect();
        if f.error.is_none() && !f.failing.is_empty() {
            f.status = "failing".into();
        }
    }
    files
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
            failing: Vec::new(),
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
