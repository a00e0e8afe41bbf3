//! Socket activation: the API socket handed over by systemd (`agent.socket`) or by
//! `systemd-socket-activate`, through `LISTEN_FDS` and `LISTEN_PID` (sd_listen_fds(3)).
//!
//! The variables are read once, at start-up, by the `listenfd` crate, which removes
//! `LISTEN_FDS` and `LISTEN_PID` from the environment (this module removes `LISTEN_FDNAMES`), so
//! that the container monitors the agent starts do not take the socket for theirs; it also marks
//! the descriptor close-on-exec, so that they do not inherit it either. `listenfd` accepts a
//! missing `LISTEN_PID` (its one extension of the protocol); a `LISTEN_PID` naming another
//! process means the descriptors are not ours and they are left alone.
//!
//! Only the first descriptor (fd 3) is used, and it must be a Unix stream socket (a
//! socket unit with `ListenStream=/run/agent/agent.sock`); anything else stops the start with an
//! error that says so. An activated socket belongs to systemd: the agent neither replaces nor
//! removes its file ([`crate::api::server::adopt`]).

use std::os::unix::net::UnixListener;

use super::Error;

/// Takes the listening socket passed by the service manager, if any.
///
/// # Safety
///
/// Changes the process environment: call it while the process has a single thread (before the
/// async runtime or any other thread starts).
pub unsafe fn take_from_env() -> Result<Option<UnixListener>, Error> {
    let mut fds = listenfd::ListenFd::from_env();
    // SAFETY: the caller guarantees that no other thread runs.
    unsafe { std::env::remove_var("LISTEN_FDNAMES") };
    if fds.len() == 0 {
        return Ok(None);
    }
    if fds.len() > 1 {
        tracing::warn!(
            passed = fds.len(),
            "socket activation: only the first descriptor (fd 3) is used as the API socket"
        );
    }
    match fds.take_unix_listener(0) {
        Ok(Some(l)) => Ok(Some(l)),
        Ok(None) => Ok(None),
        Err(e) => Err(Error::Refused(format!(
            "socket activation: LISTEN_FDS passes fd 3, which is not a Unix stream socket \
             ({e}); the agent's socket unit must use ListenStream= with a path, e.g. \
             ListenStream=/run/agent/agent.sock"
        ))),
    }
}
