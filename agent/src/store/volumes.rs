//! Table `volumes`: named volumes, where their data lives and whether it may be deleted.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use super::row::{json, parse, to_json};
use super::{Result, Tx};

/// What happens to a volume's data when its manifest disappears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reclaim {
    /// Keep the data (the default: data is never deleted unless asked for).
    #[default]
    Keep,
    /// Delete the data with the manifest.
    Delete,
}

impl Reclaim {
    pub fn as_str(self) -> &'static str {
        match self {
            Reclaim::Keep => "keep",
            Reclaim::Delete => "delete",
        }
    }
}

impl std::fmt::Display for Reclaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Reclaim {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "keep" => Ok(Reclaim::Keep),
            "delete" => Ok(Reclaim::Delete),
            _ => Err("expected keep or delete".into()),
        }
    }
}

/// A named volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    /// Host directory holding the data.
    pub driver_path: String,
    pub reclaim: Reclaim,
    pub labels: BTreeMap<String, String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

const COLUMNS: &str = "name, driver_path, reclaim, labels, created_at";

fn volume_row(r: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    let name: String = r.get(0)?;
    Ok(VolumeRecord {
        driver_path: r.get(1)?,
        reclaim: parse("volumes", &name, "reclaim", &r.get::<_, String>(2)?)?,
        labels: json("volumes", &name, "labels", &r.get::<_, String>(3)?)?,
        created_at: r.get(4)?,
        name,
    })
}

impl Tx<'_> {
    /// Records `volume`, updating the row of the same name.
    pub fn upsert_volume(&self, volume: &VolumeRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO volumes (name, driver_path, reclaim, labels, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET driver_path = excluded.driver_path,
                reclaim = excluded.reclaim, labels = excluded.labels,
                created_at = excluded.created_at",
            params![
                volume.name,
                volume.driver_path,
                volume.reclaim.as_str(),
                to_json(&format!("volume {} labels", volume.name), &volume.labels)?,
                volume.created_at
            ],
        )?;
        Ok(())
    }

    pub fn volume(&self, name: &str) -> Result<Option<VolumeRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1");
        Ok(self.conn().query_row(&sql, [name], volume_row).optional()?)
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM volumes ORDER BY name");
        self.collect(&sql, [], volume_row)
    }

    /// Forgets a volume (its data is the caller's business); true if it existed.
    pub fn delete_volume(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        Ok(n > 0)
    }
}
