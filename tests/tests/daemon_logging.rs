//! End-to-end: per-container `logging` (issue 17 item 8).
//! - `logging: {driver: journald}` sends each output line over the journal's native protocol to
//!   the socket of `[container_logs] journal_socket` (here a datagram socket the test binds):
//!   `MESSAGE`, `PRIORITY` 6 for stdout and 3 for stderr, `CONTAINER_NAME`, `CONTAINER_ID`,
//!   `SYSLOG_IDENTIFIER`; `agent logs` still shows the lines (the local copy, Docker's dual
//!   logging).
//! - `logging: {maxSize, maxFiles}` rotates that container's log over the config's default
//!   (`[container_logs] max_size`, `max_files`), which a container without `logging` gets; a
//!   change of `logging` recreates the container with the field in the reason.
//!
//! Fails on the old code: the field and the config table were unknown (validate and the config
//! refused them).

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    // stderr records go to agent logs' stderr
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn running_id(d: &Daemon, name: &str) -> String {
    d.wait_for(&format!("{name} running"), Duration::from_secs(60), || {
        let row = d.try_ps_row(name)?;
        (row["state"] == "running").then(|| row["id"].as_str().map(str::to_string))?
    })
}

/// The fields of one native-protocol datagram (`KEY=VALUE` lines, or `KEY\n<le64 len><data>\n`).
fn fields(mut buf: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !buf.is_empty() {
        let nl = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        let line = &buf[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            buf = &buf[(nl + 1).min(buf.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &buf[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default()) as usize;
            out.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            buf = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

#[test]
fn journald_driver_sends_each_line_with_the_containers_fields() {
    if !require_root("journald_driver_sends_each_line_with_the_containers_fields") {
        return;
    }
    require_images();
    let sock_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sock_path = sock_dir.path().join("journal.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("bind: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut d = Daemon::prepare(
        "journald",
        &format!(
            "[container_logs]\njournal_socket = \"{}\"\n",
            sock_path.display()
        ),
    );
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "web.yaml",
        &container_manifest(
            "web",
            "echo out-line-1; echo err-line-1 >&2; exec sleep 1000",
            "  logging: {driver: journald}\n",
        ),
    );
    d.start();
    let id = running_id(&d, "web");
    let mut got: Vec<BTreeMap<String, String>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 65536];
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(fields(&buf[..n]));
        }
    }
    let find = |msg: &str| {
        got.iter()
            .find(|f| f.get("MESSAGE").map(String::as_str) == Some(msg))
            .cloned()
            .unwrap_or_else(|| panic!("no datagram with MESSAGE={msg}: {got:?}"))
    };
    let out = find("out-line-1");
    assert_eq!(out["PRIORITY"], "6", "{out:?}");
    assert_eq!(out["CONTAINER_NAME"], "web", "{out:?}");
    assert_eq!(out["CONTAINER_ID"], id, "{out:?}");
    assert_eq!(out["SYSLOG_IDENTIFIER"], "web", "{out:?}");
    let err = find("err-line-1");
    assert_eq!(err["PRIORITY"], "3", "{err:?}");
    assert_eq!(err["CONTAINER_NAME"], "web", "{err:?}");
    // The local copy (`agent logs`) has both lines too.
    let text = logs(&d, "web");
    assert!(
        text.contains("out-line-1") && text.contains("err-line-1"),
        "{text}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}

const CHATTY: &str = "i=0; while [ $i -lt 100 ]; do \
                      echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; \
                      echo done-writing; exec sleep 1000";

fn log_files(d: &Daemon, id: &str) -> Vec<(String, u64)> {
    let dir = d.state.join("exec").join(id);
    let mut v: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("container.log")
                .then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn max_size_and_max_files_over_the_config_default_and_a_change_recreates() {
    if !require_root("max_size_and_max_files_over_the_config_default_and_a_change_recreates") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare(
        "logrot",
        "[container_logs]\nmax_size = \"1Ki\"\nmax_files = 3\n",
    );
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "chatty.yaml",
        &container_manifest("chatty", CHATTY, "  logging: {maxSize: 2Ki, maxFiles: 2}\n"),
    );
    d.write("plain.yaml", &container_manifest("plain", CHATTY, ""));
    d.start();
    let chatty = running_id(&d, "chatty");
    let plain = running_id(&d, "plain");
    for n in ["chatty", "plain"] {
        d.wait_for(&format!("{n} done"), Duration::from_secs(60), || {
            logs(&d, n).contains("done-writing").then_some(())
        });
    }
    // One record is ~100 bytes: each file ends below its maxSize plus one record.
    let files = log_files(&d, &chatty);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["container.log", "container.log.1"], "{files:?}");
    assert!(files.iter().all(|(_, s)| *s <= 2048 + 200), "{files:?}");
    assert!(
        files[1].1 > 1024 + 200,
        "rotated at the config's 1Ki: {files:?}"
    );
    let files = log_files(&d, &plain);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["container.log", "container.log.1", "container.log.2"],
        "{files:?}"
    );
    assert!(files.iter().all(|(_, s)| *s <= 1024 + 200), "{files:?}");

    d.write(
        "chatty.yaml",
        &container_manifest("chatty", CHATTY, "  logging: {maxSize: 2Ki, maxFiles: 4}\n"),
    );
    d.wait_for("chatty recreated", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let row = d.try_ps_row("chatty")?;
        (row["state"] == "running" && row["id"].as_str() != Some(chatty.as_str())).then_some(())
    });
    let events = d.cli_ok(&["events", "-n", "10000"]);
    assert!(events.contains("logging.maxFiles 2 -> 4"), "{events}");
    d.remove_all_and_wait(Duration::from_secs(60));
}
