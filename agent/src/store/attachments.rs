//! Table `network_attachments`: the network driver's per-container record of what it built
//! (endpoints, published ports, link rules, the namespace it owns), so that an attachment a crash
//! interrupted can be undone at start-up and the firewall rebuilt from scratch.
//!
//! Keyed by the runtime container id and deliberately without a foreign key to `containers`: the
//! record is written before the plumbing exists and must survive until it is torn down. The
//! record itself is the driver's type, kept opaque as JSON.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{json, to_json};
use super::{Result, Tx};

/// One stored attachment record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkAttachment {
    pub container_id: String,
    /// The network driver's record.
    pub record: Value,
    /// Unix milliseconds of the last write.
    pub updated_at: i64,
}

const COLUMNS: &str = "container_id, record, updated_at";

fn attachment_row(r: &Row<'_>) -> rusqlite::Result<NetworkAttachment> {
    let container_id: String = r.get(0)?;
    Ok(NetworkAttachment {
        record: json(
            "network_attachments",
            &container_id,
            "record",
            &r.get::<_, String>(1)?,
        )?,
        updated_at: r.get(2)?,
        container_id,
    })
}

impl Tx<'_> {
    /// Inserts or replaces the attachment record of `container_id`.
    pub fn put_network_attachment(
        &self,
        container_id: &str,
        record: &Value,
        now: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO network_attachments (container_id, record, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(container_id) DO UPDATE SET record = excluded.record,
                updated_at = excluded.updated_at",
            params![
                container_id,
                to_json(&format!("network attachment of {container_id}"), record)?,
                now
            ],
        )?;
        Ok(())
    }

    pub fn network_attachment(&self, container_id: &str) -> Result<Option<NetworkAttachment>> {
        let sql = format!("SELECT {COLUMNS} FROM network_attachments WHERE container_id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [container_id], attachment_row)
            .optional()?)
    }

    /// Every attachment record, by container id.
    pub fn network_attachments(&self) -> Result<Vec<NetworkAttachment>> {
        let sql = format!("SELECT {COLUMNS} FROM network_attachments ORDER BY container_id");
        self.collect(&sql, [], attachment_row)
    }

    /// Removes the record of `container_id`; true if there was one (absent is not an error).
    pub fn remove_network_attachment(&self, container_id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM network_attachments WHERE container_id = ?1",
            [container_id],
        )?;
        Ok(n > 0)
    }
}
