//! End-to-end: container logs, rotation bound and `agent logs` (root).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::driver::exec::{ExecDriver, logs};
use agent_e2e::exec::{Fixture, exited, require_root};
use agent_e2e::graph::agent_bin;

fn log_bytes(dir: &std::path::Path) -> (usize, u64) {
    let files = logs::files(dir);
    let total = files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    (files.len(), total)
}

#[test]
fn fifty_mib_of_output_stays_within_the_rotation_bound() {
    if !require_root("fifty_mib_of_output_stays_within_the_rotation_bound") {
        return;
    }
    let mut f = Fixture::new("logsize");
    let mut s = f.spec("chatty");
    // default rotation: 10 MiB x 3
    assert_eq!((s.log.max_size, s.log.max_files), (10 << 20, 3));
    let line = "x".repeat(1000);
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("yes {line} | head -c 52428800; echo last-line"),
    ]);
    let id = f.run(&s);
    let dir = f.dir(&id);
    let bound = 3 * ((10u64 << 20) + 2048);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut max_total = 0;
    loop {
        let (n, total) = log_bytes(&dir);
        assert!(n <= 3, "{n} log files");
        max_total = max_total.max(total);
        assert!(
            total <= bound,
            "log files hold {total} bytes, bound {bound}"
        );
        if !f
            .driver
            .state(&id)
            .map(|i| i.status.is_running())
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container still writing after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = f.driver.state(&id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exited(&info.status, "chatty").0, 0);
    let (n, total) = log_bytes(&dir);
    assert_eq!(n, 3, "rotation happened");
    assert!(total <= bound && total > 20 << 20, "{total}");
    // the newest record survived rotation and reads back last
    let recs = logs::read(&dir, &logs::Filter::default()).unwrap_or_default();
    // (`head -c` cut the last `yes` line, so "last-line" ends that record)
    let last = recs.last().map(|r| r.log.clone()).unwrap_or_default();
    assert!(last.ends_with("xlast-line\n"), "{last}");
    eprintln!("50 MiB written; log files peaked at {max_total} bytes (bound {bound})");
}

#[test]
fn logs_cli_tail_since_timestamps_and_follow() {
    if !require_root("logs_cli_tail_since_timestamps_and_follow") {
        return;
    }
    let mut f = Fixture::new("logscli");
    let s = f.spec("done");
    let (st, _) = f.run_to_end(
        s,
        &[
            "/bin/sh",
            "-c",
            "for i in 1 2 3 4 5; do echo out$i; done; echo err >&2",
        ],
    );
    assert_eq!(exited(&st, "done").0, 0);
    let out = f.agent(&["logs", "done"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out1\nout2\nout3\nout4\nout5\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = f.agent(&["logs", "--tail", "2", "done"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out5\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = f.agent(&["logs", "--since", "2099-01-01T00:00:00Z", "done"]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let out = f.agent(&["logs", "--since", "10m", "-t", "done"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.ends_with("Z out1") && first.len() > 30, "{text}");
    let out = f.agent(&["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container: nosuch"));
    let out = f.agent(&["logs", "--since", "whenever", "done"]);
    assert_eq!(out.status.code(), Some(64));

    // -f: prints the past, then new lines as they come, and ends when the container ends
    let mut s = f.spec("ticker");
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo first; sleep 1; for i in 1 2 3 4 5 6 7 8 9 10; do echo tick$i; sleep 0.1; done"
            .into(),
    ]);
    let id = f.run(&s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.log_text(&id).contains("first") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = Command::new(agent_bin())
        .args(["logs", "-f", "ticker", "--state-dir"])
        .arg(&f.state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = Vec::new();
    let mut tick1_while_running = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        if line == "tick1" {
            tick1_while_running = f
                .driver
                .state(&id)
                .map(|i| i.status.is_running())
                .unwrap_or(false);
        }
        lines.push(line);
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let want: Vec<String> = std::iter::once("first".to_string())
        .chain((1..=10).map(|i| format!("tick{i}")))
        .collect();
    assert_eq!(lines, want);
    assert!(
        tick1_while_running,
        "-f only printed after the container ended"
    );
    assert!(
        !f.driver
            .state(&id)
            .map(|i| i.status.is_running())
            .unwrap_or(true)
    );
}
