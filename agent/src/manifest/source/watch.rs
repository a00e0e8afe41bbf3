//! Watching the manifest directory: a thread that turns inotify events into [`Hint`]s for the
//! [`Scanner`] and publishes each settled [`Snapshot`].
//!
//! Decisions:
//! - One inotify watch on the *directory*, not one per file: editors and GitOps tools replace
//!   files by rename, which per-file watches lose. The thread owns the inotify descriptor itself
//!   (no notify-rs thread in between) and waits in `poll(2)` for it or for a request: no tick,
//!   so an idle agent's watcher never wakes.
//! - No debounce window: every batch of events runs a scan at once, and the scan itself decides
//!   what is complete ([`super::scan`]): a close after writing, a rename and an unlink are acted on
//!   at once; only a file modified and not closed waits for the settle check.
//! - Events are hints, never the truth: the scan compares keys and hashes, so a save that
//!   produced ten events, or a scan that raced a second batch of events, still ends in exactly one
//!   change. Only what can change content is watched (create, modify, close-after-write, moves,
//!   delete, attributes): opening or reading a file is no event at all, so the scan's own reads
//!   never wake the watcher.
//! - Events that arrive while a scan reads files are read before its result is taken: the kernel
//!   queues a write's event when the write happens, so a file read half-way through a rewrite (a
//!   truncation after the rename that was the hint) has its event queued by the time the read is
//!   done, and the scan takes nothing and looks again ([`Scanner::step_with`]).
//! - An overflow, a lost watch or an event on the directory itself (moved, deleted) makes the
//!   next scan blind: every change then settles. [`Watcher::rescan`] (the periodic resync,
//!   `agent apply`) scans against the last snapshot: with nothing changed it reads nothing and
//!   waits for nothing. It also re-arms the watch if the directory itself was replaced or did not
//!   exist at start.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub use super::scan::{Changes, Hint, Scanner, Snapshot, WatchTiming};

enum Msg {
    /// Rescan now; the sender, if any, is told when nothing is pending any more.
    Rescan(Option<mpsc::Sender<()>>),
    Stop,
}

/// The watcher thread's handle. Dropping it stops the thread.
pub struct Watcher {
    tx: mpsc::Sender<Msg>,
    /// Wakes the thread's `poll` after a message was sent.
    wake: Option<UnixDatagram>,
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
        let armed = DirWatch::arm(dir);
        let mut scanner = Scanner::new(dir, timing);
        scanner.set_watching(armed.is_some());
        scanner.scan();
        let snapshot = Arc::new(Mutex::new(Arc::new(scanner.snapshot().clone())));
        let shared = snapshot.clone();
        let scans = Arc::new(AtomicU64::new(1));
        let counter = scans.clone();
        let on_scan = move |changes: &Changes| {
            counter.fetch_add(1, Ordering::Relaxed);
            if !changes.is_empty() {
                on_change(changes);
            }
        };
        let (wake, thread) = match wake_pair() {
            Ok((wake, woken)) => {
                let thread = std::thread::Builder::new()
                    .name("agent-watch".into())
                    .spawn(move || watch_loop(scanner, armed, rx, woken, shared, on_scan))
                    .ok();
                (Some(wake), thread)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot make the watcher's wake-up socket");
                (None, None)
            }
        };
        if thread.is_none() {
            tracing::error!(
                "could not start the watcher thread; only the periodic resync will notice changes"
            );
        }
        Watcher {
            tx,
            wake,
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
        self.send(Msg::Rescan(None));
    }

    /// Rescans and waits until the snapshot is current (periodic resync, `agent apply`): at once
    /// when nothing changed; a file still being written is waited for (at most `max_settle`).
    /// Blocking: call it off the async runtime.
    pub fn rescan_and_wait(&self) {
        let (tx, rx) = mpsc::channel();
        if self.thread.is_some() && self.send(Msg::Rescan(Some(tx))) {
            let _ = rx.recv();
        }
    }

    fn send(&self, m: Msg) -> bool {
        if self.tx.send(m).is_err() {
            return false;
        }
        // A full socket buffer means a wake-up is pending already.
        if let Some(w) = &self.wake {
            let _ = w.send(&[1]);
        }
        true
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connected pair of non-blocking datagram sockets: the handle writes a byte to the first
/// after each message, the thread polls the second.
fn wake_pair() -> std::io::Result<(UnixDatagram, UnixDatagram)> {
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// An armed inotify watch on the directory, and the directory's (device, inode).
struct DirWatch {
    inotify: Inotify,
    id: (u64, u64),
}

impl DirWatch {
    /// What can change a manifest's content or existence, and the directory's own fate. Not
    /// opens and reads (the scan's own reads would wake the watcher).
    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
    }

    /// Arms a watch on `dir`; `None` (logged) when it cannot.
    fn arm(dir: &Path) -> Option<DirWatch> {
        let meta = std::fs::metadata(dir).ok()?;
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a file watcher (inotify)");
                return None;
            }
        };
        if let Err(e) = inotify.watches().add(dir, Self::mask()) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the manifest directory; the periodic resync will");
            return None;
        }
        Some(DirWatch {
            inotify,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The hints of every event queued now (never blocks). An unreadable queue is a lost watch:
    /// [`Hint::Blind`].
    fn read(&mut self, dir: &Path, buf: &mut [u8]) -> Vec<Hint> {
        let mut hints = Vec::new();
        loop {
            match self.inotify.read_events(buf) {
                Ok(events) => {
                    for e in events {
                        hints.extend(hint_of(dir, e.mask, e.name));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return hints,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading the watch failed; the next scan settles every change");
                    hints.push(Hint::Blind);
                    return hints;
                }
            }
        }
    }
}

/// What one event says about an entry of `dir`. Events on the directory itself: moved or deleted
/// (or the watch dropped, or the queue overflowed) means events may be lost; a change of its
/// attributes only asks for a scan, which checks its permissions again.
fn hint_of(dir: &Path, mask: EventMask, name: Option<&OsStr>) -> Option<Hint> {
    if mask.intersects(
        EventMask::Q_OVERFLOW
            | EventMask::IGNORED
            | EventMask::DELETE_SELF
            | EventMask::MOVE_SELF
            | EventMask::UNMOUNT,
    ) {
        return Some(Hint::Blind);
    }
    let Some(name) = name else {
        return Some(Hint::Touched(String::new()));
    };
    // A name that is not UTF-8 is no manifest's.
    let name = name.to_str()?.to_string();
    Some(if mask.contains(EventMask::CLOSE_WRITE) {
        Hint::Closed(name)
    } else if mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO) {
        Hint::Renamed(name)
    } else if mask.contains(EventMask::DELETE) {
        Hint::Deleted(name)
    } else if mask.contains(EventMask::CREATE) {
        // A new regular file is being written; a new symlink or directory is complete.
        match std::fs::symlink_metadata(dir.join(&name)) {
            Ok(m) if m.is_file() => Hint::Writing(name),
            _ => Hint::Touched(name),
        }
    } else if mask.contains(EventMask::MODIFY) {
        Hint::Writing(name)
    } else if mask.contains(EventMask::ATTRIB) {
        Hint::Touched(name)
    } else {
        return None;
    })
}

/// How long `poll` may sleep until `at` (rounded up to whole milliseconds; `None`: forever).
fn poll_timeout(at: Option<Instant>) -> PollTimeout {
    let Some(at) = at else {
        return PollTimeout::NONE;
    };
    let left = at.saturating_duration_since(Instant::now());
    let ms = left.as_micros().div_ceil(1000).min(60_000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn watch_loop(
    mut scanner: Scanner,
    mut armed: Option<DirWatch>,
    rx: mpsc::Receiver<Msg>,
    woken: UnixDatagram,
    shared: Arc<Mutex<Arc<Snapshot>>>,
    on_scan: impl Fn(&Changes),
) {
    let dir = scanner.dir().to_path_buf();
    let mut buf = vec![0u8; 64 * 1024];
    let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
    let mut wake: Option<Instant> = None;
    // Whether the last step asked to look again at once (events arrived while it read).
    let mut again = false;
    // The watch may be lost (seen while a scan read): check it in the next round.
    let mut recheck = false;
    loop {
        if !again {
            let timeout = poll_timeout(wake);
            let mut fds = vec![PollFd::new(woken.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = &armed {
                fds.push(PollFd::new(w.inotify.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the manifest watcher cannot wait for events; only the periodic resync will notice changes");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        let mut byte = [0u8; 64];
        while woken.recv(&mut byte).is_ok() {}
        let mut stop = false;
        let mut check_watch = std::mem::take(&mut recheck);
        loop {
            match rx.try_recv() {
                Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    stop = true;
                    break;
                }
                Ok(Msg::Rescan(w)) => {
                    check_watch = true;
                    waiters.extend(w);
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if stop {
            break;
        }
        if let Some(w) = &mut armed {
            for h in w.read(&dir, &mut buf) {
                check_watch |= h == Hint::Blind;
                scanner.note(h);
            }
        }
        if check_watch {
            let current = std::fs::metadata(&dir).ok().map(|m| (m.dev(), m.ino()));
            if current.is_none() {
                armed = None;
            } else if current != armed.as_ref().map(|a| a.id) {
                tracing::info!(dir = %dir.display(), "(re)arming the watch on the manifest directory");
                armed = DirWatch::arm(&dir);
            }
            scanner.set_watching(armed.is_some());
        }
        // Events that arrive while the scan reads files are read before its result is taken.
        let mut lost = false;
        let (changes, next_wake) = {
            let mut late = || match &mut armed {
                Some(w) => {
                    let hints = w.read(&dir, &mut buf);
                    lost |= hints.contains(&Hint::Blind);
                    hints
                }
                None => Vec::new(),
            };
            scanner.step_with(&mut late)
        };
        if lost {
            scanner.note(Hint::Blind);
            recheck = true;
        }
        if !changes.is_empty() {
            tracing::debug!(?changes, "manifest files changed");
            *shared.lock().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(scanner.snapshot().clone());
        }
        on_scan(&changes);
        again = recheck || next_wake.is_some_and(|at| at <= Instant::now());
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
