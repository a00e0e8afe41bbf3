//! Removing a volume: `agent volume rm` and `agent volume prune` (a user's request, see
//! [`crate::reconcile::request`]), and the plan's removal of a `reclaim: delete` volume whose
//! manifest went. One code path, journalled, so that a crash (kill -9, power loss) in the middle
//! leaves no half state.
//!
//! **Which volumes.** A named volume (`NAME`: the store's row and `<state>/volumes/NAME`, or such
//! a directory the store does not record) or an anonymous one (`<container>:<path>`, see
//! [`super::volumes`]).
//!
//! **Refused** (a user's removal; the plan removes only what no manifest declares, after its
//! users):
//! - a volume that any container uses: one the store records (running, stopped, failed, being
//!   replaced) whose config mounts it, or that a manifest declares with that mount; the error
//!   names them. An anonymous volume's user is its container, while the store records it or a
//!   manifest declares it.
//! - a named volume that a Volume manifest still declares, even unused: the next pass would create
//!   it again at once (empty), which is a data wipe nobody asked for by that name. The error names
//!   the manifest file: remove the Volume from it first (its data is then kept, unless it says
//!   `reclaim: delete`, and `agent volume rm` removes it). Docker removes only unused volumes too;
//!   it has no declared-but-unused state that comes back by itself.
//!
//! **Journal.** In one store transaction the check is made and a `remove-volume` intent
//! (object `volume/NAME`, payload `{"dir"}`) is committed. Then the volume's directory is
//! renamed into `<state>/volumes-trash/<intent id>` (one atomic rename: the volume is either
//! there whole or gone), its row deleted and the intent finished with a `volume.remove` event in
//! one transaction, and last the trash directory deleted. At start-up, [`recover`] settles an
//! intent left behind: when the volume is still unused and undeclared the removal is completed
//! (the directory moved to the trash if it was not yet, the row deleted); when something uses or
//! declares it now (a manifest added while the agent was down) it is rolled back (the directory
//! moved back from the trash). Trash directories no pending intent names are deleted (a crash
//! after the record, during the delete).

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::volumes::{anonymous_dir, anonymous_root};
use super::{Applied, Applier, ApplyError};
use crate::manifest::Manifest;
use crate::manifest::container::Mount;
use crate::plan::EffectiveContainer;
use crate::plan::effective::MountSource;
use crate::reconcile::pass::{event, now_ms};
use crate::store::{NewIntent, Store, Tx};

/// Intent kind of a volume removal (object `volume/NAME`, payload `{"dir": path}`).
pub const INTENT_REMOVE_VOLUME: &str = "remove-volume";
/// Under the state directory: volume directories on their way out, one per intent id.
pub const TRASH_DIR: &str = "volumes-trash";

/// A volume named by a user or the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRef {
    Named(String),
    Anonymous { container: String, target: PathBuf },
}

impl VolumeRef {
    /// Parses `NAME` or `<container>:<absolute path>`; refuses anything that could name a path
    /// outside the volume directories.
    pub fn parse(name: &str) -> Result<VolumeRef, String> {
        let bad =
            |why: &str| format!("{name:?} is not a volume name ({why}; see `agent volume ls`)");
        let plain =
            |s: &str| !s.is_empty() && !s.contains('/') && !s.starts_with('.') && !s.contains('\0');
        match name.split_once(':') {
            None if plain(name) => Ok(VolumeRef::Named(name.to_string())),
            None => Err(bad("a name has no '/' and does not start with '.'")),
            Some((c, t)) => {
                let target = Path::new(t);
                let clean = target.is_absolute()
                    && target.components().count() > 1
                    && target
                        .components()
                        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
                if !plain(c) || !clean {
                    return Err(bad(
                        "an anonymous volume is <container>:<absolute path in the container>",
                    ));
                }
                Ok(VolumeRef::Anonymous {
                    container: c.to_string(),
                    target: crate::plan::effective::normalize_path(target),
                })
            }
        }
    }

    /// The directory that holds the volume (its `_data` and marker).
    pub fn dir(&self, state: &Path) -> PathBuf {
        match self {
            VolumeRef::Named(n) => state.join("volumes").join(n),
            VolumeRef::Anonymous { container, target } => {
                let data = anonymous_dir(state, container, target);
                data.parent().map(Path::to_path_buf).unwrap_or(data)
            }
        }
    }
}

/// What keeps a volume.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Containers that use it (the store's, and those manifests declare with it).
    pub users: Vec<String>,
    /// The manifest file that declares it (a named volume's Volume manifest).
    pub declared_in: Option<String>,
}

impl Usage {
    /// Why it may not be removed, if it may not.
    pub fn refusal(&self, name: &str) -> Option<String> {
        if !self.users.is_empty() {
            let (noun, verb) = if self.users.len() == 1 {
                ("container", "uses")
            } else {
                ("containers", "use")
            };
            return Some(format!(
                "volume {name} is in use: {noun} {} {verb} it (running or not); remove {} from \
                 its manifest first",
                self.users.join(", "),
                if self.users.len() == 1 { "it" } else { "them" },
            ));
        }
        self.declared_in.as_ref().map(|f| {
            format!(
                "volume {name} is declared by {f}: the agent would create it again (empty); \
                 remove the Volume from that file first, then `agent volume rm {name}`"
            )
        })
    }
}

/// Who uses or declares `v`, from the store's containers and recorded manifest files.
pub fn usage(tx: &Tx<'_>, v: &VolumeRef) -> crate::store::Result<Usage> {
    let mut out = Usage::default();
    for r in tx.containers()? {
        let uses = match v {
            VolumeRef::Named(n) => serde_json::from_value::<EffectiveContainer>(r.config.clone())
                .is_ok_and(|c| {
                    c.fixed
                        .mounts
                        .iter()
                        .any(|m| matches!(&m.source, MountSource::Volume(x) if x == n))
                }),
            VolumeRef::Anonymous { container, .. } => r.name == *container,
        };
        if uses {
            out.users.push(r.name);
        }
    }
    for f in tx.manifest_files()? {
        let objects: Vec<Manifest> = serde_json::from_value(f.objects).unwrap_or_default();
        for o in objects {
            match (o, v) {
                (Manifest::Volume(m), VolumeRef::Named(n)) if m.metadata.name == *n => {
                    out.declared_in = Some(f.path.clone());
                }
                (Manifest::Container(c), VolumeRef::Named(n))
                    if c.spec
                        .volumes
                        .iter()
                        .any(|m| matches!(m, Mount::Volume { volume, .. } if volume == n)) =>
                {
                    out.users.push(c.metadata.name);
                }
                (Manifest::Container(c), VolumeRef::Anonymous { container, .. })
                    if c.metadata.name == *container =>
                {
                    out.users.push(c.metadata.name);
                }
                _ => {}
            }
        }
    }
    out.users.sort();
    out.users.dedup();
    Ok(out)
}

/// Why a removal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RmError {
    #[error("no such volume: {0} (see `agent volume ls`)")]
    NotFound(String),
    /// In use, declared, or not a volume name: the text says which and what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Failed(#[from] ApplyError),
}

impl From<crate::store::Error> for RmError {
    fn from(e: crate::store::Error) -> RmError {
        RmError::Failed(e.into())
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The check alone (no change): what a user's removal of `name` would refuse.
pub fn check(store: &Mutex<Store>, state: &Path, name: &str) -> Result<(), RmError> {
    let v = VolumeRef::parse(name).map_err(RmError::Refused)?;
    lock(store).transaction(|tx| check_in(tx, state, &v, name))
}

fn check_in(tx: &Tx<'_>, state: &Path, v: &VolumeRef, name: &str) -> Result<(), RmError> {
    let recorded = match v {
        VolumeRef::Named(n) => tx.volume(n)?.is_some(),
        VolumeRef::Anonymous { .. } => false,
    };
    if !recorded && !exists(&v.dir(state)) {
        return Err(RmError::NotFound(name.to_string()));
    }
    match usage(tx, v)?.refusal(name) {
        Some(why) => Err(RmError::Refused(why)),
        None => Ok(()),
    }
}

/// Removes volume `name` (see the module docs); returns the bytes it held. `user`: a user's
/// request (checked, and its event says so); otherwise the plan's removal (not checked: the
/// plan removes only undeclared volumes, after their users).
pub fn remove(store: &Mutex<Store>, state: &Path, name: &str, user: bool) -> Result<u64, RmError> {
    let v = VolumeRef::parse(name).map_err(RmError::Refused)?;
    let dir = v.dir(state);
    let intent = NewIntent {
        kind: INTENT_REMOVE_VOLUME.into(),
        object: format!("volume/{name}"),
        payload: json!({"dir": dir.to_string_lossy()}),
    };
    let id = lock(store).transaction(|tx| {
        if user {
            check_in(tx, state, &v, name)?;
        }
        Ok::<_, RmError>(tx.begin_intent(&intent, now_ms())?)
    })?;
    let reason = if user {
        "agent volume rm"
    } else {
        "reclaim: delete, its manifest is gone"
    };
    Ok(complete(store, state, &v, id, &dir, reason)?)
}

fn trash_of(state: &Path, intent: i64) -> PathBuf {
    state.join(TRASH_DIR).join(intent.to_string())
}

fn io(what: &str, p: &Path, e: std::io::Error) -> ApplyError {
    ApplyError::Other(format!("{what} {}: {e}", p.display()))
}

/// The removal after its intent: directory to the trash, row and intent gone with an event,
/// trash deleted. Each step is idempotent (recovery runs it again).
fn complete(
    store: &Mutex<Store>,
    state: &Path,
    v: &VolumeRef,
    intent: i64,
    dir: &Path,
    reason: &str,
) -> Result<u64, ApplyError> {
    let trash = trash_of(state, intent);
    let bytes = if exists(dir) {
        let bytes = crate::api::disk::du(dir);
        let parent = state.join(TRASH_DIR);
        std::fs::create_dir_all(&parent).map_err(|e| io("creating", &parent, e))?;
        std::fs::rename(dir, &trash).map_err(|e| io("moving to the trash", dir, e))?;
        bytes
    } else {
        crate::api::disk::du(&trash)
    };
    super::debug_pause("remove-volume", &v.to_string());
    let name = v.to_string();
    lock(store).transaction(|tx| {
        if let VolumeRef::Named(n) = v {
            tx.delete_volume(n)?;
        }
        tx.finish_intent(intent)?;
        event(
            tx,
            "volume.remove",
            &format!("volume/{name}"),
            json!({"reason": reason, "bytes": bytes}),
        )
    })?;
    if let VolumeRef::Anonymous { container, .. } = v {
        // The container's directory goes with its last volume (not empty: kept).
        let _ = std::fs::remove_dir(anonymous_root(state, container));
    }
    if let Err(e) = std::fs::remove_dir_all(&trash)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        // Recorded removed; the next start deletes what is left.
        tracing::warn!(volume = %name, path = %trash.display(), error = %e, "deleting a removed volume's data");
    }
    Ok(bytes)
}

impl std::fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeRef::Named(n) => f.write_str(n),
            VolumeRef::Anonymous { container, target } => {
                write!(f, "{container}:{}", target.display())
            }
        }
    }
}

/// Settles the volume removals a crash left (see the module docs) and deletes trash no intent
/// names. Returns what it did, and what failed, one line each.
pub fn recover(store: &Mutex<Store>, state: &Path) -> (Vec<String>, Vec<String>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let pending = match lock(store).transaction(|tx| tx.pending_intents()) {
        Ok(p) => p,
        Err(e) => return (done, vec![format!("reading pending intents: {e}")]),
    };
    let mut kept = Vec::new();
    for i in pending
        .into_iter()
        .filter(|i| i.kind == INTENT_REMOVE_VOLUME)
    {
        let Some(name) = i.object.strip_prefix("volume/") else {
            continue;
        };
        let r = settle(store, state, i.id, name);
        match r {
            Ok(line) => {
                tracing::info!(volume = name, "{line}");
                done.push(line);
            }
            Err(e) => {
                kept.push(i.id.to_string());
                let line = format!("interrupted removal of volume {name} not settled: {e}");
                tracing::warn!("{line}");
                failed.push(line);
            }
        }
    }
    let trash = state.join(TRASH_DIR);
    for e in std::fs::read_dir(&trash).into_iter().flatten().flatten() {
        if kept.contains(&e.file_name().to_string_lossy().into_owned()) {
            continue;
        }
        if let Err(err) = std::fs::remove_dir_all(e.path()) {
            failed.push(format!("deleting {}: {err}", e.path().display()));
        }
    }
    (done, failed)
}

fn settle(store: &Mutex<Store>, state: &Path, intent: i64, name: &str) -> Result<String, RmError> {
    let v = VolumeRef::parse(name).map_err(RmError::Refused)?;
    let dir = v.dir(state);
    let trash = trash_of(state, intent);
    let now = lock(store).transaction(|tx| usage(tx, &v))?;
    if let Some(why) = now.refusal(name) {
        // Something uses or declares it now: undo.
        if !exists(&dir) && exists(&trash) {
            std::fs::rename(&trash, &dir).map_err(|e| io("moving back", &trash, e))?;
        }
        lock(store).transaction(|tx| {
            tx.finish_intent(intent)?;
            event(
                tx,
                "volume.remove-rolled-back",
                &format!("volume/{name}"),
                json!({"reason": why}),
            )
        })?;
        return Ok(format!(
            "interrupted removal of volume {name} rolled back: {why}"
        ));
    }
    let bytes = complete(
        store,
        state,
        &v,
        intent,
        &dir,
        "interrupted removal completed",
    )?;
    Ok(format!(
        "interrupted removal of volume {name} completed ({bytes} bytes)"
    ))
}

impl Applier {
    /// A user's `agent volume rm` / `prune` of one volume, as a work. A refusal (in use,
    /// declared, gone meanwhile) is not a failure of the agent: it is answered as "unchanged"
    /// with the reason, which the request turns into the user's error.
    pub(super) fn remove_volume_by_user(
        &self,
        store: &Mutex<Store>,
        name: &str,
    ) -> Result<Applied, ApplyError> {
        match remove(store, &self.state_dir, name, true) {
            Ok(bytes) => Ok(Applied::from(format!(
                "removed volume {name} ({bytes} bytes)"
            ))),
            Err(e @ (RmError::NotFound(_) | RmError::Refused(_))) => {
                Ok(Applied::unchanged(e.to_string()))
            }
            Err(RmError::Failed(e)) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_and_paths_refused() {
        assert_eq!(
            VolumeRef::parse("data"),
            Ok(VolumeRef::Named("data".into()))
        );
        assert_eq!(
            VolumeRef::parse("db:/var/lib/mysql/"),
            Ok(VolumeRef::Anonymous {
                container: "db".into(),
                target: "/var/lib/mysql".into()
            })
        );
        for bad in [
            "",
            "..",
            ".x",
            "a/b",
            "db:rel",
            "db:/",
            "db:/a/../b",
            "../x:/a",
            ":/a",
        ] {
            assert!(VolumeRef::parse(bad).is_err(), "{bad}");
        }
        let s = Path::new("/s");
        assert_eq!(
            VolumeRef::parse("data").unwrap().dir(s),
            Path::new("/s/volumes/data")
        );
        assert_eq!(
            VolumeRef::parse("db:/var/lib").unwrap().dir(s),
            Path::new("/s/anonymous-volumes/db/var%2Flib")
        );
    }

    #[test]
    fn refusal_names_users_then_the_file() {
        let u = Usage {
            users: vec!["a".into(), "b".into()],
            declared_in: Some("/etc/agent.d/x.yaml".into()),
        };
        let why = u.refusal("v").unwrap();
        assert!(why.contains("containers a, b use it"), "{why}");
        let u = Usage {
            users: vec![],
            declared_in: Some("/etc/agent.d/x.yaml".into()),
        };
        assert!(u.refusal("v").unwrap().contains("/etc/agent.d/x.yaml"));
        assert_eq!(Usage::default().refusal("v"), None);
    }

    #[test]
    fn remove_and_recover_are_journalled() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path();
        let store = Mutex::new(Store::open_in_memory().unwrap());
        let rec = |n: &str| crate::store::VolumeRecord {
            name: n.into(),
            driver_path: state
                .join("volumes")
                .join(n)
                .join("_data")
                .to_string_lossy()
                .into(),
            reclaim: crate::store::Reclaim::Keep,
            labels: Default::default(),
            created_at: 0,
        };
        for n in ["a", "b"] {
            std::fs::create_dir_all(state.join("volumes").join(n).join("_data")).unwrap();
            std::fs::write(state.join("volumes").join(n).join("_data/f"), b"x").unwrap();
            lock(&store)
                .transaction(|tx| tx.upsert_volume(&rec(n)))
                .unwrap();
        }
        // An unused one goes, directory and row.
        remove(&store, state, "a", true).unwrap();
        assert!(!state.join("volumes/a").exists());
        assert!(
            lock(&store)
                .transaction(|tx| tx.volume("a"))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            remove(&store, state, "a", true),
            Err(RmError::NotFound(_))
        ));
        // A crash after the intent and the move: recovery completes it.
        let id = lock(&store)
            .transaction(|tx| {
                tx.begin_intent(
                    &NewIntent {
                        kind: INTENT_REMOVE_VOLUME.into(),
                        object: "volume/b".into(),
                        payload: json!({}),
                    },
                    0,
                )
            })
            .unwrap();
        std::fs::create_dir_all(state.join(TRASH_DIR)).unwrap();
        std::fs::rename(state.join("volumes/b"), trash_of(state, id)).unwrap();
        std::fs::create_dir_all(state.join(TRASH_DIR).join("999")).unwrap();
        let (done, failed) = recover(&store, state);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(
            lock(&store)
                .transaction(|tx| tx.volume("b"))
                .unwrap()
                .is_none()
        );
        assert!(
            lock(&store)
                .transaction(|tx| tx.pending_intents())
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            std::fs::read_dir(state.join(TRASH_DIR)).unwrap().count(),
            0,
            "trash emptied"
        );
    }
}
