//! Torture: an edit storm on the manifest directory (root).
//!
//! Five files, one container each (busybox, network mode `none`), are edited `TORTURE_EDITS`
//! times (default 500; `TORTURE_LONG=1`: 2,000) in `TORTURE_EDIT_SECONDS` bursts (default 10;
//! long 40) of edits a few milliseconds apart. After each burst the directory is left alone until
//! the watcher has reported the settled change and a pass has started on it (about a second on
//! a quiet machine, so 500 edits take 10-20 s). An edit is, at random: a new valid version (atomic
//! rename, or in place with truncate-and-write, which the watcher can catch half written), or a
//! broken one (invalid YAML, an unknown field, a wrong type, a file cut in half, each by rename or
//! in place). The second-to-last burst ends with a valid version of every file; the last burst
//! breaks `f0` and `f1`.
//!
//! Then:
//! - every container runs the last valid version of its file that a pass loaded; its process
//!   writes the version it was given into a shared volume. `agent status` reports exactly `f0`
//!   and `f1` as failed. What a pass loads: a file is taken once it is complete (closed after
//!   writing or renamed into place), and passes coalesce: one that starts late loads the newest settled snapshot, so a valid version
//!   that settled and was broken again before any pass ran is skipped, and the file's last good
//!   version is the one before. After each burst the test waits for a pass to start, so every
//!   burst's end state is loaded and the expected versions are exact;
//! - one reconcile per settled change, from the agent's debug log: the passes triggered by file
//!   changes are at most the settled changes the watcher reported (passes coalesce), and the
//!   watcher reported at most one change per edit: it takes each complete write at once (a close
//!   after writing, a rename; `docs/daemon.md`, Watching), never a half-written file as a change
//!   of its own.
//!
//! The random sequence is seeded from the pid (printed; `TORTURE_SEED` replays one).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::torture::{self, Rng, env_num};

const VOLUME: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: marks\nspec:\n  reclaim: retain\n";
const FILES: usize = 5;
/// The watcher's debug line for a settled change, and a pass's first line (JSON log).
const CHANGE_LINE: &str = "\"message\":\"manifest files changed\"";
const PASS_LINE: &str = "\"message\":\"pass starts\"";

fn valid(i: usize, version: u64) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: s{i}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"echo $V > /m/$NAME; trap 'exit 0' TERM; sleep 100000 & wait\"]\n  env: {{NAME: s{i}, V: \"{version}\"}}\n  networkMode: none\n  volumes:\n    - {{volume: marks, target: /m}}\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

/// A broken version of file `i` (kind chosen by `r`).
fn broken(i: usize, version: u64, r: u64) -> String {
    let good = valid(i, version);
    match r % 4 {
        0 => format!("{good}  ports: [\n"),
        1 => good.replace("  image:", "  imagee:"),
        2 => good.replace("restart: always", "restart: 5"),
        _ => good[..good.len() / 2].to_string(),
    }
}

fn write_in_place(path: &std::path::Path, content: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(path)
        .expect("open manifest");
    // Two writes: a reader can see the first half alone.
    let (a, b) = content.split_at(content.len() / 2);
    f.write_all(a.as_bytes()).expect("write");
    f.write_all(b.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// Why the agent is not (yet) in the expected state: each file's container runs the version in
/// `last_valid` and the files in `last_broken` (and only those) are reported as failed.
fn mismatch(
    d: &Daemon,
    marks: &Path,
    last_valid: &BTreeMap<usize, u64>,
    last_broken: &BTreeMap<usize, bool>,
) -> Option<String> {
    for (i, v) in last_valid {
        let got = std::fs::read_to_string(marks.join(format!("s{i}"))).unwrap_or_default();
        if got.trim() != v.to_string() {
            return Some(format!("s{i} runs version {:?}, expected {v}", got.trim()));
        }
    }
    let ps = d.cli_json(&["ps"]);
    let rows = ps.as_array().cloned().unwrap_or_default();
    let running = rows.iter().filter(|r| r["state"] == "running").count();
    if running != FILES {
        return Some(format!("{running} of {FILES} running: {ps}"));
    }
    let status = d.cli_json(&["status"]);
    for (i, b) in last_broken {
        let path = d.path(&format!("f{i}.yaml")).to_string_lossy().into_owned();
        let f = status["files"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["path"] == path.as_str()).cloned())
            .unwrap_or_default();
        if f["error"].is_null() == *b {
            return Some(format!("f{i}.yaml: expected broken={b}, status {f}"));
        }
    }
    None
}

/// Waits up to 120 s for the expected state; panics with the last mismatch.
fn converge(
    d: &Daemon,
    marks: &Path,
    last_valid: &BTreeMap<usize, u64>,
    last_broken: &BTreeMap<usize, bool>,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let Some(why) = mismatch(d, marks, last_valid, last_broken) else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not reached after 120 s: {why}\nagent log:\n{}",
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn edit_storm_ends_in_last_valid_versions() {
    if !require_root("edit_storm_ends_in_last_valid_versions") {
        return;
    }
    require_images();
    let long = torture::long();
    let edits = env_num("TORTURE_EDITS").unwrap_or(if long { 2000 } else { 500 });
    let secs = env_num("TORTURE_EDIT_SECONDS").unwrap_or(if long { 40 } else { 10 });
    let seed = torture::seed();
    println!("edit storm: {edits} edits in {secs} s on {FILES} files, seed {seed}");
    let mut rng = Rng(seed);

    let mut d = Daemon::prepare("storm", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("volume.yaml", VOLUME);
    let marks = d.state.join("volumes/marks/_data");
    let mut last_valid: BTreeMap<usize, u64> = BTreeMap::new();
    let mut last_broken: BTreeMap<usize, bool> = BTreeMap::new();
    for i in 0..FILES {
        d.write(&format!("f{i}.yaml"), &valid(i, 0));
        last_valid.insert(i, 0);
        last_broken.insert(i, false);
    }
    d.cli_ok(&["apply"]);
    converge(&d, &marks, &last_valid, &last_broken, "initial versions");

    // Bursts of edits every few milliseconds; after each, the directory is left alone until the
    // watcher reported the settled change and a pass loaded it.
    let bursts = secs.max(2);
    // The last burst is two edits (below); the others share the rest.
    let per_burst = edits.saturating_sub(2).div_ceil(bursts - 1);
    let gap = Duration::from_millis(secs * 1000 / 2 / edits.max(1)).max(Duration::from_millis(1));
    let watcher_changes = |d: &Daemon| d.log_text().matches(CHANGE_LINE).count();
    let log_start = d.log_text().len();
    let changes_before = watcher_changes(&d);
    let t0 = Instant::now();
    let mut version = 0u64;
    let mut done = 0u64;
    let mut counts = [0u64; 3];
    let mut seen = changes_before;
    for b in 0..bursts {
        let last_burst = b + 1 == bursts;
        // The last burst breaks f0 and f1 only; the one before ends with a valid version of
        // every file, so each file's last valid version is one the agent saw settle.
        let n = if last_burst {
            2
        } else {
            per_burst.min(edits.saturating_sub(done + 2))
        };
        if n == 0 {
            continue;
        }
        for k in 0..n {
            let before_last = b + 2 == bursts && k + FILES as u64 >= n;
            let (i, r) = if last_burst {
                (k as usize, 0)
            } else if before_last {
                ((n - k - 1) as usize % FILES, 5)
            } else {
                (
                    (rng.next_u64() % FILES as u64) as usize,
                    rng.next_u64() % 10,
                )
            };
            version += 1;
            let name = format!("f{i}.yaml");
            let path = d.path(&name);
            if r < 3 {
                let text = broken(i, version, rng.next_u64());
                if rng.next_u64().is_multiple_of(2) {
                    d.write(&name, &text);
                } else {
                    write_in_place(&path, &text);
                }
                last_broken.insert(i, true);
                counts[0] += 1;
            } else if r < 8 {
                d.write(&name, &valid(i, version));
                last_valid.insert(i, version);
                last_broken.insert(i, false);
                counts[1] += 1;
            } else {
                write_in_place(&path, &valid(i, version));
                last_valid.insert(i, version);
                last_broken.insert(i, false);
                counts[2] += 1;
            }
            done += 1;
            std::thread::sleep(gap);
        }
        seen = d.wait_for(
            "the watcher to report the settled burst",
            Duration::from_secs(20),
            || {
                let c = watcher_changes(&d);
                (c > seen).then_some(c)
            },
        );
        // And a pass to load it: passes coalesce, so a version that settled but was replaced
        // before any pass started is never loaded (see the module docs).
        d.wait_for(
            "a pass to load the settled burst",
            Duration::from_secs(60),
            || {
                let log = d.log_text();
                let at = log.rfind(CHANGE_LINE)?;
                log[at..]
                    .lines()
                    .any(|l| l.contains(PASS_LINE) && l.contains("manifest files changed"))
                    .then_some(())
            },
        );
    }
    let storm = t0.elapsed();
    println!(
        "{done} edits in {:.1} s ({} broken, {} valid by rename, {} valid in place) in {bursts} bursts",
        storm.as_secs_f64(),
        counts[0],
        counts[1],
        counts[2]
    );
    converge(&d, &marks, &last_valid, &last_broken, "last valid versions");
    println!(
        "converged {:.1} s after the last edit: {last_valid:?} (broken last: {last_broken:?})",
        (t0.elapsed() - storm).as_secs_f64()
    );
    // Let any pass still queued finish before counting.
    std::thread::sleep(Duration::from_secs(2));

    let log = d.log_text();
    let log = &log[log_start.min(log.len())..];
    let changes = watcher_changes(&d) - changes_before;
    let passes: Vec<&str> = log.lines().filter(|l| l.contains(PASS_LINE)).collect();
    let file_passes = passes
        .iter()
        .filter(|l| l.contains("manifest files changed"))
        .count();
    println!(
        "{done} edits -> {changes} settled changes seen by the watcher -> {file_passes} passes triggered by them ({} passes in all)",
        passes.len()
    );
    assert!(changes >= 1, "the watcher reported no change:\n{log}");
    assert!(file_passes >= 1, "no pass followed the edits");
    assert!(
        file_passes <= changes,
        "{file_passes} passes for {changes} settled changes: more than one reconcile per change"
    );
    // The watcher takes each complete write at once (a close after writing, a rename), so a
    // burst is up to one change per edit, never more: an in-place write taken half-way (the
    // truncated file, then the full one) would be two.
    assert!(
        changes <= done as usize,
        "{changes} settled changes for {done} edits: the watcher took unsettled content"
    );

    d.remove_all_and_wait(Duration::from_secs(60));
}
