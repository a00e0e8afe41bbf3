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
    /// Its `metadata.labels` as recorded (what `agent ps --filter label=K[=V]` matches).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Why its create, start or restart waits for its `dependsOn` conditions (`db not healthy
    /// yet`); its state is then `waiting` unless it runs. From the running agent only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// The labels in a container record's config: `live.labels`, or `fixed.labels` in a record
/// written before labels were a live field.
pub fn labels_of(config: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    let at = |part: &str| config.get(part).and_then(|p| p.get("labels")).cloned();
    at("live")
        .or_else(|| at("fixed"))
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default()
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
    /// Containers that wait for their start conditions (`dependsOn`), with why.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub waiting: std::collections::BTreeMap<String, String>,
}

/// `agent inspect NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspect {
    /// The store's record (times in Unix milliseconds; see `created`, `started`, `finished`).
    pub container: ContainerRecord,
    /// `created_at`, `started_at`, `finished_at` of the record in RFC 3339 (UTC).
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub started: Option<String>,
    #[serde(default)]
    pub finished: Option<String>,
    /// The `agent monitor` process of its current or last run, and whether it is alive (read
    /// from the exec driver's state file, not the store).
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub monitor_alive: bool,
    /// Its `metadata.labels` as recorded (also the OCI annotations it was created with).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub ports: Vec<store::PortBinding>,
    pub addresses: Vec<store::IpAllocation>,
    /// Its links (`parent` is this container, `child` the linked one, `alias` its name here),
    /// from its effective config.
    pub links: Vec<store::LinkRecord>,
    /// The containers that link to it.
    #[serde(default)]
    pub linked_by: Vec<store::LinkRecord>,
    /// The newest events about this container, oldest first, each with `at` in RFC 3339.
    pub events: Vec<InspectEvent>,
}

/// An event with its time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectEvent {
    #[serde(flatten)]
    pub event: Event,
    pub at: String,
}

/// Unix milliseconds in RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    crate::driver::exec::time::format_seconds(t)
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
            labels: labels_of(&c.config),
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
            waiting: None,
        })
        .collect())
}

/// What only the running agent knows, added to `agent ps`'s rows: a container in its stop's
/// grace period is `stopping`; one whose last change failed is `failed` (`pending` when it was
/// not tried because a change it depends on failed), listed even when it does not exist (its
/// create failed), with the error and the next try. A running container keeps its state and
/// shows the error. One whose monitor is gone is `monitor-lost` (`stopping` while its repair
/// stops it), with what happens as its error, until the repair has started it again.
pub fn ps_live(
    mut rows: Vec<PsRow>,
    failures: &[Failure],
    stopping: &std::collections::BTreeMap<String, Stopping>,
    monitor_lost: &std::collections::BTreeSet<String>,
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
                labels: Default::default(),
                waiting: None,
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
    for name in monitor_lost {
        if let Some(r) = rows.iter_mut().find(|r| &r.name == name) {
            if r.state != "stopping" {
                r.state = "monitor-lost".into();
            }
            r.error = Some(
                "its monitor process is gone (killed from outside): its output was not logged \
                 and its exit would be lost; it is being stopped and started again under a new \
                 monitor"
                    .into(),
            );
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The containers that wait for their start conditions, added to `agent ps`'s rows: state
/// `waiting` (unless it runs: a recreate or restart that waits leaves the old one running),
/// with why; listed even when it does not exist yet.
pub fn ps_waiting(
    mut rows: Vec<PsRow>,
    waiting: &std::collections::BTreeMap<String, String>,
) -> Vec<PsRow> {
    for (name, why) in waiting {
        match rows.iter_mut().find(|r| &r.name == name) {
            Some(r) => {
                if r.state != "running" && r.state != "stopping" {
                    r.state = "waiting".into();
                }
                r.waiting = Some(why.clone());
            }
            None => rows.push(PsRow {
                name: name.clone(),
                id: String::new(),
                state: "waiting".into(),
                health: None,
                image_digest: String::new(),
                ports: Vec::new(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                restarts: 0,
                error: None,
                retry_at: None,
                stopping_since: None,
                grace_ms: None,
                labels: Default::default(),
                waiting: Some(why.clone()),
            }),
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
    let links_of = |c: &ContainerRecord| -> Vec<store::LinkRecord> {
        let links = c
            .config
            .get("fixed")
            .and_then(|f| f.get("links"))
            .cloned()
            .and_then(|l| {
                serde_json::from_value::<Vec<crate::plan::effective::EffectiveLink>>(l).ok()
            })
            .unwrap_or_default();
        links
            .into_iter()
            .map(|l| store::LinkRecord {
                parent: c.name.clone(),
                child: l.container,
                alias: l.alias,
            })
            .collect()
    };
    let mut links = tx.links_from(name)?;
    if links.is_empty() {
        links = links_of(&container);
    }
    let linked_by = tx
        .containers()?
        .iter()
        .flat_map(links_of)
        .filter(|l| l.child == name)
        .collect();
    Ok(Some(Inspect {
        labels: labels_of(&container.config),
        ports: tx.container_ports(name)?,
        addresses: tx.container_ips(name)?,
        links,
        linked_by,
        events: tx
            .recent_events(Some(&format!("container/{name}")), 20)?
            .into_iter()
            .map(|e| InspectEvent {
                at: rfc3339(e.time),
                event: e,
            })
            .collect(),
        created: Some(rfc3339(container.created_at)),
        started: container.started_at.map(rfc3339),
        finished: container.finished_at.map(rfc3339),
        monitor_pid: None,
        monitor_alive: false,
        container,
    }))
}

/// Adds what the exec driver's state file under `state_dir` says of the monitor.
pub fn inspect_monitor(i: &mut Inspect, state_dir: &std::path::Path) {
    use crate::driver::exec::{paths, state};
    let dir = paths::container_dir(state_dir, &i.container.id);
    if let Ok(Some(st)) = state::ContainerState::load(&dir) {
        i.monitor_pid = st.monitor_pid;
        i.monitor_alive = st
            .monitor_pid
            .is_some_and(|pid| state::is_same_process(pid, st.monitor_start));
    }
}
