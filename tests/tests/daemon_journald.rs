//! End-to-end: under systemd (stderr is the journal stream named by `JOURNAL_STREAM`) the
//! agent's own log goes to journald over its native protocol with a field per event and span
//! field (issue 18 item 6): `CONTAINER=`, `FILE=`, `PASS=`, `PRIORITY=`, and nothing to stderr.
//!
//! systemd is not running here: the agent runs in a mount namespace of its own (`unshare -m`)
//! with a tmpfs on `/run` whose `/run/systemd/journal/socket` is a symlink to a datagram
//! socket this test bound, and `JOURNAL_STREAM` names its stderr file, as systemd would. The
//! containers use `networkMode: none` (the namespace hides the host's `/run/netns`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// Parses one datagram of journald's native protocol: `KEY=value\n`, or `KEY\n`, a 64-bit
/// little-endian length, the value and `\n`.
fn parse(mut b: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !b.is_empty() {
        let Some(nl) = b.iter().position(|&c| c == b'\n') else {
            break;
        };
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            b = &b[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &b[nl + 1..];
            if rest.len() < 8 {
                break;
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&rest[..8]);
            let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
            let Some(value) = rest.get(8..8 + len) else {
                break;
            };
            out.insert(key, String::from_utf8_lossy(value).into_owned());
            b = rest.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    out
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn journald_gets_native_fields() {
    if !require_root("journald_gets_native_fields") {
        return;
    }
    require_images();
    let d = Daemon::prepare("journald", "");
    // The fixture forces JSON lines; this test is about `auto`.
    let config = std::fs::read_to_string(&d.config).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &d.config,
        config.replace("format = \"json\"", "format = \"auto\""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let journal = d.dir.path().join("journal.sock");
    let sock = UnixDatagram::bind(&journal).unwrap_or_else(|e| panic!("{e}"));
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap_or_else(|e| panic!("{e}"));
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "web.yaml",
        &container_manifest("web", "exec sleep 1000", ""),
    );
    d.write(
        "bad.yaml",
        "apiVersion: agent/v1\nkind: Container\nmetadata: [\n",
    );

    let stderr = std::fs::File::create(&d.log).unwrap_or_else(|e| panic!("{e}"));
    let meta = stderr.metadata().unwrap_or_else(|e| panic!("{e}"));
    let script = "mount -t tmpfs -o mode=0755 agent-journal-test /run && \
                  mkdir -p /run/systemd/journal && \
                  ln -s \"$1\" /run/systemd/journal/socket && shift && exec \"$@\"";
    let _agent = Agent(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&journal)
            .arg(agent_e2e::agent_bin())
            .arg("run")
            .arg("--manifests")
            .arg(&d.manifests)
            .arg("--state-dir")
            .arg(&d.state)
            .arg("--socket")
            .arg(&d.socket)
            .arg("--config")
            .arg(&d.config)
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("unshare: {e}")),
    );

    let bad = d.manifests.join("bad.yaml").display().to_string();
    let mut entries: Vec<BTreeMap<String, String>> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let found = |entries: &[BTreeMap<String, String>]| {
        let container = entries
            .iter()
            .any(|e| e.get("CONTAINER").is_some_and(|c| c == "web"));
        let file = entries
            .iter()
            .any(|e| e.get("FILE") == Some(&bad) && e.get("PRIORITY").is_some_and(|p| p == "4"));
        let pass = entries
            .iter()
            .any(|e| e.get("PASS").is_some_and(|p| p.parse::<u64>().is_ok()));
        container && file && pass
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !found(&entries) && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            entries.push(parse(&buf[..n]));
        }
    }
    let dump = || {
        entries
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        found(&entries),
        "journal entries:\n{}\nstderr:\n{}",
        dump(),
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
    let started = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == "agent started"))
        .unwrap_or_else(|| panic!("{}", dump()));
    assert_eq!(
        started.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("agent")
    );
    assert_eq!(started.get("PRIORITY").map(String::as_str), Some("6"));
    assert!(started.contains_key("STATE"), "{started:?}");
    // Nothing went to stderr: the journal had it all.
    let text = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(!text.contains("agent started"), "{text}");
}
