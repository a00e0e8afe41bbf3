//! Schema versions and forward migrations.
//!
//! The version lives in `PRAGMA user_version` (0 = empty database). Each [`Migration`] runs in
//! its own `IMMEDIATE` transaction together with the bump of `user_version`, so the database is
//! always at exactly one version. Older databases are migrated forward on open; a newer one is
//! refused with [`Error::SchemaTooNew`] (its extra columns and tables would be silently
//! ignored or, worse, half-updated). Migrations are never edited once released: a change is a
//! new migration at the end of [`MIGRATIONS`].
//!
//! Writing a migration: SQLite's `ALTER TABLE` adds columns and renames; anything else needs the
//! "create new table, copy, drop, rename" sequence, for which foreign keys must be switched off
//! around the transaction and `PRAGMA foreign_key_check` run before committing.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{Error, Result};

/// One step of the schema history.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this migration brings the database to.
    pub version: u32,
    pub description: &'static str,
    /// SQL run as one batch.
    pub sql: &'static str,
}

/// Every migration, oldest first; `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial tables",
        sql: V1,
    },
    Migration {
        version: 2,
        description: "container health status; indexes for events by object and containers by image",
        sql: V2,
    },
    Migration {
        version: 3,
        description: "network attachment records of the network driver",
        sql: V3,
    },
];

/// The schema version this binary writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

const V1: &str = r#"
CREATE TABLE images (
    reference   TEXT PRIMARY KEY NOT NULL,
    digest      TEXT NOT NULL,
    config      TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX images_digest ON images(digest);

CREATE TABLE layers (
    chain_id    TEXT PRIMARY KEY NOT NULL,
    diff_id     TEXT NOT NULL,
    parent      TEXT REFERENCES layers(chain_id) ON DELETE RESTRICT,
    size        INTEGER NOT NULL CHECK (size >= 0),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX layers_parent ON layers(parent);

CREATE TABLE volumes (
    name        TEXT PRIMARY KEY NOT NULL,
    driver_path TEXT NOT NULL,
    reclaim     TEXT NOT NULL CHECK (reclaim IN ('keep', 'delete')),
    labels      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE networks (
    name        TEXT PRIMARY KEY NOT NULL,
    bridge      TEXT NOT NULL UNIQUE,
    subnet      TEXT NOT NULL,
    gateway     TEXT,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE containers (
    name          TEXT PRIMARY KEY NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    config        TEXT NOT NULL,
    config_hash   TEXT NOT NULL,
    image_digest  TEXT NOT NULL,
    monitor_pid   INTEGER,
    container_pid INTEGER,
    netns_path    TEXT,
    state         TEXT NOT NULL,
    exit_code     INTEGER,
    signal        INTEGER,
    oom_killed    INTEGER NOT NULL DEFAULT 0 CHECK (oom_killed IN (0, 1)),
    restart_count INTEGER NOT NULL DEFAULT 0 CHECK (restart_count >= 0),
    started_at    INTEGER,
    finished_at   INTEGER,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE ip_allocations (
    network      TEXT NOT NULL REFERENCES networks(name) ON DELETE RESTRICT,
    ip           TEXT NOT NULL,
    container    TEXT NOT NULL REFERENCES containers(name) ON DELETE CASCADE,
    allocated_at INTEGER NOT NULL,
    PRIMARY KEY (network, ip),
    UNIQUE (network, container)
) STRICT;
CREATE INDEX ip_allocations_container ON ip_allocations(container);

CREATE TABLE port_bindings (
    container      TEXT NOT NULL REFERENCES containers(name) ON DELETE CASCADE,
    host_ip        TEXT NOT NULL,
    host_port      INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    proto          TEXT NOT NULL CHECK (proto IN ('tcp', 'udp', 'sctp')),
    container_port INTEGER NOT NULL CHECK (container_port BETWEEN 1 AND 65535),
    PRIMARY KEY (host_ip, host_port, proto)
) STRICT;
CREATE INDEX port_bindings_container ON port_bindings(container);
CREATE INDEX port_bindings_port ON port_bindings(host_port, proto);

CREATE TABLE links (
    parent TEXT NOT NULL REFERENCES containers(name) ON DELETE CASCADE,
    child  TEXT NOT NULL REFERENCES containers(name) ON DELETE RESTRICT,
    alias  TEXT NOT NULL,
    PRIMARY KEY (parent, alias),
    CHECK (parent <> child)
) STRICT;
CREATE INDEX links_child ON links(child);

CREATE TABLE manifest_files (
    path         TEXT PRIMARY KEY NOT NULL,
    content_hash TEXT,
    objects      TEXT NOT NULL,
    last_error   TEXT,
    loaded_at    INTEGER,
    applied_at   INTEGER
) STRICT;

CREATE TABLE intents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    object     TEXT NOT NULL,
    payload    TEXT NOT NULL,
    started_at INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    object  TEXT NOT NULL,
    message TEXT NOT NULL
) STRICT;
"#;

const V2: &str = r#"
ALTER TABLE containers ADD COLUMN health_status TEXT
    CHECK (health_status IN ('starting', 'healthy', 'unhealthy'));
CREATE INDEX containers_image_digest ON containers(image_digest);
CREATE INDEX events_object ON events(object, id);
"#;

// Keyed by the runtime container id, without a foreign key: an attachment is recorded before the
// network plumbing is built and must outlive a half-removed container, so that start-up cleanup
// can find and undo it.
const V3: &str = r#"
CREATE TABLE network_attachments (
    container_id TEXT PRIMARY KEY NOT NULL,
    record       TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
"#;

/// The database's `user_version`.
pub fn user_version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| Error::Invalid {
        what: "PRAGMA user_version".into(),
        reason: format!("{v} is not a schema version"),
    })
}

/// Brings `conn` to [`CURRENT_VERSION`]; returns the version found before. `path` only names the
/// database in errors.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<u32> {
    migrate_to(conn, path, CURRENT_VERSION)
}

/// Brings `conn` to schema version `target` (at most [`CURRENT_VERSION`]), for tests that need a
/// database as an older release left it. Returns the version found before.
pub fn migrate_to(conn: &mut Connection, path: &Path, target: u32) -> Result<u32> {
    let found = user_version(conn).map_err(|e| match e {
        Error::Sqlite(source) => Error::Open {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })?;
    if found > CURRENT_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let fail = |source| Error::Migration {
            path: path.to_path_buf(),
            version: m.version,
            description: m.description,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }

    #[test]
    fn every_step_applies_on_top_of_the_previous() -> Result<()> {
        let mut conn = Connection::open_in_memory()?;
        for m in MIGRATIONS {
            migrate_to(&mut conn, Path::new(":memory:"), m.version)?;
            assert_eq!(user_version(&conn)?, m.version);
        }
        // Idempotent at the top.
        assert_eq!(migrate(&mut conn, Path::new(":memory:"))?, CURRENT_VERSION);
        Ok(())
    }

    #[test]
    fn newer_database_is_refused() -> Result<()> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)?;
        let err = migrate(&mut conn, Path::new("x.db")).err();
        assert!(
            matches!(err, Some(Error::SchemaTooNew { found, supported, .. })
                if found == CURRENT_VERSION + 1 && supported == CURRENT_VERSION),
            "{err:?}"
        );
        Ok(())
    }
}
