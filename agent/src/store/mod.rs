//! SQLite state store: what the host has (images, layers, volumes, networks, containers, IP
//! addresses, published ports, links), per-manifest-file status, write-ahead intents and the event
//! log. The schema is documented table by table in `docs/store.md`.
//!
//! # Decisions
//!
//! - One file, `<state>/state.db`, opened in WAL mode with `synchronous=FULL` (a committed
//!   transaction survives power loss, not only a crash of the process), `foreign_keys=ON` and a
//!   busy timeout. Tables are `STRICT`, so a wrong column type is an error, not a silent coercion.
//! - The schema version is `PRAGMA user_version`. [`schema::MIGRATIONS`] are applied in order,
//!   each in its own transaction together with the version bump, so a crash mid-migration leaves
//!   the previous version intact. A database newer than this binary is refused
//!   ([`Error::SchemaTooNew`]) rather than half-understood.
//! - The state directory is created `0700`; an existing one that group or others can access, or
//!   that another user owns, is refused. Only one process may use a state directory: `Store`
//!   holds an exclusive `flock` on `<state>/lock` (which records the holder's pid) for its
//!   lifetime; a second opener gets [`Error::Locked`] naming the directory and that pid.
//! - Every access goes through [`Store::transaction`], an `IMMEDIATE` SQLite transaction that
//!   commits when the closure returns `Ok` and rolls back otherwise. The typed queries are methods
//!   of [`Tx`], one file per table group. No query reads the clock: callers pass timestamps (unix
//!   milliseconds, `i64`), so the store is deterministic under test.
//! - Rows are updated in place (`INSERT .. ON CONFLICT DO UPDATE`), never `INSERT OR REPLACE`:
//!   a replace is a delete, and the delete would cascade to the container's IP addresses, ports
//!   and links. Removing a container releases them (`ON DELETE CASCADE`); removing a container,
//!   layer or network that something still depends on is refused with an error naming the users.
//! - Config payloads are `serde_json::Value`: the planner owns the effective-config type; the
//!   store keeps it opaque, next to the hash the caller computed.
//! - The event log keeps the newest `event_cap` rows (default 10,000). Trimming runs in the
//!   inserting transaction every `max(1, event_cap / 100)` inserts, so the table holds at most
//!   `event_cap + event_cap / 100` rows and an insert costs one indexed range delete now and then.
//! - Memory: the connection's page cache is capped at [`CACHE_KIB`] (`PRAGMA cache_size`, SQLite's
//!   default is 2,000 KiB) and [`Store::release_memory`] empties it when the agent goes idle. The
//!   agent is idle almost always and the operating system caches the file anyway, so a page read
//!   again costs a `pread`, not a disk access; keeping 2 MiB of copies in the agent's private
//!   memory made its resident size follow the store's size for hours (issue 20 item 3, docs/soak.md).

mod attachments;
mod containers;
mod events;
mod images;
mod intents;
mod ipam;
mod links;
mod lock;
mod manifests;
mod network;
mod ports;
mod row;
pub mod schema;
mod volumes;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

pub use attachments::NetworkAttachment;
pub use containers::{ContainerRecord, ContainerState, HealthStatus, RuntimeIds};
pub use events::{Event, NewEvent};
pub use images::{ImageRecord, LayerRecord};
pub use intents::{Intent, NewIntent};
pub use ipam::SqliteIpam;
pub use links::LinkRecord;
pub use lock::StateLock;
pub use manifests::ManifestFileRecord;
pub use network::{IpAllocation, NetworkRecord};
pub use ports::{PortBinding, Protocol};
pub use volumes::{Reclaim, VolumeRecord};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "state.db";
/// File name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";
/// Default number of events kept.
pub const DEFAULT_EVENT_CAP: u32 = 10_000;
/// Default time a statement waits for a lock held by another connection.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "state directory {path} has mode {mode:04o}; it must not be accessible by group or others \
         (fix with `chmod 700 {path}`)"
    )]
    InsecureStateDir { path: PathBuf, mode: u32 },
    #[error(
        "state directory {path} is owned by uid {owner}, not by this process (uid {euid}); \
         refusing to use it"
    )]
    StateDirNotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error(
        "state directory {dir} is in use by another agent ({holder}); stop it or use another \
         --state-dir",
        holder = match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() }
    )]
    Locked { dir: PathBuf, pid: Option<i32> },
    #[error("{path}: cannot open the state database: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path}: the state database cannot be read: {source}. The agent does not start on a \
         damaged store: restore the file from a backup (with the agent stopped), or move it away \
         to start from an empty store (which refuses to start while containers are on disk; see \
         `agent run --remove-orphans`)"
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {setting} could not be enabled (got {got:?})")]
    Setting {
        path: PathBuf,
        setting: &'static str,
        got: String,
    },
    #[error(
        "{path}: schema version {found} is newer than this agent understands (up to {supported}); \
         it was written by a newer agent. Run that version, or move the state directory away"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: migration to schema version {version} ({description}) failed: {source}")]
    Migration {
        path: PathBuf,
        version: u32,
        description: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("state database: {table} row {key:?}: column {column}: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        column: &'static str,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no such {kind}: {name}")]
    NotFound { kind: &'static str, name: String },
    #[error("host port {host_ip}:{host_port}/{proto} already bound by container {container}")]
    PortAlreadyBound {
        host_ip: std::net::IpAddr,
        host_port: u16,
        proto: Protocol,
        container: String,
    },
    #[error("address {ip} in network {network} is already allocated to container {container}")]
    IpInUse {
        network: String,
        ip: std::net::IpAddr,
        container: String,
    },
    #[error("network {network} has no free address left among the candidates")]
    NetworkFull { network: String },
    #[error("container {name} is linked by {users}; remove or relink them first", users = users.join(", "))]
    ContainerLinked { name: String, users: Vec<String> },
    #[error("network {name} still has addresses of containers {users}; remove them first", users = users.join(", "))]
    NetworkInUse { name: String, users: Vec<String> },
    #[error("layer {chain_id} is the parent of layers {children}; remove them first", children = children.join(", "))]
    LayerInUse {
        chain_id: String,
        children: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        row::from_sqlite(e)
    }
}

/// Tunables of an opened store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How many events the log keeps (at least 1).
    pub event_cap: u32,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

/// The page cache of the store's connection, in KiB (`PRAGMA cache_size = -CACHE_KIB`).
pub const CACHE_KIB: i64 = 512;

impl Default for Options {
    fn default() -> Self {
        Options {
            event_cap: DEFAULT_EVENT_CAP,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The opened state store. Holds the state-directory lock until dropped.
#[derive(Debug)]
pub struct Store {
    // Field order matters: the connection closes (and checkpoints the WAL) before the lock goes.
    conn: Connection,
    path: PathBuf,
    options: Options,
    /// Called with the newest event id after a transaction that appended events committed
    /// (the running agent wakes `agent events -f` with it).
    event_hook: HookSlot,
    _lock: Option<StateLock>,
}

/// See [`Store::set_event_hook`].
pub type EventHook = std::sync::Arc<dyn Fn(i64) + Send + Sync>;

#[derive(Default)]
struct HookSlot(Option<EventHook>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl Store {
    /// Opens (creating it `0700` if missing) the state directory `dir` with default [`Options`].
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// Opens the state directory `dir`: checks its permissions, takes the lock, opens
    /// `state.db` and migrates it to [`schema::CURRENT_VERSION`].
    pub fn open_with(dir: &Path, options: Options) -> Result<Store> {
        prepare_state_dir(dir)?;
        let lock = StateLock::acquire(dir)?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        let mut store = Store {
            conn,
            path,
            options: sanitise(options),
            event_hook: HookSlot::default(),
            _lock: Some(lock),
        };
        // A damaged file fails here ("file is not a database"): name it and the way out.
        let db = store.path.clone();
        let named = |e: Error| match e {
            Error::Sqlite(source) => Error::Unreadable {
                path: db.clone(),
                source,
            },
            other => other,
        };
        store.configure(true).map_err(named)?;
        schema::migrate(&mut store.conn, &store.path).map_err(named)?;
        Ok(store)
    }

    /// An empty store in memory, fully migrated: for tests of other modules.
    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        let mut store = Store {
            conn,
            path,
            options: Options::default(),
            event_hook: HookSlot::default(),
            _lock: None,
        };
        store.configure(false)?;
        schema::migrate(&mut store.conn, &store.path)?;
        Ok(store)
    }

    /// Gives back the connection's cached pages that no statement is using (SQLite's
    /// `sqlite3_db_release_memory`); the next query reads what it needs again from the file,
    /// which the operating system caches. Called by the agent when its work queue empties.
    pub fn release_memory(&self) -> Result<()> {
        self.conn.release_memory()?;
        Ok(())
    }

    /// Changes the tunables (the event cap takes effect with the next trim).
    pub fn set_options(&mut self, options: Options) -> Result<()> {
        self.options = sanitise(options);
        self.conn.busy_timeout(self.options.busy_timeout)?;
        Ok(())
    }

    /// Path of the database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32> {
        schema::user_version(&self.conn)
    }

    /// Runs `f` in one `IMMEDIATE` transaction: committed if `f` returns `Ok`, rolled back if it
    /// returns `Err` (or panics). `E` is any error a [`Error`] converts into, so callers can use
    /// their own error type inside.
    pub fn transaction<T, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let wrapped = Tx {
            tx,
            event_cap: self.options.event_cap,
            last_event: std::cell::Cell::new(None),
        };
        let value = f(&wrapped)?;
        let Tx { tx, last_event, .. } = wrapped;
        tx.commit().map_err(Error::from)?;
        if let (Some(id), Some(hook)) = (last_event.get(), &self.event_hook.0) {
            hook(id);
        }
        Ok(value)
    }

    /// Calls `hook` with the newest event id whenever a transaction that appended events has
    /// committed, whoever wrote them (the loop, the applier, the health prober), so that
    /// followers of the event log learn of them at once.
    pub fn set_event_hook(&mut self, hook: EventHook) {
        self.event_hook = HookSlot(Some(hook));
    }

    /// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`: the problems found (empty when
    /// the database is sound).
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let line = row?;
            if line != "ok" {
                problems.push(line);
            }
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        let rows = stmt.query_map([], |r| {
            Ok(format!(
                "foreign key violation: {} rowid {:?} -> {}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?
            ))
        })?;
        for row in rows {
            problems.push(row?);
        }
        Ok(problems)
    }

    fn configure(&mut self, on_disk: bool) -> Result<()> {
        let setting = |setting, got: String| Error::Setting {
            path: self.path.clone(),
            setting,
            got,
        };
        self.conn.busy_timeout(self.options.busy_timeout)?;
        if on_disk {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(setting("journal_mode=WAL", mode));
            }
        }
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let sync: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        if sync != 2 {
            return Err(setting("synchronous=FULL", sync.to_string()));
        }
        self.conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        let fk: i64 = self
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        if fk != 1 {
            return Err(setting("foreign_keys=ON", fk.to_string()));
        }
        Ok(())
    }
}

fn sanitise(mut options: Options) -> Options {
    options.event_cap = options.event_cap.max(1);
    options
}

/// Creates `dir` (mode 0700) or checks that the existing one is a directory owned by this user
/// and closed to group and others.
fn prepare_state_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|source| Error::Io {
                    op: "create directory",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Lost a race with another creator: fall through to the checks below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(Error::Io {
                        op: "create directory",
                        path: dir.to_path_buf(),
                        source,
                    });
                }
            }
            // The umask may have removed bits, never added them; make it exactly 0700.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                Error::Io {
                    op: "chmod",
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
            check_state_dir(dir)
        }
        Err(source) => Err(Error::Io {
            op: "stat",
            path: dir.to_path_buf(),
            source,
        }),
        Ok(_) => check_state_dir(dir),
    }
}

fn check_state_dir(dir: &Path) -> Result<()> {
    // Follows a symlink on purpose: `/var/lib/agent -> /data/agent` is a normal setup.
    let md = fs::metadata(dir).map_err(|source| Error::Io {
        op: "stat",
        path: dir.to_path_buf(),
        source,
    })?;
    if !md.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if md.uid() != euid {
        return Err(Error::StateDirNotOwned {
            path: dir.to_path_buf(),
            owner: md.uid(),
            euid,
        });
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureStateDir {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// One open transaction; the typed queries are its methods (see the table-group files).
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    event_cap: u32,
    /// The id of the last event appended in it.
    last_event: std::cell::Cell<Option<i64>>,
}

impl Tx<'_> {
    fn conn(&self) -> &Connection {
        &self.tx
    }

    /// Runs a query and collects its rows.
    fn collect<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn().prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("event_cap", &self.event_cap)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
