//! Watching the manifest directory: a thread that turns inotify events into [`Hint`]s for the
//! [`Scanner`] and publishes each settled [`Snapshot`].
//!
//! Decisions:
//! - One inotify watch on the *directory* (notify's `RecommendedWatcher`), not one per file:
//!   editors and GitOps tools replace files by rename, which per-file watches lose. No debounce
//!   window: every event runs a scan at once (the events queued meanwhile are served by the same
//!   scan), and the scan itself decides what is complete ([`super::scan`]): a close after
//!   writing, a rename and an unlink are acted on at once; only a file modified and not closed
//!   waits for the settle check.
//! - Events are hints, never the truth: the scan compares keys and hashes, so a save that
//!   produced ten events, or a scan that raced a second batch of events, still ends in exactly one
//!   change. Opening or reading a file is no hint at all (the scan itself opens files: taking
//!   those as hints made an idle agent rescan several times a second). An overflow, a watch error
//!   or an event on the directory itself makes the next scan blind: every change then settles.
//! - [`Watcher::rescan`] (the periodic resync, `agent apply`) scans against the last snapshot:
//!   with nothing changed it reads nothing and waits for nothing. It also re-arms the watch if
//!   the directory itself was replaced or did not exist at start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

pub use super::scan::{Changes, Hint, Scanner, Snapshot, WatchTiming};

enum Msg {
    Hints(Vec<Hint>),
    /// Rescan now; the sender, if any, is told when nothing is pending any more.
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
        let armed = arm(dir, &tx);
        let mut scanner = Scanner::new(dir, timing);
        scanner.set_watching(armed.is_some());
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
            .spawn(move || watch_loop(scanner, armed, rx, event_tx, shared, on_scan))
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

    /// Rescans and waits until the snapshot is current (periodic resync, `agent apply`): at once
    /// when nothing changed; a file still being written is waited for (at most `max_settle`).
    /// Blocking: call it off the async runtime.
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

/// An armed watch and the (device, inode) of the directory it watches.
type Armed = (RecommendedWatcher, (u64, u64));

/// Arms an inotify watch on `dir`; `None` (logged) when it cannot.
fn arm(dir: &Path, tx: &mpsc::Sender<Msg>) -> Option<Armed> {
    let meta = std::fs::metadata(dir).ok()?;
    let tx = tx.clone();
    let root = dir.to_path_buf();
    let handler = move |res: notify::Result<Event>| {
        let hints = hints_of(&root, res);
        if !hints.is_empty() {
            let _ = tx.send(Msg::Hints(hints));
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a file watcher");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the manifest directory; the periodic resync will");
        return None;
    }
    Some((watcher, (meta.dev(), meta.ino())))
}

/// What one event says ([`Hint`]s by entry name). Opening and reading say nothing.
fn hints_of(dir: &Path, res: notify::Result<Event>) -> Vec<Hint> {
    let event = match res {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "watch error; the next scan settles every change");
            return vec![Hint::Blind];
        }
    };
    if event.need_rescan() {
        return vec![Hint::Blind];
    }
    if let EventKind::Access(mode) = event.kind
        && mode != AccessKind::Close(AccessMode::Write)
    {
        // Opening or reading (a scan opens the directory and every file it reads).
        return Vec::new();
    }
    if event.paths.iter().any(|p| p == dir) {
        // The directory itself: gone or moved means the watch is lost; anything else (a chmod)
        // only asks for a scan, which checks the directory's permissions again.
        return match event.kind {
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => vec![Hint::Blind],
            _ => vec![Hint::Touched(String::new())],
        };
    }
    let entries = event.paths.iter().filter_map(|p| {
        let name = p.file_name()?.to_str()?;
        (p.parent() == Some(dir)).then(|| (p.clone(), name.to_string()))
    });
    let hint = |(path, name): (PathBuf, String)| -> Option<Hint> {
        Some(match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Hint::Closed(name),
            EventKind::Access(_) => return None,
            EventKind::Create(_) => match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => Hint::Writing(name),
                _ => Hint::Touched(name),
            },
            EventKind::Modify(ModifyKind::Name(_)) => Hint::Renamed(name),
            EventKind::Modify(ModifyKind::Metadata(_)) => Hint::Touched(name),
            EventKind::Modify(_) => Hint::Writing(name),
            EventKind::Remove(_) => Hint::Deleted(name),
            EventKind::Any | EventKind::Other => Hint::Blind,
        })
    };
    entries.filter_map(hint).collect()
}

fn watch_loop(
    mut scanner: Scanner,
    mut armed: Option<Armed>,
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    shared: Arc<Mutex<Arc<Snapshot>>>,
    on_scan: impl Fn(&Changes),
) {
    let dir = scanner.dir().to_path_buf();
    let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
    let mut wake: Option<Instant> = None;
    loop {
        let first = match wake {
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let mut stop = false;
        let mut check_watch = false;
        // Drain what queued up meanwhile: one scan serves it all.
        let mut next = first;
        while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
            match m {
                Msg::Stop => stop = true,
                Msg::Rescan(w) => {
                    check_watch = true;
                    waiters.extend(w);
                }
                Msg::Hints(hints) => {
                    for h in hints {
                        check_watch |= h == Hint::Blind;
                        scanner.note(h);
                    }
                }
            }
        }
        if stop {
            break;
        }
        if check_watch {
            let current = std::fs::metadata(&dir).ok().map(|m| (m.dev(), m.ino()));
            if current.is_none() {
                armed = None;
            } else if current != armed.as_ref().map(|a| a.1) {
                tracing::info!(dir = %dir.display(), "(re)arming the watch on the manifest directory");
                armed = arm(&dir, &tx);
            }
            scanner.set_watching(armed.is_some());
        }
        let (changes, next_wake) = scanner.step();
        if !changes.is_empty() {
            tracing::debug!(?changes, "manifest files changed");
            *shared.lock().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(scanner.snapshot().clone());
        }
        on_scan(&changes);
        wake = next_wake;
        if wake.is_none() {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
