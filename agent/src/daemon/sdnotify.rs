//! systemd's notification protocol (`Type=notify`): `READY=1`, `STOPPING=1`, `STATUS=...` and
//! watchdog keep-alives (`WATCHDOG=1`).
//!
//! The socket path (and the watchdog interval) are taken from the environment once, at start-up,
//! and removed from it, so that the processes the agent starts (container monitors, which outlive
//! it) do not inherit `NOTIFY_SOCKET` and cannot be mistaken for the service's main process.
//! Written by hand rather than with the `sd-notify` crate because that crate re-reads the
//! environment on every call, which the removal rules out.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where to send notifications; `None` when not started by systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and removes them from the
    /// environment.
    ///
    /// # Safety
    ///
    /// Changes the process environment: call it while the process has a single thread (before
    /// the async runtime or any other thread starts).
    pub unsafe fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let pid_ok = match std::env::var("WATCHDOG_PID") {
            Ok(p) => p.parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0 && pid_ok)
            .map(Duration::from_micros);
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the caller guarantees that no other thread runs.
            unsafe { std::env::remove_var(var) };
        }
        Notifier { socket, watchdog }
    }

    /// A notifier for a given socket (tests).
    pub fn with_socket(socket: impl Into<String>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: Some(socket.into()),
            watchdog,
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd asked for (`WatchdogSec`); keep-alives go out at half of it.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Errors are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = send(socket, state) {
            tracing::warn!(socket = %socket, error = %e, "cannot notify systemd");
        }
    }

    pub fn ready(&self) {
        self.notify("READY=1\nSTATUS=watching manifests");
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=shutting down");
    }

    pub fn keep_alive(&self) {
        self.notify("WATCHDOG=1");
    }

    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }
}

fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let addr = match socket.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(PathBuf::from(socket))?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::with_socket(path.to_str().unwrap(), Some(Duration::from_secs(4)));
        n.ready();
        n.keep_alive();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=watching manifests");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        assert_eq!(n.watchdog(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("agent-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::with_socket(format!("@{name}"), None).stopping();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=shutting down");
    }

    #[test]
    fn disabled_without_socket() {
        let n = Notifier::default();
        assert!(!n.enabled());
        n.ready(); // no-op
    }
}
