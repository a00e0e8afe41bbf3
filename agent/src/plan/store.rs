//! Reading the actual state and the last good manifests from the store, and the JSON forms the
//! planner's types take in the store's opaque columns.
//!
//! # Formats (contract with the daemon that writes them)
//!
//! - `containers.config`: [`EffectiveContainer`] as JSON ([`container_config_value`]);
//!   `containers.config_hash`: [`EffectiveContainer::hash`] as `sha256:<hex>`;
//!   `containers.image_digest`: the digest in the config.
//! - `networks.config`: [`EffectiveNetwork`] as JSON.
//! - `volumes.reclaim`: `keep` for the manifests' `retain`, `delete` for `delete`.
//! - `images.reference`: the image key ([`super::ImageSource::key`]), `images.digest` what the
//!   fetch resolved it to.
//! - `manifest_files.objects`: the file's last good documents as a JSON array of
//!   [`Manifest`] ([`objects_value`]); these are also what tells which file owns an object.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::actual::{Actual, ActualContainer, ActualNetwork};
use super::effective::{EffectiveContainer, EffectiveImage, EffectiveNetwork, EffectiveVolume};
use crate::manifest::{Kind, Manifest, Reclaim};
use crate::store::{self, ManifestFileRecord, Store, Tx};

/// The JSON stored in `containers.config`.
pub fn container_config_value(c: &EffectiveContainer) -> Value {
    // Plain data with string map keys: serialising cannot fail.
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// The JSON stored in `networks.config`.
pub fn network_config_value(n: &EffectiveNetwork) -> Value {
    serde_json::to_value(n).unwrap_or(Value::Null)
}

/// The JSON stored in `manifest_files.objects`.
pub fn objects_value(objects: &[Manifest]) -> Value {
    serde_json::to_value(objects).unwrap_or(Value::Array(Vec::new()))
}

/// The last good objects of a manifest file record.
pub fn last_good(record: &ManifestFileRecord) -> Result<Vec<Manifest>, store::Error> {
    serde_json::from_value(record.objects.clone()).map_err(|e| store::Error::Corrupt {
        table: "manifest_files",
        key: record.path.clone(),
        column: "objects",
        reason: format!("not a list of manifests: {e}"),
    })
}

/// The store's reclaim value for a manifest's.
pub fn store_reclaim(r: Reclaim) -> store::Reclaim {
    match r {
        Reclaim::Retain => store::Reclaim::Keep,
        Reclaim::Delete => store::Reclaim::Delete,
    }
}

/// The key of [`Actual::owners`] for a manifest: `(kind, name)`, except that an Image manifest
/// owns its image key (images are recorded by key).
pub fn owner_key(m: &Manifest) -> (Kind, String) {
    match m {
        Manifest::Image(i) => (Kind::Image, EffectiveImage::from_manifest(i).key),
        other => (other.kind(), other.name().to_string()),
    }
}

/// Reads the actual state in one transaction.
pub fn actual_from_store(store: &mut Store) -> Result<Actual, store::Error> {
    store.transaction(actual_from_tx)
}

/// The last good objects of every recorded manifest file, by path.
pub fn last_good_from_store(
    store: &mut Store,
) -> Result<BTreeMap<PathBuf, Vec<Manifest>>, store::Error> {
    store.transaction(|tx| {
        tx.manifest_files()?
            .iter()
            .map(|r| Ok((PathBuf::from(&r.path), last_good(r)?)))
            .collect()
    })
}

/// Reads the actual state inside an open transaction.
pub fn actual_from_tx(tx: &Tx<'_>) -> Result<Actual, store::Error> {
    let mut actual = Actual::default();
    for img in tx.images()? {
        actual.images.insert(img.reference, img.digest);
    }
    for v in tx.volumes()? {
        let reclaim = match v.reclaim {
            store::Reclaim::Keep => Reclaim::Retain,
            store::Reclaim::Delete => Reclaim::Delete,
        };
        actual.volumes.insert(
            v.name.clone(),
            EffectiveVolume {
                name: v.name,
                reclaim,
                labels: v.labels,
            },
        );
    }
    for n in tx.networks()? {
        // Names that are not DNS labels (the agent's default bridge network, `_default`) are the
        // agent's own: no manifest can name them, so the planner must not remove them.
        if n.name.starts_with('_') {
            continue;
        }
        let config = serde_json::from_value::<EffectiveNetwork>(n.config)
            .ok()
            .filter(|c| c.name == n.name);
        actual.networks.insert(n.name, ActualNetwork { config });
    }
    for c in tx.containers()? {
        let config = serde_json::from_value::<EffectiveContainer>(c.config)
            .ok()
            .filter(|cfg| cfg.name == c.name);
        let mut ac = ActualContainer::new(config, c.state);
        ac.exit_code = c.exit_code;
        ac.health = c.health;
        ac.started_at = c.started_at;
        actual.containers.insert(c.name, ac);
    }
    let mut owners = HashMap::new();
    for record in tx.manifest_files()? {
        let file: Arc<Path> = Arc::from(Path::new(&record.path));
        for m in last_good(&record)? {
            owners.insert(owner_key(&m), file.clone());
        }
    }
    actual.owners = owners;
    Ok(actual)
}
