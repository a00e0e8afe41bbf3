//! Container exits as events: inotify on the monitors' state files.
//!
//! Every container's monitor records its state in `<state>/exec/<id>/state.json`, atomically
//! (a temporary file renamed into place), when the container is created, starts and exits (see
//! [`crate::driver::exec::state`]). One thread watches `<state>/exec` for new container
//! directories and each container directory for a `state.json` moved or written into place,
//! and reports the container's name for each. The loop then checks that container alone
//! ([`super::supervise::Supervisor::check`]); a write that is not an exit costs one read of a
//! small file. Nothing is polled: an idle agent with 50 containers gets no wake-up from here.
//! CRI-O's exit directory watch (`StartExitMonitor`) is the model.
//!
//! A monitor killed from outside writes nothing: the same thread also holds a pidfd of every
//! running container's monitor (opened when its `running` state is written, and for every
//! container found at start-up) and waits on them in the same `poll(2)` as the inotify
//! descriptor. A monitor that ends is reported like a state write; the loop then finds the
//! container recorded exited (the monitor's normal end) or running without its monitor, which
//! it repairs ([`crate::plan::Change::RepairMonitor`]). A monitor found dead when its pidfd is
//! opened (at start-up: it died while the agent was down) is reported at once.
//!
//! What neither can see (a state written while the watch was being set up, a kernel without
//! pidfds) the periodic resync's full check catches.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::driver::exec::state::{ContainerState, Status, is_same_process};
use crate::driver::exec::{AnyExecDriver, ExecDriver};

const STATE_FILE: &str = "state.json";

/// Starts the watcher thread; `on_state(name)` is called for each state file written. Fails
/// when inotify is not available (the caller then relies on the resync).
pub fn spawn(
    exec_root: PathBuf,
    exec: AnyExecDriver,
    on_state: impl Fn(String) + Send + 'static,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&exec_root)?;
    let inotify = Inotify::init()?;
    let mut w = Watch {
        inotify,
        root: exec_root,
        dirs: HashMap::new(),
        exec,
        monitors: HashMap::new(),
        found_dead: Vec::new(),
    };
    w.inotify.watches().add(
        &w.root,
        WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ONLYDIR,
    )?;
    for entry in std::fs::read_dir(&w.root)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(id) = w.watch_dir(&entry.file_name())
            && w.arm(&id)
        {
            w.found_dead.push(id);
        }
    }
    std::thread::Builder::new()
        .name("agent-exits".into())
        .spawn(move || w.run(on_state))?;
    Ok(())
}

struct Watch {
    inotify: Inotify,
    root: PathBuf,
    /// Watch of each container directory -> the runtime id (the directory's name).
    dirs: HashMap<WatchDescriptor, String>,
    exec: AnyExecDriver,
    /// Runtime id -> the pid and a pidfd of its running container's monitor.
    monitors: HashMap<String, (i32, OwnedFd)>,
    /// Monitors found dead at start-up: reported first.
    found_dead: Vec<String>,
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the kernel just gave us this descriptor.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl Watch {
    /// Watches the monitor that container `id`'s state file names while it says `running`
    /// (nothing to do when it is the one watched already); forgets it otherwise. True when
    /// the state says `running` and its monitor is gone already.
    fn arm(&mut self, id: &str) -> bool {
        let st = match ContainerState::load(&self.root.join(id)) {
            Ok(Some(st)) => st,
            _ => {
                self.monitors.remove(id);
                return false;
            }
        };
        let (Status::Running, Some(pid)) = (st.status, st.monitor_pid) else {
            self.monitors.remove(id);
            return false;
        };
        if self.monitors.get(id).is_some_and(|(p, _)| *p == pid) {
            return false;
        }
        self.monitors.remove(id);
        // Opened first, checked after: a pid reused in between is not taken for the monitor.
        let fd = pidfd_open(pid);
        if !is_same_process(pid, st.monitor_start) {
            // It is running without its monitor, or the monitor is recording the exit and
            // going: the loop tells which.
            return true;
        }
        if let Some(fd) = fd {
            self.monitors.insert(id.to_string(), (pid, fd));
        }
        false
    }

    fn watch_dir(&mut self, name: &OsStr) -> Option<String> {
        let id = name.to_str()?.to_string();
        let path = self.root.join(&id);
        match self.inotify.watches().add(
            &path,
            WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE | WatchMask::ONLYDIR,
        ) {
            Ok(wd) => {
                self.dirs.insert(wd, id.clone());
                Some(id)
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), error = %e, "cannot watch container directory");
                None
            }
        }
    }

    fn report(&self, id: &str, on_state: &impl Fn(String)) {
        if let Ok(info) = self.exec.state(id)
            && !info.name.is_empty()
        {
            on_state(info.name);
        }
    }

    /// Waits on the inotify descriptor and the monitors' pidfds; returns the ids whose monitor
    /// ended and whether inotify has events.
    fn wait(&mut self) -> std::io::Result<(Vec<String>, bool)> {
        let mut fds = Vec::with_capacity(1 + self.monitors.len());
        let mut ids = Vec::with_capacity(self.monitors.len());
        fds.push(libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (id, (_, fd)) in &self.monitors {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            ids.push(id.clone());
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok((Vec::new(), false));
            }
            return Err(e);
        }
        let ended: Vec<String> = fds[1..]
            .iter()
            .zip(ids)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, id)| id)
            .collect();
        for id in &ended {
            self.monitors.remove(id);
        }
        Ok((ended, fds[0].revents != 0))
    }

    fn run(mut self, on_state: impl Fn(String)) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            for id in std::mem::take(&mut self.found_dead) {
                self.report(&id, &on_state);
            }
            let (ended, readable) = match self.wait() {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "container exit watcher stopped; exits are noticed at the next resync");
                    return;
                }
            };
            let mut written = ended;
            let events = if readable {
                match self.inotify.read_events(&mut buf) {
                    Ok(events) => Some(events),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                        ) =>
                    {
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "container exit watcher stopped; exits are noticed at the next resync");
                        return;
                    }
                }
            } else {
                None
            };
            let mut new_dirs = Vec::new();
            let mut overflow = false;
            for ev in events.into_iter().flatten() {
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&ev.wd);
                    continue;
                }
                let Some(name) = ev.name else { continue };
                if let Some(id) = self.dirs.get(&ev.wd) {
                    if name == STATE_FILE {
                        written.push(id.clone());
                    }
                } else if ev.mask.contains(EventMask::ISDIR) {
                    new_dirs.push(name.to_os_string());
                }
            }
            for d in new_dirs {
                // The state may have been written before the watch was set: look once.
                if let Some(id) = self.watch_dir(&d)
                    && Path::new(&self.root).join(&id).join(STATE_FILE).exists()
                {
                    written.push(id);
                }
            }
            if overflow {
                // Events were lost: every container is a suspect.
                written.extend(self.dirs.values().cloned());
            }
            written.sort();
            written.dedup();
            for id in written {
                let _ = self.arm(&id);
                self.report(&id, &on_state);
            }
        }
    }
}
