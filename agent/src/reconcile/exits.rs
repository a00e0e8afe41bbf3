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
//! What inotify cannot see (a monitor killed with the container left running, a state written
//! while the watch was being set up) the periodic resync's full check catches.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

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
    };
    w.inotify.watches().add(
        &w.root,
        WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ONLYDIR,
    )?;
    for entry in std::fs::read_dir(&w.root)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            w.watch_dir(&entry.file_name());
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
}

impl Watch {
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

    fn run(mut self, on_state: impl Fn(String)) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let events = match self.inotify.read_events_blocking(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(error = %e, "container exit watcher stopped; exits are noticed at the next resync");
                    return;
                }
            };
            let mut new_dirs = Vec::new();
            let mut written = Vec::new();
            let mut overflow = false;
            for ev in events {
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
                self.report(&id, &on_state);
            }
        }
    }
}
