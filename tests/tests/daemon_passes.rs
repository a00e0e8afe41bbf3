//! Passes of the loop while many changes are in flight: a pass that plans changes already
//! queued or running joins them (its `agent apply` answers when they end) instead of deferring
//! them, so a tear-down does not run a pass per ended stop.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

/// A container whose PID 1 ignores SIGTERM: each stop waits out its 2 s grace.
fn stubborn(name: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  networkMode: none\n  stopGracePeriod: 2s\n"
    )
}

#[test]
fn a_pass_during_a_teardown_joins_it_instead_of_deferring() {
    if !require_root("a_pass_during_a_teardown_joins_it_instead_of_deferring") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("passes", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    for n in &names {
        d.write(&format!("{n}.yaml"), &stubborn(n));
    }
    d.wait_for("all running", Duration::from_secs(120), || {
        names
            .iter()
            .all(|n| d.try_ps_row(n).is_some_and(|r| r["state"] == "running"))
            .then_some(())
    });
    let mark = d.log_text().len();
    for n in &names {
        std::fs::remove_file(d.path(&format!("{n}.yaml"))).expect("remove manifest");
    }
    // The stops are in their grace periods: this pass plans the same stops and removals.
    std::thread::sleep(Duration::from_millis(500));
    d.cli_ok(&["apply"]);
    let left: Vec<String> = names
        .iter()
        .filter(|n| d.try_ps_row(n).is_some())
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "agent apply answered before the removals it planned had ended: {left:?}"
    );
    let log = d.log_text();
    let since = log.get(mark..).unwrap_or_default();
    let deferred_passes = since
        .lines()
        .filter(|l| l.contains("\"pass starts\"") && l.contains("changes that waited"))
        .count();
    assert!(
        deferred_passes <= 1,
        "{deferred_passes} passes for deferred changes during one tear-down"
    );
}
