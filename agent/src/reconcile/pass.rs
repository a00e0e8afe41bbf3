//! One reconcile pass: load the settled manifest snapshot, record each file's status, work out
//! the desired state (with the last good version of broken files), and apply the difference.
//!
//! File bookkeeping (the store's `manifest_files` table):
//! - A file that loads records its content hash and objects (its "last good version").
//! - A file that fails to load (bad YAML, invalid, refused by the permission check) records the
//!   error with file:line; its last good objects stay in the desired state, so its containers keep
//!   running as they were. Except when that last good version loaded but was never applied (the
//!   pass that loaded it deferred works behind a busy object, or some failed, and the file broke
//!   before a pass applied it all): then its last good objects are applied like a loaded file's
//!   until a pass applied them completely, so a broken save never leaves a container on a version
//!   older than the last good one ([`Unapplied`]).
//! - A file that is gone (and the directory itself was readable) is forgotten once the removal of
//!   its objects was applied. An unreadable directory removes nothing.
//! - Rows are only written when something changed, so an idle agent's periodic resync does not
//!   write to the disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use crate::manifest::source::Snapshot;
use crate::manifest::{self, Diagnostic, Manifest};
use crate::reconcile::report::PassReport;
use crate::store::{ManifestFileRecord, NewEvent, Store, Tx};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends an event (and counts it in [`crate::metrics`]).
pub fn event(
    tx: &Tx<'_>,
    kind: &str,
    object: &str,
    message: serde_json::Value,
) -> crate::store::Result<i64> {
    crate::metrics::global().on_event(kind, object, &message);
    tx.append_event(&NewEvent {
        time: now_ms(),
        kind: kind.into(),
        object: object.into(),
        message,
    })
}

/// The desired objects of one file and where they came from.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    pub path: PathBuf,
    pub objects: Vec<Manifest>,
    /// True when the file failed to load and these are its last good objects.
    pub stale: bool,
    /// Stale objects of a last good version that was never applied: planned like a loaded
    /// file's (not frozen) until a pass applied them.
    pub unapplied: bool,
    /// Content hash of the version these objects come from (`None`: none ever loaded).
    pub hash: Option<String>,
    /// Why it failed to load.
    pub error: Option<String>,
}

/// What the manifests ask for, file by file.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub files: Vec<DesiredFile>,
    /// Recorded files that are gone from the directory.
    pub removed_files: Vec<String>,
    /// Load errors, one line each (`file:line:col: ...`).
    pub errors: Vec<String>,
}

/// Files (by path, with the content hash of that version) whose last good version loaded but
/// was not applied completely yet: the loop keeps this across passes. A file enters when a
/// version of it loads (or, at start-up, when the store says its last load came after its last
/// apply) and leaves when a pass that planned that same version ended with every work applied
/// and none deferred (an older pass ending late does not count).
#[derive(Debug, Default)]
pub struct Unapplied(BTreeMap<String, String>);

/// Loads the snapshot into typed objects; refused or unreadable files become failed files.
/// Secret values are read now and sealed with the host key of `state_dir`
/// ([`manifest::source::secrets`]); without that key every Secret's file fails.
pub fn load_snapshot(snapshot: &Snapshot, state_dir: &std::path::Path) -> manifest::Loaded {
    let mut loaded = manifest::source::load(snapshot);
    let has_secrets = loaded
        .objects()
        .any(|o| matches!(o.manifest, Manifest::Secret(_)));
    if has_secrets {
        match manifest::source::secrets::host_key(state_dir, true) {
            Ok(Some(key)) => manifest::source::secrets::seal(&mut loaded, &key),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read or make the secret key; secrets keep no digest")
            }
        }
    }
    loaded
}

fn diagnostics_text(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Records every file's load status (only what changed, with an event each) and returns the
/// desired state.
pub fn record_files(
    store: &mut Store,
    snapshot: &Snapshot,
    loaded: &manifest::Loaded,
    unapplied: &mut Unapplied,
) -> crate::store::Result<Desired> {
    let now = now_ms();
    store.transaction(|tx| {
        let recorded: BTreeMap<String, ManifestFileRecord> = tx
            .manifest_files()?
            .into_iter()
            .map(|m| (m.path.clone(), m))
            .collect();
        let mut desired = Desired::default();
        for f in &loaded.files {
            let path = f.path.to_string_lossy().into_owned();
            let old = recorded.get(&path);
            match &f.outcome {
                Ok(objects) => {
                    let manifests: Vec<Manifest> =
                        objects.iter().map(|o| o.manifest.clone()).collect();
                    let value = serde_json::to_value(&manifests).map_err(|e| {
                        crate::store::Error::Invalid {
                            what: format!("manifest {path}"),
                            reason: e.to_string(),
                        }
                    })?;
                    // The objects too: a Secret's digest changes with its value, not the file.
                    let unchanged = old.is_some_and(|o| {
                        o.last_error.is_none()
                            && o.content_hash.as_deref() == Some(&f.sha256)
                            && o.objects == value
                    });
                    if !unchanged || old.is_some_and(loaded_after_apply) {
                        unapplied.0.insert(path.clone(), f.sha256.clone());
                    }
                    if !unchanged {
                        tx.record_manifest_loaded(&path, &f.sha256, &value, now)?;
                        event(
                            tx,
                            "manifest.loaded",
                            &format!("file:{path}"),
                            json!({"sha256": f.sha256, "objects": manifests.len()}),
                        )?;
                    }
                    desired.files.push(DesiredFile {
                        path: f.path.clone(),
                        objects: manifests,
                        stale: false,
                        unapplied: false,
                        hash: Some(f.sha256.clone()),
                        error: None,
                    });
                }
                Err(diags) => {
                    let text = diagnostics_text(diags);
                    if old.and_then(|o| o.last_error.as_deref()) != Some(text.as_str()) {
                        tx.record_manifest_error(&path, &text, now)?;
                        event(tx, "manifest.error", &format!("file:{path}"), json!({"error": text.clone()}))?;
                        tracing::warn!(file = %path, "manifest file failed to load; its last good version stays in force:\n{text}");
                    }
                    desired.errors.extend(diags.iter().map(ToString::to_string));
                    // The last good version, if there ever was one.
                    let last_good: Vec<Manifest> = old
                        .map(|o| serde_json::from_value(o.objects.clone()).unwrap_or_default())
                        .unwrap_or_default();
                    // Its first failure since a good load: the record still tells whether that
                    // load was applied (after a restart the loop's own memory is empty).
                    let hash = old.and_then(|o| o.content_hash.clone());
                    if let Some(o) = old
                        && let Some(h) = &hash
                        && o.last_error.is_none()
                        && loaded_after_apply(o)
                    {
                        unapplied.0.insert(path.clone(), h.clone());
                    }
                    desired.files.push(DesiredFile {
                        path: f.path.clone(),
                        objects: last_good,
                        stale: true,
                        unapplied: hash.is_some() && unapplied.0.get(&path) == hash.as_ref(),
                        hash,
                        error: Some(text),
                    });
                }
            }
        }
        if snapshot.dir_error.is_none() {
            for path in recorded.keys() {
                if !loaded.files.iter().any(|f| f.path.to_string_lossy() == path.as_str()) {
                    desired.removed_files.push(path.clone());
                }
            }
        } else {
            // Unknown, not gone: keep every recorded file's last good objects.
            for (path, rec) in &recorded {
                if !loaded.files.iter().any(|f| f.path.to_string_lossy() == path.as_str()) {
                    desired.files.push(DesiredFile {
                        path: PathBuf::from(path),
                        objects: serde_json::from_value(rec.objects.clone()).unwrap_or_default(),
                        stale: true,
                        unapplied: false,
                        hash: rec.content_hash.clone(),
                        error: snapshot.dir_error.clone(),
                    });
                }
            }
        }
        Ok(desired)
    })
}

/// Whether the record's last load came after its last apply (or it was never applied).
fn loaded_after_apply(rec: &ManifestFileRecord) -> bool {
    rec.applied_at
        .is_none_or(|a| rec.loaded_at.is_some_and(|l| l > a))
}

/// Forgets files whose removal was applied.
pub fn forget_removed(store: &mut Store, removed: &[String]) -> crate::store::Result<()> {
    if removed.is_empty() {
        return Ok(());
    }
    store.transaction(|tx| {
        for path in removed {
            if tx.delete_manifest_file(path)? {
                event(tx, "manifest.removed", &format!("file:{path}"), json!({}))?;
            }
        }
        Ok(())
    })
}

/// Marks the files whose objects were applied (a pass that planned them ended with every work
/// applied and none deferred), the last good version of a broken file included.
pub fn mark_applied(
    store: &mut Store,
    desired: &Desired,
    unapplied: &mut Unapplied,
) -> crate::store::Result<()> {
    let now = now_ms();
    store.transaction(|tx| {
        for f in desired.files.iter().filter(|f| !f.stale || f.unapplied) {
            let path = f.path.to_string_lossy();
            if f.hash.is_some() && unapplied.0.get(path.as_ref()) == f.hash.as_ref() {
                unapplied.0.remove(path.as_ref());
            }
            let rec = tx.manifest_file(&path)?;
            // Only after the content changed since the last apply: no idle writes.
            if rec.as_ref().is_some_and(loaded_after_apply) {
                tx.record_manifest_applied(&path, now)?;
            }
        }
        Ok(())
    })
}

/// Fills in the report's file errors.
pub fn report_errors(report: &mut PassReport, desired: &Desired) {
    report.file_errors = desired.errors.clone();
}

impl Desired {
    /// The planner's view of the files (see [`crate::plan::desired`]'s contract).
    pub fn inputs(&self) -> Vec<crate::plan::FileInput> {
        use crate::plan::{FileInput, FileState};
        let mut out: Vec<FileInput> = self
            .files
            .iter()
            .map(|f| FileInput {
                path: f.path.clone(),
                // A last good version never applied is planned like a loaded one: frozen, its
                // containers would stay on whatever version ran before.
                state: if f.stale && !f.unapplied {
                    FileState::Failed {
                        error: f.error.clone().unwrap_or_default(),
                        last_good: f.objects.clone(),
                    }
                } else {
                    FileState::Loaded(f.objects.clone())
                },
            })
            .collect();
        out.extend(self.removed_files.iter().map(|p| FileInput {
            path: PathBuf::from(p),
            state: FileState::Deleted,
        }));
        out
    }
}
