//! End-to-end: `monitor.log` stays bounded for a container that restarts for months (issue 20
//! item 2). It was opened in append mode at every start and never rotated, and on cgroup v1
//! libcgroups wrote ~500 bytes into it at every start; a failed start added libcontainer's copy
//! of the error. Now a start that goes well writes nothing, and a start that finds the file
//! above its cap rotates it (the last lines kept in `monitor.log.1`).
//!
//! The monitors are the real `agent monitor` processes the driver starts; the restarts are
//! driven directly through the driver (what the agent's restart policy calls), which is the
//! fast way to many restarts.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent::driver::exec::paths::{MONITOR_LOG_CAP, MONITOR_LOG_KEEP};
use agent_e2e::exec::{Fixture, require_root};

/// Restarts of each container: enough for the old code's ~500 bytes per start to pass the cap
/// several times over.
const RESTARTS: usize = 200;

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn monitor_log_stays_bounded_across_restarts() {
    if !require_root("monitor_log_stays_bounded_across_restarts") {
        return;
    }
    let mut f = Fixture::new("monlog");
    // one that runs and exits, one whose start fails every time
    let mut ok = f.spec("runs");
    ok.command = Some(vec!["true".into()]);
    f.driver
        .create(&ok)
        .unwrap_or_else(|e| panic!("create: {e}"));
    let mut bad = f.spec("fails");
    bad.command = Some(vec!["/no/such/binary".into()]);
    f.driver
        .create(&bad)
        .unwrap_or_else(|e| panic!("create: {e}"));
    // The failing one has 1 MiB of log from earlier (an older version's, say).
    let bad_log = f.dir(&bad.id).join("monitor.log");
    {
        let mut old = std::fs::File::create(&bad_log).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..25_000 {
            writeln!(old, "an old line number {i:05} of some fifty bytes....")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(size(&bad_log) > 1_000_000);
    for round in 0..RESTARTS {
        f.driver
            .start(&ok.id)
            .unwrap_or_else(|e| panic!("start {round}: {e}"));
        f.wait_exit(&ok.id, Duration::from_secs(10));
        let e = f.driver.start(&bad.id);
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        // the start's error still says what is wrong
        assert!(e.contains("/no/such/binary"), "start {round}: {e:?}");
    }
    let ok_log = f.dir(&ok.id).join("monitor.log");
    let ok_text = std::fs::read_to_string(&ok_log).unwrap_or_default();
    assert!(
        ok_text.is_empty(),
        "{RESTARTS} starts that went well wrote {} bytes to monitor.log, first: {:?}",
        ok_text.len(),
        ok_text.lines().next()
    );
    let bound = MONITOR_LOG_CAP + MONITOR_LOG_KEEP;
    let total = size(&bad_log) + size(&bad_log.with_extension("log.1"));
    assert!(
        total <= bound,
        "monitor.log + .1 of the failing container: {total} bytes, above {bound}"
    );
    // what was kept of the old log is its last whole lines
    let kept = std::fs::read_to_string(bad_log.with_extension("log.1")).unwrap_or_default();
    assert!(
        kept.ends_with("an old line number 24999 of some fifty bytes....\n")
            && kept.starts_with("an old line number "),
        "{:?}",
        &kept[..kept.len().min(200)]
    );
}
