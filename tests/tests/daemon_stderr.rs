//! `agent run` whose stderr reader has gone away (a closed pipe, as when a log shipper or the
//! terminal dies): logging must not panic (tracing-subscriber's fallback `eprintln!` used to,
//! taking the signal handler down with it) and SIGTERM must still end the agent with status 0.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{Daemon, require_root};

const VOLUME: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\nspec:\n  reclaim: retain\n";
const BROKEN: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\nspec:\n  sise: 1Gi\n";

/// A pipe (read end non-blocking, both close-on-exec).
fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors on success; each is owned exactly once below.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fds[0] is ours and open.
    let rc = unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Reads what the pipe holds now (the agent must not block on a full pipe meanwhile).
fn drain(r: &mut File, into: &mut Vec<u8>) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_works_and_nothing_panics_after_stderr_reader_is_gone() {
    if !require_root("sigterm_works_and_nothing_panics_after_stderr_reader_is_gone") {
        return;
    }
    let d = Daemon::prepare("stderr", "");
    let (mut read, write) = pipe();
    let child = Command::new(agent_e2e::agent_bin())
        .args(["run", "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--socket")
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write))
        .spawn()
        .expect("spawn agent run");
    let mut agent = Agent(child);
    let mut early = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        drain(&mut read, &mut early);
        if d.socket.exists() && d.cli(&["ps"]).status.success() {
            break;
        }
        if let Ok(Some(st)) = agent.0.try_wait() {
            panic!(
                "agent run exited early ({st}):\n{}",
                String::from_utf8_lossy(&early)
            );
        }
        assert!(Instant::now() < deadline, "agent did not start within 20s");
        std::thread::sleep(Duration::from_millis(100));
    }
    drain(&mut read, &mut early);
    assert!(
        String::from_utf8_lossy(&early).contains("\"level\""),
        "the agent logs JSON to the pipe: {}",
        String::from_utf8_lossy(&early)
    );

    // The reader goes away; from now on every log write gets EPIPE.
    drop(read);

    // Make it log: a good file, then a broken one (an error line), and check it still works.
    d.write("data.yaml", VOLUME);
    d.wait_for("data.yaml ok", Duration::from_secs(20), || {
        (d.file_status("data.yaml")?["status"] == "ok").then_some(())
    });
    d.write("data.yaml", BROKEN);
    d.wait_for("data.yaml error", Duration::from_secs(20), || {
        (d.file_status("data.yaml")?["status"] == "error").then_some(())
    });
    assert!(
        agent.0.try_wait().expect("try_wait").is_none(),
        "the agent died while logging to a closed pipe"
    );

    // SIGTERM is still obeyed: exit status 0 (not the panic's 101, not a hang).
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = agent.0.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the agent ignored SIGTERM for 20s once its stderr reader was gone"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "agent run ended with {status}");
}
