//! Scanning the manifest directory: which files changed since the last snapshot, read only when
//! their content may be new, taken only once they are complete.
//!
//! Decisions:
//! - A scan lists the directory with each file's [`FileKey`] (metadata after following
//!   symlinks, and the owner and mode of the directory really holding it). A file whose key is
//!   the one it had when last read, and that had no event since, is not read again: a rescan with
//!   nothing changed costs one listing, no read, no parse and no wait.
//! - A file that may be new is read, hashed, and parsed only when path or hash differ from the
//!   last snapshot (the parse cache, [`super::read`]). Only a difference in content is a change,
//!   so a touch, a rewrite of the same bytes or a scan that raced a second batch of events ends
//!   in no change.
//! - When is a file complete? The watcher's events say ([`Hint`]): a file closed after writing,
//!   renamed into place, or behind a symlink that was swapped (a rename of a non-manifest entry
//!   such as `..data`) is taken at once; a file whose key changed without any such event (its
//!   event still on the way, or a write through a symlink into an unwatched directory) waits
//!   for its event or the settle check; a file modified
//!   (or created) and not closed since is still growing and is taken once it is closed, or once
//!   its key stayed the same for `settle` (a writer that keeps the file open); a name that was
//!   unlinked is gone at once. Without events (no watch yet, a re-armed watch, an inotify
//!   overflow, the first scan) every change waits for that settle check.
//! - A name that disappeared without an unlink (renamed away, as vim and emacs do with the old
//!   file before writing the new one) is taken as removed only once it stayed absent for
//!   `settle`: removal is the one change that deletes containers, and an editor's save must not
//!   look like one.
//! - A file taken at once after a close-after-write that fails to parse is held for one settle
//!   check: a writer that saves in several opens (`echo >>`, a copy in chunks) is usually
//!   mid-way, and its next close takes the file again at once. A file that stays broken is taken
//!   (and reported) after `settle`. (A file renamed into place or behind a swapped symlink is
//!   complete by construction and never held.)
//! - A file whose key changed while it was read (a `..data` swap between the listing and the
//!   read) is not taken; it is read again once it settled, so a snapshot never mixes two
//!   generations.
//! - Each counted file is read by [`super::read_file`] (the permission rule of [`super::perms`]);
//!   a refused or unreadable file is kept in the snapshot with its error (it "failed to load",
//!   its objects stay as they were).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::list::{FileKey, Listing, is_manifest_name, list};
use super::perms;
use super::read::{ManifestFile, read_file_reusing};

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchTiming {
    /// How long a file still being written (or a name renamed away, or a file that fails to
    /// parse right after a write) must stay unchanged before it is taken.
    pub settle: Duration,
    /// Longest wait for a file to settle; after it the current content is taken.
    pub max_settle: Duration,
}

impl Default for WatchTiming {
    fn default() -> Self {
        WatchTiming {
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

/// What an event says about a directory entry (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Created or written to: may still be growing until it is closed.
    Writing(String),
    /// Closed after writing: complete as it is now, unless the writer comes back (a file that
    /// fails to parse then waits for one settle check).
    Closed(String),
    /// Renamed (into place or away): complete as it is now.
    Renamed(String),
    /// Something else changed (metadata, a symlink or directory created): look again.
    Touched(String),
    /// Unlinked.
    Deleted(String),
    /// Events may have been missed (overflow, watch error, the directory itself replaced).
    Blind,
}

/// A name waiting to be taken.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// What was seen last: `None` absent, `Some(key)` listed with that key.
    seen: Option<Option<FileKey>>,
    /// Since when `seen` has not changed.
    since: Instant,
    /// When the wait began (bounded by `max_settle`).
    first: Instant,
    /// Wait for the settle check even without a write in progress (a fresh file that failed
    /// to parse, a file that changed while it was read).
    hold: bool,
}

/// Lists and reads a manifest directory, remembering the last result.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    timing: WatchTiming,
    last: Snapshot,
    /// The key each file of `last` had when it was read.
    read_keys: BTreeMap<String, Option<FileKey>>,
    pending: BTreeMap<String, Pending>,
    /// Names with an event since the last scan: read even if the key looks the same.
    touched: BTreeSet<String>,
    /// Names modified or created and not closed since.
    writing: BTreeSet<String>,
    /// Names unlinked since the last scan.
    deleted: BTreeSet<String>,
    /// Names closed after writing since the last scan.
    closed: BTreeSet<String>,
    /// Something other than a manifest was renamed or created since the last scan (a `..data`
    /// swap): manifests changed without an event of their own are complete.
    indirect: bool,
    /// Since when successive listings disagree (bounded by `max_settle`).
    unstable_since: Option<Instant>,
    /// Events are complete (a watch is armed); set by the watcher.
    watching: bool,
    /// Events may have been missed: every change settles until a scan leaves nothing pending.
    blind: bool,
    parses: u64,
}

impl Scanner {
    /// A scanner of `dir` that has seen nothing yet (its first scan settles every file).
    pub fn new(dir: &Path, timing: WatchTiming) -> Scanner {
        Scanner {
            dir: dir.to_path_buf(),
            timing,
            last: Snapshot::default(),
            read_keys: BTreeMap::new(),
            pending: BTreeMap::new(),
            touched: BTreeSet::new(),
            writing: BTreeSet::new(),
            deleted: BTreeSet::new(),
            closed: BTreeSet::new(),
            indirect: false,
            unstable_since: None,
            watching: false,
            blind: true,
            parses: 0,
        }
    }

    /// The directory scanned.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last snapshot taken.
    pub fn snapshot(&self) -> &Snapshot {
        &self.last
    }

    /// How many files were parsed so far (a file is parsed only when its path or content is new).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// Tells whether a watch is armed (events are complete); without one every change settles.
    pub fn set_watching(&mut self, watching: bool) {
        if watching && !self.watching {
            // Events before the watch was armed were missed.
            self.blind = true;
        }
        self.watching = watching;
    }

    /// Takes in what an event says.
    pub fn note(&mut self, hint: Hint) {
        match hint {
            Hint::Writing(name) => {
                self.writing.insert(name.clone());
                self.touched.insert(name);
            }
            Hint::Closed(name) => {
                self.closed.insert(name.clone());
                self.complete(name);
            }
            Hint::Renamed(name) => {
                self.note_indirect(&name);
                self.complete(name);
            }
            Hint::Touched(name) => {
                self.note_indirect(&name);
                self.touched.insert(name);
            }
            Hint::Deleted(name) => {
                self.writing.remove(&name);
                self.deleted.insert(name.clone());
                self.touched.insert(name);
            }
            Hint::Blind => self.blind = true,
        }
    }

    /// A rename or a new symlink or directory that is not a manifest (Kubernetes' `..data`) can
    /// change what the manifests' symlinks point at, without an event on their names.
    fn note_indirect(&mut self, name: &str) {
        if !is_manifest_name(name) {
            self.indirect = true;
        }
    }

    /// `name` is complete as it is now: no write in progress, no hold.
    fn complete(&mut self, name: String) {
        self.writing.remove(&name);
        if let Some(p) = self.pending.get_mut(&name) {
            p.hold = false;
        }
        self.touched.insert(name);
    }

    /// Waits until nothing is pending, reads what changed, and returns what changed since the
    /// last scan. Blocking (it sleeps through settle checks).
    pub fn scan(&mut self) -> Changes {
        let before = self.last.clone();
        while let Some(at) = self.step_inner(&mut Vec::new) {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        diff(&before, &self.last)
    }

    /// One scan without waiting: takes what is complete into the snapshot, returns what changed
    /// and when to scan again for what is still pending (`None`: nothing is).
    pub fn step(&mut self) -> (Changes, Option<Instant>) {
        self.step_with(&mut Vec::new)
    }

    /// [`Scanner::step`] for a watcher: `late()` returns the events that arrived since the
    /// hints were noted. It is called after the files were read; when one of them is about a
    /// file just read (or swaps a symlink, or says events were lost), the scan takes nothing
    /// and asks to be run again at once (the wake-up is now) with those hints noted: the file
    /// was read in the middle of a write whose event was not seen yet.
    pub fn step_with(&mut self, late: &mut dyn FnMut() -> Vec<Hint>) -> (Changes, Option<Instant>) {
        let before = self.last.clone();
        let wake = self.step_inner(late);
        (diff(&before, &self.last), wake)
    }

    fn step_inner(&mut self, late: &mut dyn FnMut() -> Vec<Hint>) -> Option<Instant> {
        let now = Instant::now();
        let touched = std::mem::take(&mut self.touched);
        let deleted = std::mem::take(&mut self.deleted);
        let closed = std::mem::take(&mut self.closed);
        let indirect = std::mem::take(&mut self.indirect);
        let blind = self.blind || !self.watching;
        let listing = match perms::check_dir(&self.dir) {
            Err(e) => Err(e.to_string()),
            Ok(()) => list(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display())),
        };
        let listing = match listing {
            Ok(l) => l,
            Err(e) => {
                // Unknown, not gone: keep the last known files.
                self.last.dir_error = Some(e);
                self.pending.clear();
                self.blind = true;
                return None;
            }
        };
        // A directory readable again is published with its files, once they settled.
        let dir_error = self.last.dir_error.take();
        let saved = (
            self.last.clone(),
            self.read_keys.clone(),
            self.pending.clone(),
            self.writing.clone(),
        );
        let settle = self.timing.settle;
        let max_settle = self.timing.max_settle;
        let mut wake: Option<Instant> = None;
        let mut wake_at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        let mut to_read: Vec<(String, Option<FileKey>, bool)> = Vec::new();

        for (name, key) in &listing {
            let unchanged = self.last.files.contains_key(name)
                && self.read_keys.get(name) == Some(key)
                && !touched.contains(name);
            if unchanged {
                self.pending.remove(name);
                continue;
            }
            let hold = self.pending.get(name).is_some_and(|p| p.hold);
            // Changed without an event of its own: its event is still on the way (an in-place
            // write seen between its truncation and its write), or it was written through a
            // symlink into a directory nobody watches. Its event, or the settle check, takes it.
            let unannounced = !touched.contains(name) && !indirect;
            if !(blind || hold || unannounced || self.writing.contains(name)) {
                self.pending.remove(name);
                to_read.push((name.clone(), *key, false));
                continue;
            }
            match self.pending.get_mut(name) {
                Some(p) if p.seen == Some(*key) => {
                    if now >= p.since + settle || now >= p.first + max_settle {
                        if now < p.since + settle {
                            tracing::warn!(file = %self.dir.join(name).display(), "manifest file keeps changing; reading it as it is now");
                        }
                        to_read.push((name.clone(), *key, true));
                    } else {
                        wake_at((p.since + settle).min(p.first + max_settle));
                    }
                }
                Some(p) => {
                    p.seen = Some(*key);
                    p.since = now;
                    wake_at((now + settle).min(p.first + max_settle));
                }
                None => {
                    self.pending
                        .insert(name.clone(), Pending::new(Some(*key), now, false));
                    wake_at(now + settle);
                }
            }
        }

        let vanished: Vec<String> = self
            .last
            .files
            .keys()
            .filter(|n| !listing.contains_key(*n))
            .cloned()
            .collect();
        for name in vanished {
            let gone = if deleted.contains(&name) && !blind {
                true
            } else {
                match self.pending.get_mut(&name) {
                    Some(p) if p.seen.is_none() => {
                        let due = p.since + settle;
                        if now >= due {
                            true
                        } else {
                            wake_at(due);
                            false
                        }
                    }
                    Some(p) => {
                        p.seen = None;
                        p.since = now;
                        wake_at(now + settle);
                        false
                    }
                    None => {
                        self.pending
                            .insert(name.clone(), Pending::new(None, now, false));
                        wake_at(now + settle);
                        false
                    }
                }
            };
            if gone {
                self.pending.remove(&name);
                self.last.files.remove(&name);
                self.read_keys.remove(&name);
            }
        }
        // Forget what waits for a name that is neither listed nor known.
        let last = &self.last.files;
        self.pending
            .retain(|n, _| listing.contains_key(n) || last.contains_key(n));

        let read_any = !to_read.is_empty();
        let read_names: BTreeSet<String> = to_read.iter().map(|(n, _, _)| n.clone()).collect();
        for (name, key, settled) in to_read {
            let path = self.dir.join(&name);
            let previous = self.last.files.get(&name);
            let (file, parsed) = read_file_reusing(&path, previous);
            self.parses += u64::from(parsed);
            let after = FileKey::of(&path);
            if after != key {
                // Changed while it was read: read it again once it settled.
                let p = self
                    .pending
                    .entry(name.clone())
                    .or_insert_with(|| Pending::new(Some(after), now, true));
                p.seen = Some(after);
                p.since = now;
                p.hold = true;
                wake_at((now + settle).min(p.first + max_settle));
                continue;
            }
            let new_content = previous.is_none_or(|p| p.hash != file.hash);
            if !settled
                && closed.contains(&name)
                && new_content
                && file.content.is_ok()
                && !file.parsed.is_ok()
            {
                // Broken right after a write: maybe a writer mid-way (a save in several opens);
                // give it one settle check.
                let p = self
                    .pending
                    .entry(name.clone())
                    .or_insert_with(|| Pending::new(Some(key), now, true));
                p.seen = Some(key);
                p.since = now;
                p.hold = true;
                wake_at((now + settle).min(p.first + max_settle));
                continue;
            }
            self.pending.remove(&name);
            if settled {
                self.writing.remove(&name);
            }
            self.read_keys.insert(name.clone(), key);
            self.last.files.insert(name, file);
        }
        // Events that arrived while the files were read: noted after the rollback below (or
        // kept for the next scan); one about a file read, a symlink swap or lost events means a
        // read may have seen a write half-way.
        let late_hints = if read_any { late() } else { Vec::new() };
        let raced = late_hints.iter().any(|h| match h {
            Hint::Blind => true,
            Hint::Writing(n) | Hint::Closed(n) | Hint::Deleted(n) => read_names.contains(n),
            Hint::Renamed(n) | Hint::Touched(n) => read_names.contains(n) || !is_manifest_name(n),
        });
        let unstable = read_any && (raced || !self.listing_held(&listing));
        if unstable {
            let overdue = self.unstable_since.is_some_and(|t| now >= t + max_settle);
            if !overdue {
                // Something changed while it was read (a rewrite whose event came late, a
                // `..data` swap half-way through the listing): take none of it, look again at
                // once (the events say what to wait for) or in a moment.
                self.unstable_since.get_or_insert(now);
                (self.last, self.read_keys, self.pending, self.writing) = saved;
                self.last.dir_error = dir_error;
                self.touched.extend(touched);
                self.deleted.extend(deleted);
                self.closed.extend(closed);
                self.indirect |= indirect;
                for h in late_hints {
                    self.note(h);
                }
                return Some(if raced { now } else { now + settle / 10 });
            }
            tracing::warn!(dir = %self.dir.display(), "manifest directory keeps changing; reading it as it is now");
        }
        if !late_hints.is_empty() {
            // Their events were read here, so nothing else wakes the watcher for them.
            wake = Some(wake.map_or(now, |w| w.min(now)));
        }
        for h in late_hints {
            self.note(h);
        }
        self.unstable_since = None;
        if wake.is_none() {
            self.blind = false;
        } else if dir_error.is_some() {
            self.last.dir_error = dir_error;
        }
        wake
    }

    /// Whether a second listing agrees with `listing` on every name not pending.
    fn listing_held(&self, listing: &Listing) -> bool {
        let Ok(check) = list(&self.dir) else {
            return false;
        };
        check
            .keys()
            .chain(listing.keys())
            .all(|n| self.pending.contains_key(n) || check.get(n) == listing.get(n))
    }
}

impl Pending {
    fn new(seen: Option<Option<FileKey>>, now: Instant, hold: bool) -> Pending {
        Pending {
            seen,
            since: now,
            first: now,
            hold,
        }
    }
}

/// What changed from `old` to `new`.
pub(super) fn diff(old: &Snapshot, new: &Snapshot) -> Changes {
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
            Some(o) if o != f => c.changed.push(name.clone()),
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
