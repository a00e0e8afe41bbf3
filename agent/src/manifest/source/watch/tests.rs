//! Watcher tests: every kind of save ends in exactly one change notification with the final
//! content.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use std::path::PathBuf;

use super::*;

fn timing() -> WatchTiming {
    WatchTiming {
        settle: Duration::from_millis(120),
        max_settle: Duration::from_secs(5),
    }
}

/// A settle interval no test waits for: whatever is seen within seconds was seen without it.
fn no_settle() -> WatchTiming {
    WatchTiming {
        settle: Duration::from_secs(60),
        max_settle: Duration::from_secs(120),
    }
}

struct Harness {
    dir: tempfile::TempDir,
    count: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Changes>>>,
    watcher: Watcher,
}

impl Harness {
    fn new(setup: impl FnOnce(&Path)) -> Harness {
        Harness::with_timing(setup, timing())
    }

    fn with_timing(setup: impl FnOnce(&Path), timing: WatchTiming) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let count = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (count.clone(), log.clone());
        let watcher = Watcher::spawn(dir.path(), timing, move |ch| {
            c.fetch_add(1, Ordering::SeqCst);
            l.lock().unwrap().push(ch.clone());
        });
        Harness {
            dir,
            count,
            log,
            watcher,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until nothing has happened for a while; returns the number of notifications since
    /// the previous call.
    fn settle(&self) -> usize {
        let mut last = self.count.load(Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_millis(900));
            let now = self.count.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        self.count.swap(0, Ordering::SeqCst)
    }

    /// Waits (at most 10 s) until `n` notifications arrived in all; whether they did.
    fn seen(&self, n: usize) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.count.load(Ordering::SeqCst) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn content(&self, name: &str) -> Option<String> {
        let snap = self.watcher.snapshot();
        let f = snap.files.get(name)?;
        Some(String::from_utf8(f.content.as_ref().ok()?.to_vec()).unwrap())
    }

    fn last_changes(&self) -> Changes {
        self.log.lock().unwrap().last().cloned().unwrap()
    }
}

#[test]
fn scanner_diffs_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scanner::new(
        dir.path(),
        WatchTiming {
            settle: Duration::from_millis(1),
            ..timing()
        },
    );
    assert!(s.scan().is_empty());
    std::fs::write(dir.path().join("a.yaml"), "a: 1").unwrap();
    std::fs::write(dir.path().join("b.yml"), "b: 1").unwrap();
    std::fs::write(dir.path().join("b.yml~"), "b: 0").unwrap();
    let c = s.scan();
    assert_eq!(c.added, ["a.yaml", "b.yml"]);
    // Rewriting the same bytes (new mtime) is no change.
    std::fs::write(dir.path().join("a.yaml"), "a: 1").unwrap();
    assert!(s.scan().is_empty());
    std::fs::write(dir.path().join("a.yaml"), "a: 2").unwrap();
    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    let c = s.scan();
    assert_eq!(c.changed, ["a.yaml"]);
    assert_eq!(c.removed, ["b.yml"]);
    let f = &s.snapshot().files["a.yaml"];
    assert_eq!(f.hash, hex::encode(Sha256::digest(b"a: 2")));
}

#[test]
fn refused_file_is_kept_with_its_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.yaml");
    std::fs::write(&p, "a: 1").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut s = Scanner::new(dir.path(), timing());
    assert_eq!(s.scan().added, ["a.yaml"]);
    let err = s.snapshot().files["a.yaml"].content.clone().unwrap_err();
    assert!(err.contains("refused"), "{err}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(s.scan().changed, ["a.yaml"]);
    assert!(s.snapshot().files["a.yaml"].content.is_ok());
}

#[test]
fn unreadable_directory_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("a.yaml"), "a: 1").unwrap();
    let mut s = Scanner::new(&m, timing());
    s.scan();
    std::fs::rename(&m, dir.path().join("gone")).unwrap();
    let c = s.scan();
    assert!(c.removed.is_empty() && c.dir_error_changed, "{c:?}");
    assert!(s.snapshot().dir_error.is_some());
    std::fs::rename(dir.path().join("gone"), &m).unwrap();
    let c = s.scan();
    assert!(
        c.removed.is_empty() && c.added.is_empty() && c.dir_error_changed,
        "{c:?}"
    );
}

#[test]
fn plain_write_create_and_delete() {
    let h = Harness::new(|_| {});
    std::fs::write(h.path("a.yaml"), "a: 1\n").unwrap();
    assert_eq!(h.settle(), 1);
    assert_eq!(h.content("a.yaml").unwrap(), "a: 1\n");
    std::fs::remove_file(h.path("a.yaml")).unwrap();
    assert_eq!(h.settle(), 1);
    assert_eq!(h.last_changes().removed, ["a.yaml"]);
}

#[test]
fn ignored_files_and_touch_fire_nothing() {
    let h = Harness::new(|d| std::fs::write(d.join("a.yaml"), "a: 1\n").unwrap());
    std::fs::write(h.path(".a.yaml.swp"), "swap").unwrap();
    std::fs::write(h.path("a.yaml~"), "backup").unwrap();
    std::fs::write(h.path("#a.yaml#"), "emacs").unwrap();
    std::fs::write(h.path("4913"), "").unwrap();
    std::fs::write(h.path("notes.txt"), "x").unwrap();
    // Same content, new mtime.
    std::fs::write(h.path("a.yaml"), "a: 1\n").unwrap();
    assert_eq!(h.settle(), 0);
}

#[test]
fn vim_style_save() {
    let h = Harness::new(|d| std::fs::write(d.join("web.yaml"), "v: 1\n").unwrap());
    // vim with backupcopy=no: swap file, 4913 probe, rename to backup, write new, delete backup.
    std::fs::write(h.path(".web.yaml.swp"), "swap").unwrap();
    std::fs::write(h.path("4913"), "").unwrap();
    std::fs::remove_file(h.path("4913")).unwrap();
    std::fs::rename(h.path("web.yaml"), h.path("web.yaml~")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(h.path("web.yaml"), "v: 2\n").unwrap();
    std::fs::remove_file(h.path("web.yaml~")).unwrap();
    std::fs::remove_file(h.path(".web.yaml.swp")).unwrap();
    assert_eq!(h.settle(), 1);
    assert_eq!(h.last_changes().changed, ["web.yaml"]);
    assert_eq!(h.content("web.yaml").unwrap(), "v: 2\n");
}

#[test]
fn partial_writes_wait_until_settled() {
    use std::io::Write;
    let h = Harness::new(|_| {});
    let mut f = std::fs::File::create(h.path("big.yaml")).unwrap();
    let mut want = String::new();
    for i in 0..8 {
        let chunk = format!("line{i}: {}\n", "x".repeat(100));
        f.write_all(chunk.as_bytes()).unwrap();
        f.flush().unwrap();
        want.push_str(&chunk);
        std::thread::sleep(Duration::from_millis(60));
    }
    drop(f);
    assert_eq!(h.settle(), 1);
    assert_eq!(h.content("big.yaml").unwrap(), want);
}

#[test]
fn atomic_rename_save() {
    let h = Harness::new(|d| std::fs::write(d.join("db.yaml"), "v: 1\n").unwrap());
    std::fs::write(h.path(".db.yaml.tmp123"), "v: 2\n").unwrap();
    std::fs::rename(h.path(".db.yaml.tmp123"), h.path("db.yaml")).unwrap();
    assert_eq!(h.settle(), 1);
    assert_eq!(h.content("db.yaml").unwrap(), "v: 2\n");
}

fn k8s_generation(dir: &Path, gen_name: &str, files: usize, version: u32) {
    let g = dir.join(gen_name);
    std::fs::create_dir(&g).unwrap();
    for i in 0..files {
        std::fs::write(
            g.join(format!("f{i:03}.yaml")),
            format!("v: {version}\ni: {i}\n"),
        )
        .unwrap();
    }
}

#[test]
fn kubernetes_data_symlink_swap_of_200_files() {
    let h = Harness::new(|d| {
        k8s_generation(d, "..2024_01", 200, 1);
        std::os::unix::fs::symlink("..2024_01", d.join("..data")).unwrap();
        for i in 0..200 {
            std::os::unix::fs::symlink(
                format!("..data/f{i:03}.yaml"),
                d.join(format!("f{i:03}.yaml")),
            )
            .unwrap();
        }
    });
    assert_eq!(h.watcher.snapshot().files.len(), 200);
    assert_eq!(h.content("f007.yaml").unwrap(), "v: 1\ni: 7\n");
    // What Kubernetes' atomic writer does: new timestamped dir, ..data_tmp -> it, rename over
    // ..data, remove the old dir.
    k8s_generation(h.dir.path(), "..2024_02", 200, 2);
    std::os::unix::fs::symlink("..2024_02", h.path("..data_tmp")).unwrap();
    std::fs::rename(h.path("..data_tmp"), h.path("..data")).unwrap();
    std::fs::remove_dir_all(h.path("..2024_01")).unwrap();
    assert_eq!(h.settle(), 1, "{:?}", h.log.lock().unwrap());
    let c = h.last_changes();
    assert_eq!(c.changed.len(), 200);
    assert!(c.added.is_empty() && c.removed.is_empty());
    assert_eq!(h.content("f199.yaml").unwrap(), "v: 2\ni: 199\n");
}

#[test]
fn rescan_notices_changes_the_watch_missed() {
    // Started on a missing directory: nothing is watched until a rescan re-arms it.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("m");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let w = Watcher::spawn(&dir, timing(), move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert!(w.snapshot().dir_error.is_some());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), "a: 1").unwrap();
    w.rescan();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(w.snapshot().files.contains_key("a.yaml"));
    // Now the watch is armed: a plain write is noticed without a rescan.
    std::fs::write(dir.join("b.yaml"), "b: 1").unwrap();
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn reading_the_files_does_not_cause_scans() {
    let h = Harness::new(|d| {
        for i in 0..5 {
            std::fs::write(d.join(format!("m{i}.yaml")), format!("i: {i}")).unwrap();
        }
    });
    h.watcher.rescan_and_wait();
    h.settle();
    // Each scan opens every file (inotify IN_OPEN); those events must not feed another scan.
    let before = h.watcher.scans();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        h.watcher.scans(),
        before,
        "the watcher rescans on its own reads"
    );
    // Neither do reads by others.
    for i in 0..5 {
        std::fs::read(h.path(&format!("m{i}.yaml"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.watcher.scans(), before, "a read caused a scan");
    // A write still does.
    std::fs::write(h.path("m0.yaml"), "i: changed").unwrap();
    assert_eq!(h.settle(), 1);
    assert!(h.watcher.scans() > before);
}

/// A valid manifest (a file that fails to parse right after a write waits for one settle check).
fn vol(name: &str, generation: u32) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Volume\nmetadata: {{name: {name}, labels: {{gen: \"{generation}\"}}}}\n"
    )
}

#[test]
fn close_after_write_rename_and_delete_are_taken_without_the_settle_wait() {
    // Settle is 60 s: anything seen within 10 s was taken without it.
    let h = Harness::with_timing(|_| {}, no_settle());
    std::fs::write(h.path("a.yaml"), vol("a", 1)).unwrap();
    assert!(
        h.seen(1),
        "a close after write waited for the settle interval"
    );
    assert_eq!(h.last_changes().added, ["a.yaml"]);
    assert_eq!(h.content("a.yaml").unwrap(), vol("a", 1));
    // Renamed into place (an atomic save).
    std::fs::write(h.path(".a.yaml.tmp"), vol("a", 2)).unwrap();
    std::fs::rename(h.path(".a.yaml.tmp"), h.path("a.yaml")).unwrap();
    assert!(
        h.seen(2),
        "a rename into place waited for the settle interval"
    );
    assert_eq!(h.content("a.yaml").unwrap(), vol("a", 2));
    // Unlinked.
    std::fs::remove_file(h.path("a.yaml")).unwrap();
    assert!(h.seen(3), "an unlink waited for the settle interval");
    assert_eq!(h.last_changes().removed, ["a.yaml"]);
}

#[test]
fn rescan_with_nothing_changed_answers_without_waiting() {
    let h = Harness::with_timing(|_| {}, no_settle());
    for i in 0..20 {
        std::fs::write(h.path(&format!("m{i}.yaml")), vol(&format!("m{i}"), 1)).unwrap();
    }
    assert!(h.seen(1));
    while h.watcher.snapshot().files.len() < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let watcher = Arc::new(h.watcher);
    let w = watcher.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        w.rescan_and_wait();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "a rescan with nothing changed waited for the settle interval"
    );
}

#[test]
fn a_file_still_growing_is_not_read_half_written() {
    use std::io::Write;
    let h = Harness::new(|_| {});
    let path = h.path("big.yaml");
    let mut want = String::new();
    for i in 0..12 {
        want.push_str(&format!("line{i}: {}\n", "x".repeat(100)));
    }
    let text = want.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        for line in text.lines() {
            f.write_all(format!("{line}\n").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // While it grows, `agent apply`-style rescans must not return a partial file.
    while !writer.is_finished() {
        h.watcher.rescan_and_wait();
        if let Some(c) = h.content("big.yaml") {
            assert_eq!(c, want, "a partial file was taken");
        }
    }
    writer.join().unwrap();
    assert_eq!(h.settle(), 1);
    assert_eq!(h.content("big.yaml").unwrap(), want);
}

#[test]
fn a_broken_file_after_one_close_waits_for_the_next_write() {
    use std::io::Write;
    // A writer that saves in two opens: the first part alone is not valid YAML.
    let h = Harness::new(|_| {});
    let text = "apiVersion: agent/v1\nkind: Volume\nmetadata: {name: v, labels: {a: b}}\n";
    let (a, b) = text.split_at(text.find("labels").unwrap());
    std::fs::write(h.path("v.yaml"), a).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("v.yaml"))
        .unwrap();
    f.write_all(b.as_bytes()).unwrap();
    drop(f);
    assert_eq!(h.settle(), 1, "{:?}", h.log.lock().unwrap());
    assert_eq!(h.content("v.yaml").unwrap(), text);
}

#[test]
fn scanner_takes_closed_files_at_once_and_growing_ones_once_settled() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scanner::new(dir.path(), no_settle());
    s.set_watching(true);
    assert!(s.scan().is_empty());
    std::fs::write(dir.path().join("a.yaml"), vol("a", 1)).unwrap();
    // Created and written, not closed yet: pending, not taken.
    s.note(Hint::Writing("a.yaml".into()));
    let (c, wake) = s.step();
    assert!(c.is_empty() && wake.is_some(), "{c:?}");
    // Closed: taken at once.
    s.note(Hint::Closed("a.yaml".into()));
    let (c, wake) = s.step();
    assert_eq!(c.added, ["a.yaml"]);
    assert!(wake.is_none());
    // Renamed away (an editor's backup): not gone until it stayed away for the settle interval.
    std::fs::rename(dir.path().join("a.yaml"), dir.path().join("a.yaml~")).unwrap();
    s.note(Hint::Closed("a.yaml".into()));
    let (c, wake) = s.step();
    assert!(c.is_empty() && wake.is_some(), "{c:?}");
    std::fs::write(dir.path().join("a.yaml"), vol("a", 2)).unwrap();
    s.note(Hint::Closed("a.yaml".into()));
    let (c, wake) = s.step();
    assert_eq!(c.changed, ["a.yaml"]);
    assert!(wake.is_none());
    // Unlinked: gone at once.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    s.note(Hint::Deleted("a.yaml".into()));
    let (c, _) = s.step();
    assert_eq!(c.removed, ["a.yaml"]);
    // Nothing changed: nothing read, nothing pending.
    let parses = s.parses();
    let (c, wake) = s.step();
    assert!(c.is_empty() && wake.is_none());
    assert_eq!(s.parses(), parses);
}

#[test]
fn a_rewrite_whose_event_arrives_during_the_read_is_not_taken_half_way() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    let mut s = Scanner::new(dir.path(), no_settle());
    s.set_watching(true);
    assert!(s.scan().is_empty());
    // Renamed into place (complete), but before the scan reads it a writer truncates it for an
    // in-place rewrite: the read sees the empty file; the truncation's event is queued by then
    // and the watcher hands it over as a late hint.
    std::fs::write(&path, vol("a", 1)).unwrap();
    s.note(Hint::Renamed("a.yaml".into()));
    std::fs::write(&path, "").unwrap();
    let mut late = vec![Hint::Writing("a.yaml".into())];
    let (c, wake) = s.step_with(&mut || std::mem::take(&mut late));
    assert!(c.is_empty(), "the half-written file was taken: {c:?}");
    assert!(
        wake.is_some_and(|w| w <= std::time::Instant::now()),
        "look again at once"
    );
    // Still being written: nothing taken.
    let (c, _) = s.step();
    assert!(c.is_empty(), "{c:?}");
    // The rewrite ends: taken once, with its whole content.
    std::fs::write(&path, vol("a", 2)).unwrap();
    s.note(Hint::Closed("a.yaml".into()));
    let (c, wake) = s.step();
    assert_eq!(c.added, ["a.yaml"]);
    assert!(wake.is_none());
    let f = &s.snapshot().files["a.yaml"];
    assert_eq!(
        f.content.as_ref().unwrap().as_slice(),
        vol("a", 2).as_bytes()
    );
    // A late event about a file not read is kept for the next scan, which is due at once.
    std::fs::write(dir.path().join("b.yaml"), vol("b", 1)).unwrap();
    std::fs::write(&path, vol("a", 3)).unwrap();
    s.note(Hint::Closed("a.yaml".into()));
    let mut late = vec![Hint::Closed("b.yaml".into())];
    let (c, wake) = s.step_with(&mut || std::mem::take(&mut late));
    assert_eq!(c.changed, ["a.yaml"]);
    assert!(wake.is_some_and(|w| w <= std::time::Instant::now()));
    let (c, wake) = s.step();
    assert_eq!(c.added, ["b.yaml"]);
    assert!(wake.is_none());
}
