//! Table `intents`: write-ahead records of changes being applied.
//!
//! The daemon records an intent (in its own committed transaction) before it touches the host,
//! and finishes it (deletes it, in the transaction that records the result) afterwards. Whatever
//! is left at start-up is a change a crash interrupted: the daemon finishes or undoes it. Kinds
//! and payloads belong to the daemon; the store keeps them opaque.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{json, to_json};
use super::{Result, Tx};

/// An intent to record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewIntent {
    /// What is being done (`create-container`, `remove-network`, ...).
    pub kind: String,
    /// What it is done to (`container/web`).
    pub object: String,
    /// Whatever is needed to finish or undo it.
    pub payload: Value,
}

/// A recorded, unfinished intent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    pub id: i64,
    pub kind: String,
    pub object: String,
    pub payload: Value,
    /// Unix milliseconds.
    pub started_at: i64,
}

const COLUMNS: &str = "id, kind, object, payload, started_at";

fn intent_row(r: &Row<'_>) -> rusqlite::Result<Intent> {
    let id: i64 = r.get(0)?;
    Ok(Intent {
        kind: r.get(1)?,
        object: r.get(2)?,
        payload: json(
            "intents",
            &id.to_string(),
            "payload",
            &r.get::<_, String>(3)?,
        )?,
        started_at: r.get(4)?,
        id,
    })
}

impl Tx<'_> {
    /// Records `intent` as started at `now`; returns its id.
    pub fn begin_intent(&self, intent: &NewIntent, now: i64) -> Result<i64> {
        self.conn().execute(
            "INSERT INTO intents (kind, object, payload, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                intent.kind,
                intent.object,
                to_json(
                    &format!("intent {} {} payload", intent.kind, intent.object),
                    &intent.payload
                )?,
                now
            ],
        )?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Marks intent `id` done (removes it). Finishing one that is already gone is success; the
    /// return value says whether it was there.
    pub fn finish_intent(&self, id: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM intents WHERE id = ?1", [id])?;
        Ok(n > 0)
    }

    pub fn intent(&self, id: i64) -> Result<Option<Intent>> {
        let sql = format!("SELECT {COLUMNS} FROM intents WHERE id = ?1");
        Ok(self.conn().query_row(&sql, [id], intent_row).optional()?)
    }

    /// Every unfinished intent, oldest first.
    pub fn pending_intents(&self) -> Result<Vec<Intent>> {
        let sql = format!("SELECT {COLUMNS} FROM intents ORDER BY id");
        self.collect(&sql, [], intent_row)
    }
}
