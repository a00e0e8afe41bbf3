//! Table `events`: the append-only event log, capped to the newest events.
//!
//! Ids are `AUTOINCREMENT`: they only grow (never reused, even after trimming), so a reader can
//! follow the log with [`Tx::events_after`]. Every `max(1, cap / 100)`-th insert deletes, in the
//! same transaction, every event with `id <= new_id - cap`: a range delete on the primary key, so
//! the log holds between `cap` and `cap + cap / 100` events once full.

use rusqlite::{Row, params};
use serde_json::Value;

use super::row::{json, to_json};
use super::{Result, Tx};

/// An event to append.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewEvent {
    /// Unix milliseconds.
    pub time: i64,
    /// What happened (`container.start`, `plan.apply`, ...).
    pub kind: String,
    /// What it happened to (`container/web`).
    pub object: String,
    /// The reason and details, e.g. `{"reason": "recreate web: env.LOG_LEVEL changed"}`.
    pub message: Value,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub id: i64,
    pub time: i64,
    pub kind: String,
    pub object: String,
    pub message: Value,
}

const COLUMNS: &str = "id, time, kind, object, message";

fn event_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let id: i64 = r.get(0)?;
    Ok(Event {
        time: r.get(1)?,
        kind: r.get(2)?,
        object: r.get(3)?,
        message: json(
            "events",
            &id.to_string(),
            "message",
            &r.get::<_, String>(4)?,
        )?,
        id,
    })
}

impl Tx<'_> {
    /// Appends `event`; returns its id. Trims the log to the cap now and then (module docs).
    pub fn append_event(&self, event: &NewEvent) -> Result<i64> {
        self.conn().execute(
            "INSERT INTO events (time, kind, object, message) VALUES (?1, ?2, ?3, ?4)",
            params![
                event.time,
                event.kind,
                event.object,
                to_json(&format!("event {} message", event.kind), &event.message)?
            ],
        )?;
        let id = self.conn().last_insert_rowid();
        self.last_event.set(Some(id));
        let cap = i64::from(self.event_cap);
        if id % trim_interval(self.event_cap) == 0 {
            self.conn()
                .execute("DELETE FROM events WHERE id <= ?1", [id - cap])?;
        }
        Ok(id)
    }

    /// Up to `limit` events with an id above `after` (all if `None`), oldest first.
    pub fn events_after(&self, after: Option<i64>, limit: usize) -> Result<Vec<Event>> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2");
        self.collect(
            &sql,
            params![after.unwrap_or(0), limit_param(limit)],
            event_row,
        )
    }

    /// The newest `limit` events, about `object` if given, oldest first.
    pub fn recent_events(&self, object: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let mut events = match object {
            Some(o) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE object = ?1 ORDER BY id DESC LIMIT ?2"
                );
                self.collect(&sql, params![o, limit_param(limit)], event_row)?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM events ORDER BY id DESC LIMIT ?1");
                self.collect(&sql, [limit_param(limit)], event_row)?
            }
        };
        events.reverse();
        Ok(events)
    }

    /// How many events the log holds.
    pub fn event_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }
}

/// Inserts between trims for a cap.
pub(super) fn trim_interval(cap: u32) -> i64 {
    i64::from((cap / 100).max(1))
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
