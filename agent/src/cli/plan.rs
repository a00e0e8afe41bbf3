//! `agent plan [DIR] [--state-dir D] [-o text|json]`: what the agent would change to make the
//! host match the manifests in DIR, against the state recorded in D. DIR and D are resolved as by
//! every command ([`super::settings`]): without DIR, the manifest directory the agent reads
//! (`AGENT_MANIFESTS_DIR`, `manifests_dir` of the config file, /etc/agent.d).
//!
//! - DIR is read like the daemon reads it (the same intake, [`crate::manifest::source`]). A file that fails to load keeps its last good
//!   version (from the store) in force, as the daemon would; its problems are printed and the
//!   exit code is 1.
//! - The store is read without touching it: if `D/state.db` does not exist the recorded state
//!   is empty (nothing is created). Otherwise the database is opened read-only and copied into a
//!   private temporary directory with `VACUUM INTO` (a consistent snapshot even while the daemon
//!   writes, and no wait for the daemon's state-directory lock); the copy is read through the
//!   store's own API and deleted.
//! - A file the store knows in DIR that the listing no longer shows counts as deleted (the
//!   listing just succeeded), so the plan shows what the daemon does once it sees the deletion.
//!   Store-known files outside DIR are left alone.
//!
//! Exit codes: 0 no changes, 2 changes pending, 1 errors (invalid manifests, unreadable DIR or
//! store), 64 usage error. 2 means "changes pending" and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Outcome, OutputFormat};
use crate::manifest::{self, Manifest};
use crate::plan::{self, Actual, Desired, FileInput, FileState};
use crate::store::{self, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest directory [env: AGENT_MANIFESTS_DIR; default: `manifests_dir` of the config
    /// file, /etc/agent.d].
    pub dir: Option<PathBuf>,
    /// The state directory (read only), the socket and the config file.
    #[command(flatten)]
    pub client: super::settings::ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: super::OutputFormat,
}

pub fn run(args: Args) -> crate::Result<Outcome> {
    let settings = super::settings::resolve(
        args.client.config.as_deref(),
        args.client.socket.as_deref(),
        args.client.state_dir.as_deref(),
        args.dir.as_deref(),
    )?;
    let state_dir = settings.state_dir;
    let dir =
        std::fs::canonicalize(&settings.manifests_dir).map_err(|source| crate::Error::Io {
            context: format!("manifest directory {}", settings.manifests_dir.display()),
            source,
        })?;
    let mut loaded = manifest::load_paths(std::slice::from_ref(&dir))?;
    // The daemon's key, so that digests compare with the recorded ones (none yet: nothing
    // recorded uses a secret, any key will do).
    let key = manifest::source::secrets::host_key(&state_dir, false)
        .map_err(|source| crate::Error::Io {
            context: "the agent's secret key".into(),
            source,
        })?
        .unwrap_or_default();
    manifest::source::secrets::seal(&mut loaded, &key);
    let (actual, last_good) = read_state(&state_dir)?;

    let mut inputs =
        plan::inputs_from_loaded(&loaded, |p| last_good.get(p).cloned().unwrap_or_default());
    for path in last_good.keys() {
        let listed = loaded.files.iter().any(|f| &f.path == path);
        if !listed && path.parent() == Some(dir.as_path()) {
            inputs.push(FileInput {
                path: path.clone(),
                state: FileState::Deleted,
            });
        }
    }
    let desired = Desired::build(inputs, &actual.resolutions());
    let plan = plan::plan(&desired, &actual);

    let errors: Vec<&manifest::Diagnostic> = loaded.diagnostics().collect();
    match args.output {
        OutputFormat::Text => {
            print!("{}", plan::render::text(&plan));
            for d in &errors {
                eprintln!("error: {d}");
                if let Some(r) = &d.related {
                    eprintln!("    (see {r})");
                }
            }
        }
        OutputFormat::Json => println!("{}", plan::render::json(&plan, &errors)),
    }
    Ok(if !errors.is_empty() {
        Outcome::FAILED
    } else if plan.is_empty() {
        Outcome::OK
    } else {
        Outcome::PENDING
    })
}

type LastGood = BTreeMap<PathBuf, Vec<Manifest>>;

/// The recorded state and the last good manifests, or empty ones when there is no store.
fn read_state(state_dir: &Path) -> crate::Result<(Actual, LastGood)> {
    let db = state_dir.join(store::DB_FILE);
    if !db.exists() {
        return Ok((Actual::default(), LastGood::new()));
    }
    let snapshot = Snapshot::take(&db)?;
    let mut store = Store::open(&snapshot.dir)?;
    let actual = plan::store::actual_from_store(&mut store)?;
    let last_good = plan::store::last_good_from_store(&mut store)?;
    drop(store);
    Ok((actual, last_good))
}

/// A private copy of the state database, deleted on drop.
struct Snapshot {
    dir: PathBuf,
}

impl Snapshot {
    fn take(db: &Path) -> crate::Result<Snapshot> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("agent-plan-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| crate::Error::Io {
                context: format!("create {}", dir.display()),
                source,
            })?;
        let snapshot = Snapshot { dir };
        let open_err = |source| store::Error::Open {
            path: db.to_path_buf(),
            source,
        };
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(store::DEFAULT_BUSY_TIMEOUT)
            .map_err(open_err)?;
        let target = snapshot.dir.join(store::DB_FILE);
        conn.execute("VACUUM INTO ?1", [target.to_string_lossy().as_ref()])
            .map_err(open_err)?;
        Ok(snapshot)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
