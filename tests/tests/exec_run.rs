//! End-to-end: containers run through the exec driver and the real `agent monitor` (root).

use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent_e2e::exec::{Fixture, exited, require_root};

#[test]
fn exit_codes_and_output_are_recorded() {
    if !require_root("exit_codes_and_output_are_recorded") {
        return;
    }
    let mut f = Fixture::new("codes");
    let s = f.spec("zero");
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(exited(&st, "zero"), (0, None, false));
    assert_eq!(log, "hello\noops\n");
    let s = f.spec("one");
    let (st, _) = f.run_to_end(s, &["/bin/sh", "-c", "exit 1"]);
    assert_eq!(exited(&st, "one"), (1, None, false));
    // SIGKILL from outside (`agent kill`, default signal KILL): 137, signal 9
    let mut s = f.spec("killed");
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);
    let out = f.agent(&["kill", "killed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = f.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exited(&info.status, "killed"), (137, Some(9), false));
    assert!(
        info.finished_at.is_some() && info.started_at.is_some(),
        "{info:?}"
    );
    // every container is listed with its name
    let names: Vec<String> = f
        .driver
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["killed", "one", "zero"]);
}
