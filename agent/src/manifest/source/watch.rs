//! Watching the manifest directory.
//!
//! Decisions:
//! - One inotify watch on the *directory* (notify + notify-debouncer-full), not one per file:
//!   editors and GitOps tools replace files by rename, which per-file watches lose.
//! - Events are only a hint. Any event that can mean a change (not the `IN_OPEN` / read
//!   `Access` events notify also reports: the scan itself opens every file, and taking those as
//!   hints made an idle agent rescan the directory several times a second), an overflow (`Rescan`) or a watcher error makes the
//!   watcher thread re-list the directory ([`Scanner::scan`]) and compare every manifest file's
//!   content hash (SHA-256) with the previous scan. Only a difference fires a trigger, so a save
//!   that produced ten events, or a scan that raced a second batch of events for the same change,
//!   still ends in exactly one pass.
//! - A change is taken only once it has settled: the listing (names, sizes, mtimes, inodes) is
//!   taken twice, `settle` apart, until two agree (bounded by `max_settle`). This covers partial
//!   writes and vim's rename-then-write save, where the file is briefly missing.
//! - Files count by [`super::is_manifest_name`]. Top-level symlinks are followed, so a
//!   Kubernetes-style `x.yaml -> ..data/x.yaml` with an atomic `..data` swap is one change of
//!   every file at once.
//! - Each counted file is read by [`super::read_file`] (the permission rule of [`super::perms`]); a refused or unreadable file is
//!   kept in the snapshot with its error (it "failed to load", its objects stay as they were).
//! - The periodic resync calls [`Watcher::rescan`], which also re-arms the inotify watch if the
//!   directory itself was replaced or did not exist at start.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecursiveMode};

use super::list::{Listing, list};
use super::read::{ManifestFile, read_file_reusing};

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchTiming {
    /// notify-debouncer-full's debounce window.
    pub debounce: Duration,
    /// Interval between the two listings that must agree.
    pub settle: Duration,
    /// Longest wait for a directory to settle; after it the current content is taken.
    pub max_settle: Duration,
}

impl Default for WatchTiming {
    fn default() -> Self {
        WatchTiming {
            debounce: Duration::from_millis(200),
            settle: Duration::from_millis(150),
            max_settle: Duration::from_secs(10),
        }
    }
}

/// The manifest directory at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// By file name. While `dir_error` is set: the files of the last readable listing.
    pub files: BTreeMap<String, ManifestFile>,
    /// The directory itself could not be listed or was refused. Its files are then unknown, not
    /// gone: the reconciler keeps what it has.
    pub dir_error: Option<String>,
}

/// What changed between two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub dir_error_changed: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && !self.dir_error_changed
    }
}

/// Lists and reads a manifest directory, remembering the last result.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    timing: WatchTiming,
    last: Snapshot,
    parses: u64,
}

impl Scanner {
    pub fn new(dir: &Path, timing: WatchTiming) -> Scanner {
        Scanner {
            dir: dir.to_path_buf(),
            timing,
            last: Snapshot::default(),
            parses: 0,
        }
    }

    /// How many files were parsed so far (a file is parsed only when its path or content is new).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// The last snapshot taken.
    pub fn snapshot(&self) -> &Snapshot {
        &self.last
    }

    /// Waits until the directory settles, reads it, and returns what changed since the last scan.
    pub fn scan(&mut self) -> Changes {
        let mut next = self.read_settled();
        if next.dir_error.is_some() {
            // Unknown, not gone: keep the last known files.
            next.files = self.last.files.clone();
        }
        let changes = diff(&self.last, &next);
        self.last = next;
        changes
    }

    fn read_settled(&mut self) -> Snapshot {
        if let Err(e) = super::perms::check_dir(&self.dir) {
            return Snapshot {
                files: BTreeMap::new(),
                dir_error: Some(e.to_string()),
            };
        }
        let deadline = Instant::now() + self.timing.max_settle;
        let mut before = list(&self.dir);
        loop {
            std::thread::sleep(self.timing.settle);
            let after = list(&self.dir);
            let settled = same(&before, &after);
            let late = Instant::now() >= deadline;
            if settled || late {
                if !settled {
                    tracing::warn!(dir = %self.dir.display(), "manifest directory keeps changing; reading it as it is now");
                }
                let listing = match &after {
                    Ok(listing) => listing,
                    Err(e) => {
                        return Snapshot {
                            files: BTreeMap::new(),
                            dir_error: Some(format!("{}: {e}", self.dir.display())),
                        };
                    }
                };
                let mut files = BTreeMap::new();
                for name in listing.keys() {
                    let (file, parsed) =
                        read_file_reusing(&self.dir.join(name), self.last.files.get(name));
                    self.parses += u64::from(parsed);
                    files.insert(name.clone(), file);
                }
                // A change that began while the files were read (a symlink swap between two
                // reads) would leave a mix of old and new: read again once it settled.
                let check = list(&self.dir);
                if same(&after, &check) || late {
                    return Snapshot {
                        files,
                        dir_error: None,
                    };
                }
                before = check;
                continue;
            }
            before = after;
        }
    }
}

fn same(a: &std::io::Result<Listing>, b: &std::io::Result<Listing>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.kind() == b.kind(),
        _ => false,
    }
}

fn diff(old: &Snapshot, new: &Snapshot) -> Changes {
    let mut c = Changes {
        dir_error_changed: old.dir_error != new.dir_error,
        ..Changes::default()
    };
    // While the directory is unreadable its files are unknown: report no removals.
    if new.dir_error.is_some() {
        return c;
    }
    for (name, f) in &new.files {
        match old.files.get(name) {
            None => c.added.push(name.clone()),
            Some(o) if o.hash != f.hash || o.content.is_err() != f.content.is_err() => {
                c.changed.push(name.clone())
            }
            Some(o) if o.content != f.content => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    if old.dir_error.is_none() {
        c.removed = old
            .files
            .keys()
            .filter(|n| !new.files.contains_key(*n))
            .cloned()
            .collect();
    }
    c
}

enum Msg {
    Event,
    /// Rescan now; the sender, if any, is told when the scan is done.
    Rescan(Option<mpsc::Sender<()>>),
    Stop,
}

/// The watcher thread's handle. Dropping it stops the thread.
pub struct Watcher {
    tx: mpsc::Sender<Msg>,
    snapshot: Arc<Mutex<Arc<Snapshot>>>,
    scans: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Scans `dir` once (the returned watcher's [`Watcher::snapshot`] is ready at once) and starts
    /// a thread that calls `on_change` after every later scan that found a difference.
    pub fn spawn(
        dir: &Path,
        timing: WatchTiming,
        on_change: impl Fn(&Changes) + Send + 'static,
    ) -> Watcher {
        let (tx, rx) = mpsc::channel();
        // Armed before the first scan, so that nothing written after it can be missed.
        let armed = arm(dir, timing, &tx);
        let mut scanner = Scanner::new(dir, timing);
        scanner.scan();
        let snapshot = Arc::new(Mutex::new(Arc::new(scanner.snapshot().clone())));
        let shared = snapshot.clone();
        let event_tx = tx.clone();
        let scans = Arc::new(AtomicU64::new(1));
        let counter = scans.clone();
        let on_scan = move |changes: &Changes| {
            counter.fetch_add(1, Ordering::Relaxed);
            if !changes.is_empty() {
                on_change(changes);
            }
        };
        let thread = std::thread::Builder::new()
            .name("agent-watch".into())
            .spawn(move || watch_loop(scanner, armed, timing, rx, event_tx, shared, on_scan))
            .ok();
        if thread.is_none() {
            tracing::error!(
                "could not start the watcher thread; only the periodic resync will notice changes"
            );
        }
        Watcher {
            tx,
            snapshot,
            scans,
            thread,
        }
    }

    /// How many scans of the directory were made (the first at spawn included).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// The latest settled snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks for a rescan. Returns at once.
    pub fn rescan(&self) {
        let _ = self.tx.send(Msg::Rescan(None));
    }

    /// Rescans and waits until the scan is done (periodic resync, `agent apply`), so that the
    /// snapshot is current. Blocking: call it off the async runtime.
    pub fn rescan_and_wait(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Rescan(Some(tx))).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Debouncer = notify_debouncer_full::Debouncer<
    notify_debouncer_full::notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Arms an inotify watch on `dir`; `None` (logged) when it cannot.
fn arm(dir: &Path, timing: WatchTiming, tx: &mpsc::Sender<Msg>) -> Option<(Debouncer, (u64, u64))> {
    let meta = std::fs::metadata(dir).ok()?;
    let tx = Mutex::new(tx.clone());
    let handler = move |res: notify_debouncer_full::DebounceEventResult| {
        match &res {
            Err(errors) => tracing::debug!(?errors, "watch error; rescanning"),
            Ok(events) if !events.iter().any(|e| may_change(&e.event.kind)) => return,
            Ok(_) => {}
        }
        let _ = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Msg::Event);
    };
    let mut debouncer = match notify_debouncer_full::new_debouncer(
        timing.debounce,
        Some(timing.debounce / 2),
        handler,
    ) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a file watcher");
            return None;
        }
    };
    if let Err(e) = debouncer.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the manifest directory; the periodic resync will");
        return None;
    }
    Some((debouncer, (meta.dev(), meta.ino())))
}

/// Whether an event can mean that a file changed: everything but opening or reading a file
/// (a close after writing counts).
fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch_loop(
    mut scanner: Scanner,
    mut armed: Option<(Debouncer, (u64, u64))>,
    timing: WatchTiming,
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    shared: Arc<Mutex<Arc<Snapshot>>>,
    on_scan: impl Fn(&Changes),
) {
    let dir = scanner.dir.clone();
    while let Ok(msg) = rx.recv() {
        let mut rescan_requested = false;
        let mut stop = false;
        let mut waiters = Vec::new();
        // Drain what queued up meanwhile: one scan serves them all.
        let mut next = Some(msg);
        while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
            match m {
                Msg::Stop => stop = true,
                Msg::Rescan(w) => {
                    rescan_requested = true;
                    waiters.extend(w);
                }
                Msg::Event => {}
            }
        }
        if stop {
            break;
        }
        if rescan_requested {
            let current = std::fs::metadata(&dir).ok().map(|m| (m.dev(), m.ino()));
            if current.is_some() && current != armed.as_ref().map(|a| a.1) {
                tracing::info!(dir = %dir.display(), "(re)arming the watch on the manifest directory");
                armed = arm(&dir, timing, &tx);
            }
        }
        let changes = scanner.scan();
        if !changes.is_empty() {
            tracing::debug!(?changes, "manifest files changed");
            *shared.lock().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(scanner.snapshot().clone());
        }
        on_scan(&changes);
    }
    if let Some((debouncer, _)) = armed {
        debouncer.stop_nonblocking();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
