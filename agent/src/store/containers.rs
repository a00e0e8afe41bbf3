//! Table `containers`: one row per container name, its effective config and runtime state.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{int, json, parse, to_json};
use super::{Error, Result, Tx};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerState {
    /// Created (root filesystem, network) but never started, or being started.
    Created,
    Running,
    /// Exited and waiting for its restart-policy delay.
    Restarting,
    /// Exited on its own (or was killed by something else than a user request).
    Exited,
    /// Stopped on request (`agent stop`); the restart policy leaves it alone.
    StoppedByUser,
    /// Being removed: teardown started and must be finished.
    Removing,
    /// Could not be stopped or cleaned up; needs attention.
    Dead,
}

impl ContainerState {
    pub const ALL: [ContainerState; 7] = [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Restarting,
        ContainerState::Exited,
        ContainerState::StoppedByUser,
        ContainerState::Removing,
        ContainerState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Restarting => "restarting",
            ContainerState::Exited => "exited",
            ContainerState::StoppedByUser => "stopped-by-user",
            ContainerState::Removing => "removing",
            ContainerState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContainerState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ContainerState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = ContainerState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown container state; expected one of {}",
                    all.join(", ")
                )
            })
    }
}

/// Result of the last health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HealthStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "starting" => Ok(HealthStatus::Starting),
            "healthy" => Ok(HealthStatus::Healthy),
            "unhealthy" => Ok(HealthStatus::Unhealthy),
            _ => Err("expected starting, healthy or unhealthy".into()),
        }
    }
}

/// The processes and namespaces of a running (or last run) container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeIds {
    /// The `agent monitor` process.
    pub monitor_pid: Option<i32>,
    /// The container's init process (in the host pid namespace).
    pub container_pid: Option<i32>,
    /// The bind-mounted network namespace.
    pub netns_path: Option<String>,
}

/// A container as the store records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    /// The manifest name; the key.
    pub name: String,
    /// The runtime id (unique; changes when the container is recreated).
    pub id: String,
    /// The canonical effective config (the planner's type, kept opaque here).
    pub config: Value,
    /// Hash of `config`, computed by the caller; what decides "changed".
    pub config_hash: String,
    /// The image digest the container was created from.
    pub image_digest: String,
    pub runtime: RuntimeIds,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    /// The signal that ended the last run, if a signal did.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub restart_count: u32,
    /// Unix milliseconds of the last start and the last exit.
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub health: Option<HealthStatus>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl ContainerRecord {
    /// A freshly created container: state `created`, no runtime ids, no history.
    pub fn new(
        name: impl Into<String>,
        id: impl Into<String>,
        config: Value,
        config_hash: impl Into<String>,
        image_digest: impl Into<String>,
        created_at: i64,
    ) -> Self {
        ContainerRecord {
            name: name.into(),
            id: id.into(),
            config,
            config_hash: config_hash.into(),
            image_digest: image_digest.into(),
            runtime: RuntimeIds::default(),
            state: ContainerState::Created,
            exit_code: None,
            signal: None,
            oom_killed: false,
            restart_count: 0,
            started_at: None,
            finished_at: None,
            health: None,
            created_at,
        }
    }
}

const COLUMNS: &str = "name, id, config, config_hash, image_digest, monitor_pid, container_pid, \
    netns_path, state, exit_code, signal, oom_killed, restart_count, started_at, finished_at, \
    health_status, created_at";

fn container_row(r: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
    const T: &str = "containers";
    let name: String = r.get(0)?;
    let health: Option<String> = r.get(15)?;
    Ok(ContainerRecord {
        id: r.get(1)?,
        config: json(T, &name, "config", &r.get::<_, String>(2)?)?,
        config_hash: r.get(3)?,
        image_digest: r.get(4)?,
        runtime: RuntimeIds {
            monitor_pid: r.get(5)?,
            container_pid: r.get(6)?,
            netns_path: r.get(7)?,
        },
        state: parse(T, &name, "state", &r.get::<_, String>(8)?)?,
        exit_code: r.get(9)?,
        signal: r.get(10)?,
        oom_killed: r.get(11)?,
        restart_count: int(T, &name, "restart_count", r.get(12)?)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        health: match health {
            Some(h) => Some(parse(T, &name, "health_status", &h)?),
            None => None,
        },
        created_at: r.get(16)?,
        name,
    })
}

impl Tx<'_> {
    /// Records `c`, updating the row of the same name in place (its IP addresses, ports and
    /// links stay: a recreate keeps the container's address).
    pub fn upsert_container(&self, c: &ContainerRecord) -> Result<()> {
        if let Some(other) = self.container_by_id(&c.id)?
            && other.name != c.name
        {
            return Err(Error::Invalid {
                what: format!("container {}", c.name),
                reason: format!("id {} is already used by container {}", c.id, other.name),
            });
        }
        self.conn().execute(
            "INSERT INTO containers (name, id, config, config_hash, image_digest, monitor_pid,
                container_pid, netns_path, state, exit_code, signal, oom_killed, restart_count,
                started_at, finished_at, health_status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT(name) DO UPDATE SET id = excluded.id, config = excluded.config,
                config_hash = excluded.config_hash, image_digest = excluded.image_digest,
                monitor_pid = excluded.monitor_pid, container_pid = excluded.container_pid,
                netns_path = excluded.netns_path, state = excluded.state,
                exit_code = excluded.exit_code, signal = excluded.signal,
                oom_killed = excluded.oom_killed, restart_count = excluded.restart_count,
                started_at = excluded.started_at, finished_at = excluded.finished_at,
                health_status = excluded.health_status, created_at = excluded.created_at",
            params![
                c.name,
                c.id,
                to_json(&format!("container {} config", c.name), &c.config)?,
                c.config_hash,
                c.image_digest,
                c.runtime.monitor_pid,
                c.runtime.container_pid,
                c.runtime.netns_path,
                c.state.as_str(),
                c.exit_code,
                c.signal,
                c.oom_killed,
                i64::from(c.restart_count),
                c.started_at,
                c.finished_at,
                c.health.map(HealthStatus::as_str),
                c.created_at
            ],
        )?;
        Ok(())
    }

    pub fn container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM containers WHERE name = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [name], container_row)
            .optional()?)
    }

    pub fn container_by_id(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM containers WHERE id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [id], container_row)
            .optional()?)
    }

    /// Every container, by name.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM containers ORDER BY name");
        self.collect(&sql, [], container_row)
    }

    /// Containers created from image `digest`, by name.
    pub fn containers_using_image(&self, digest: &str) -> Result<Vec<ContainerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM containers WHERE image_digest = ?1 ORDER BY name");
        self.collect(&sql, [digest], container_row)
    }

    /// Reads container `name`, lets `f` change it, writes it back and returns it. The name is
    /// the key: `f` must not change it.
    pub fn update_container(
        &self,
        name: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let mut c = self.container(name)?.ok_or_else(|| Error::NotFound {
            kind: "container",
            name: name.to_string(),
        })?;
        f(&mut c);
        if c.name != name {
            return Err(Error::Invalid {
                what: format!("container {name}"),
                reason: format!("an update cannot rename it (to {})", c.name),
            });
        }
        self.upsert_container(&c)?;
        Ok(c)
    }

    /// Removes container `name` with its IP addresses, port bindings and outgoing links. Refused
    /// with [`Error::ContainerLinked`] while other containers link to it. True if it existed.
    pub fn delete_container(&self, name: &str) -> Result<bool> {
        let users: Vec<String> = self.collect(
            "SELECT parent, alias FROM links WHERE child = ?1 ORDER BY parent, alias",
            [name],
            |r| {
                Ok(format!(
                    "{} (as {})",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            },
        )?;
        if !users.is_empty() {
            return Err(Error::ContainerLinked {
                name: name.to_string(),
                users,
            });
        }
        let n = self
            .conn()
            .execute("DELETE FROM containers WHERE name = ?1", [name])?;
        Ok(n > 0)
    }

    /// Fails with [`Error::NotFound`] unless container `name` is recorded.
    pub(super) fn require_container(&self, name: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM containers WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::NotFound {
                kind: "container",
                name: name.to_string(),
            }),
        }
    }
}
