//! Tables `images` (a reference and the digest it resolved to) and `layers` (the layer chain).

use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::row::{int, json, to_i64, to_json};
use super::{Error, Result, Tx};

/// An image as the store records it: the reference the manifests use and what it resolved to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// The reference as written (`registry:5000/web:1.4`, an Image manifest's name, ...).
    pub reference: String,
    /// The digest the reference resolved to (`sha256:...`).
    pub digest: String,
    /// The image configuration (OCI image config JSON).
    pub config: Value,
    /// Bytes on disk.
    pub size: u64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One layer of the layer chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    pub chain_id: String,
    pub diff_id: String,
    /// The chain id of the layer below (`None` for a base layer). Must already be recorded.
    pub parent: Option<String>,
    pub size: u64,
    /// Unix milliseconds.
    pub created_at: i64,
}

const IMAGE_COLUMNS: &str = "reference, digest, config, size, created_at";
const LAYER_COLUMNS: &str = "chain_id, diff_id, parent, size, created_at";

fn image_row(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    let reference: String = r.get(0)?;
    Ok(ImageRecord {
        digest: r.get(1)?,
        config: json("images", &reference, "config", &r.get::<_, String>(2)?)?,
        size: int("images", &reference, "size", r.get(3)?)?,
        created_at: r.get(4)?,
        reference,
    })
}

fn layer_row(r: &Row<'_>) -> rusqlite::Result<LayerRecord> {
    let chain_id: String = r.get(0)?;
    Ok(LayerRecord {
        diff_id: r.get(1)?,
        parent: r.get(2)?,
        size: int("layers", &chain_id, "size", r.get(3)?)?,
        created_at: r.get(4)?,
        chain_id,
    })
}

impl Tx<'_> {
    /// Records `image`, replacing the row of the same reference.
    pub fn upsert_image(&self, image: &ImageRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO images (reference, digest, config, size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(reference) DO UPDATE SET digest = excluded.digest,
                config = excluded.config, size = excluded.size, created_at = excluded.created_at",
            params![
                image.reference,
                image.digest,
                to_json(&format!("image {} config", image.reference), &image.config)?,
                to_i64("image size", image.size)?,
                image.created_at
            ],
        )?;
        Ok(())
    }

    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE reference = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [reference], image_row)
            .optional()?)
    }

    /// Every image, by reference.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY reference");
        self.collect(&sql, [], image_row)
    }

    /// The references that resolved to `digest`.
    pub fn images_by_digest(&self, digest: &str) -> Result<Vec<ImageRecord>> {
        let sql =
            format!("SELECT {IMAGE_COLUMNS} FROM images WHERE digest = ?1 ORDER BY reference");
        self.collect(&sql, [digest], image_row)
    }

    /// Removes an image reference; true if it existed (a missing one is not an error).
    pub fn delete_image(&self, reference: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM images WHERE reference = ?1", [reference])?;
        Ok(n > 0)
    }

    /// Records `layer`; its parent must be recorded already.
    pub fn upsert_layer(&self, layer: &LayerRecord) -> Result<()> {
        if let Some(parent) = &layer.parent
            && self.layer(parent)?.is_none()
        {
            return Err(Error::NotFound {
                kind: "parent layer",
                name: format!("{parent} (of layer {})", layer.chain_id),
            });
        }
        self.conn().execute(
            "INSERT INTO layers (chain_id, diff_id, parent, size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(chain_id) DO UPDATE SET diff_id = excluded.diff_id,
                parent = excluded.parent, size = excluded.size, created_at = excluded.created_at",
            params![
                layer.chain_id,
                layer.diff_id,
                layer.parent,
                to_i64("layer size", layer.size)?,
                layer.created_at
            ],
        )?;
        Ok(())
    }

    pub fn layer(&self, chain_id: &str) -> Result<Option<LayerRecord>> {
        let sql = format!("SELECT {LAYER_COLUMNS} FROM layers WHERE chain_id = ?1");
        Ok(self
            .conn()
            .query_row(&sql, [chain_id], layer_row)
            .optional()?)
    }

    /// Every layer, by chain id.
    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        let sql = format!("SELECT {LAYER_COLUMNS} FROM layers ORDER BY chain_id");
        self.collect(&sql, [], layer_row)
    }

    /// Removes a layer; refused with [`Error::LayerInUse`] while other layers sit on it. True if
    /// it existed.
    pub fn delete_layer(&self, chain_id: &str) -> Result<bool> {
        let children: Vec<String> = self.collect(
            "SELECT chain_id FROM layers WHERE parent = ?1 ORDER BY chain_id",
            [chain_id],
            |r| r.get(0),
        )?;
        if !children.is_empty() {
            return Err(Error::LayerInUse {
                chain_id: chain_id.to_string(),
                children,
            });
        }
        let n = self
            .conn()
            .execute("DELETE FROM layers WHERE chain_id = ?1", [chain_id])?;
        Ok(n > 0)
    }
}
