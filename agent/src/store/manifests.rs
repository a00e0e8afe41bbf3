//! Table `manifest_files`: per manifest file, its last good version and its last error.
//!
//! A file that fails to load keeps its last good content hash and objects; only the error and the
//! load time change ([`Tx::record_manifest_error`]). That is what lets the planner keep the
//! objects of a broken file in force.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{json, to_json};
use super::{Result, Tx};

/// Status of one manifest file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestFileRecord {
    pub path: String,
    /// Hash of the last content that loaded (`None` if it never loaded).
    pub content_hash: Option<String>,
    /// The objects of that content (opaque to the store; `[]` if it never loaded).
    pub objects: Value,
    /// The error of the latest load, `None` if the latest load succeeded.
    pub last_error: Option<String>,
    /// Unix milliseconds of the latest load attempt.
    pub loaded_at: Option<i64>,
    /// Unix milliseconds of the last time its objects were applied.
    pub applied_at: Option<i64>,
}

const COLUMNS: &str = "path, content_hash, objects, last_error, loaded_at, applied_at";

fn manifest_row(r: &Row<'_>) -> rusqlite::Result<ManifestFileRecord> {
    let path: String = r.get(0)?;
    Ok(ManifestFileRecord {
        content_hash: r.get(1)?,
        objects: json("manifest_files", &path, "objects", &r.get::<_, String>(2)?)?,
        last_error: r.get(3)?,
        loaded_at: r.get(4)?,
        applied_at: r.get(5)?,
        path,
    })
}

impl Tx<'_> {
    /// Records `m` as given, updating the row of the same path.
    pub fn upsert_manifest_file(&self, m: &ManifestFileRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO manifest_files (path, content_hash, objects, last_error, loaded_at, applied_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(path) DO UPDATE SET content_hash = excluded.content_hash,
                objects = excluded.objects, last_error = excluded.last_error,
                loaded_at = excluded.loaded_at, applied_at = excluded.applied_at",
            params![
                m.path,
                m.content_hash,
                to_json(&format!("manifest {} objects", m.path), &m.objects)?,
                m.last_error,
                m.loaded_at,
                m.applied_at
            ],
        )?;
        Ok(())
    }

    /// A successful load of `path` at `now`: the new last good version, error cleared.
    pub fn record_manifest_loaded(
        &self,
        path: &str,
        content_hash: &str,
        objects: &Value,
        now: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO manifest_files (path, content_hash, objects, last_error, loaded_at)
             VALUES (?1, ?2, ?3, NULL, ?4)
             ON CONFLICT(path) DO UPDATE SET content_hash = excluded.content_hash,
                objects = excluded.objects, last_error = NULL, loaded_at = excluded.loaded_at",
            params![
                path,
                content_hash,
                to_json(&format!("manifest {path} objects"), objects)?,
                now
            ],
        )?;
        Ok(())
    }

    /// A failed load of `path` at `now`: the error is recorded, the last good version kept.
    pub fn record_manifest_error(&self, path: &str, error: &str, now: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO manifest_files (path, objects, last_error, loaded_at)
             VALUES (?1, '[]', ?2, ?3)
             ON CONFLICT(path) DO UPDATE SET last_error = excluded.last_error,
                loaded_at = excluded.loaded_at",
            params![path, error, now],
        )?;
        Ok(())
    }

    /// The objects of `path` were applied at `now`. False if the file is not recorded.
    pub fn record_manifest_applied(&self, path: &str, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE manifest_files SET applied_at = ?2 WHERE path = ?1",
            params![path, now],
        )?;
        Ok(n > 0)
    }

    pub fn manifest_file(&self, path: &str) -> Result<Option<ManifestFileRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM manifest_files WHERE path = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [path], manifest_row)
            .optional()?)
    }

    /// Every manifest file, by path.
    pub fn manifest_files(&self) -> Result<Vec<ManifestFileRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM manifest_files ORDER BY path");
        self.collect(&sql, [], manifest_row)
    }

    /// Forgets `path` (after its deletion was seen and applied); true if it was recorded.
    pub fn delete_manifest_file(&self, path: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM manifest_files WHERE path = ?1", [path])?;
        Ok(n > 0)
    }
}
