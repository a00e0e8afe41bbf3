//! Where the exec driver keeps things, and small lookups shared by the driver, monitor and CLI.
//!
//! ```text
//! <state>/exec/<id>/config.json    OCI runtime spec (the bundle)
//! <state>/exec/<id>/spec.json      the ContainerSpec it was built from
//! <state>/exec/<id>/etc/           hosts, hostname, resolv.conf (bind-mounted)
//! <state>/exec/<id>/state.json     recorded state (super::state)
//! <state>/exec/<id>/state.reserve  16 KiB kept free for the exit record (super::state)
//! <state>/exec/<id>/container.log  output, JSON lines, rotated to .1, .2 (super::logs)
//! <state>/exec/<id>/monitor.log    the monitor's own messages, capped ([`open_monitor_log`])
//! <state>/exec/<id>/monitor.log.1  the last lines of the one before
//! <state>/exec/<id>/monitor.lock   held by the living monitor
//! <state>/exec/<id>/runtime/<id>/  libcontainer's state while the container exists
//! <state>/bin/agent-init           the init of `init: true` containers (super::init)
//! ```

use std::path::{Path, PathBuf};

use super::Error;
use super::spec::ContainerSpec;

/// `<state>/exec`.
pub fn exec_root(state_dir: &Path) -> PathBuf {
    state_dir.join("exec")
}

/// `<state>/exec/<id>`.
pub fn container_dir(state_dir: &Path, id: &str) -> PathBuf {
    exec_root(state_dir).join(id)
}

/// The signal that stops the container of `spec` and where it comes from (`manifest`, `image`,
/// `default`): the manifest's `stopSignal`, else the image's `StopSignal`, else SIGTERM, as
/// Docker. As written (`SIGQUIT`, `QUIT`, `3`); [`parse_signal`] reads it.
pub fn stop_signal_of(spec: &ContainerSpec) -> (String, &'static str) {
    if let Some(s) = &spec.stop_signal {
        return (s.clone(), "manifest");
    }
    if let Some(s) = spec.image.as_ref().and_then(|c| c.stop_signal().clone()) {
        return (s, "image");
    }
    ("SIGTERM".to_string(), "default")
}

/// `monitor.log` is rotated when a start finds it larger than this.
pub const MONITOR_LOG_CAP: u64 = 64 * 1024;
/// How much of a rotated `monitor.log` is kept, as `monitor.log.1` (its last whole lines).
pub const MONITOR_LOG_KEEP: u64 = 16 * 1024;

/// Opens `<dir>/monitor.log` for appending (the stderr of a new monitor). One found larger than
/// [`MONITOR_LOG_CAP`] is rotated first: its last [`MONITOR_LOG_KEEP`] bytes (whole lines)
/// replace `monitor.log.1` and it starts again empty. A container that restarts for months keeps
/// at most about `MONITOR_LOG_CAP + MONITOR_LOG_KEEP` plus what one run writes (monitors write a
/// line only when something is wrong). A failed rotation leaves the file as it is.
pub fn open_monitor_log(dir: &Path) -> Result<std::fs::File, Error> {
    let path = dir.join("monitor.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MONITOR_LOG_CAP)
        && let Err(e) = rotate_monitor_log(&path)
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot rotate the monitor's log");
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io("open", &path))
}

fn rotate_monitor_log(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MONITOR_LOG_KEEP)))?;
    let mut tail = Vec::new();
    Read::by_ref(&mut f)
        .take(MONITOR_LOG_KEEP)
        .read_to_end(&mut tail)?;
    // Whole lines only: drop the cut one at the front.
    if len > MONITOR_LOG_KEEP
        && let Some(i) = tail.iter().position(|&b| b == b'\n')
    {
        tail.drain(..=i);
    }
    let old = path.with_extension("log.1");
    let tmp = path.with_extension("log.1.tmp");
    let mut t = std::fs::File::create(&tmp)?;
    t.write_all(&tail)?;
    drop(t);
    std::fs::rename(&tmp, &old)?;
    f.set_len(0)
}

/// Ids become directory and cgroup names: 1-64 of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

/// The `linux.cgroupsPath` of the bundle in `dir`.
pub fn cgroups_path_of(dir: &Path) -> Result<String, Error> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Partial {
        linux: Option<Linux>,
    }
    let p: Partial = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    p.linux
        .and_then(|l| l.cgroups_path)
        .ok_or_else(|| Error::Runtime {
            container: dir.display().to_string(),
            reason: "config.json has no linux.cgroupsPath".into(),
        })
}

/// The `ContainerSpec` recorded in `dir`.
pub fn load_spec(dir: &Path) -> Result<ContainerSpec, Error> {
    let path = dir.join("spec.json");
    let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })
}

/// Parses `SIGTERM`, `TERM`, `term` or `15` into a signal number.
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    } else {
        let up = t.to_ascii_uppercase();
        let name = if up.starts_with("SIG") {
            up
        } else {
            format!("SIG{up}")
        };
        if let Ok(sig) = name.parse::<nix::sys::signal::Signal>() {
            return Ok(sig as i32);
        }
        if let Some(rt) = name.strip_prefix("SIGRTMIN") {
            let off: i32 = if rt.is_empty() {
                0
            } else {
                rt.strip_prefix('+')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(-1)
            };
            let n = libc::SIGRTMIN() + off;
            if off >= 0 && n <= libc::SIGRTMAX() {
                return Ok(n);
            }
        }
    }
    Err(Error::BadSignal(s.to_string()))
}

/// Finds the id of the container called `name` (or with that id) under `state_dir`.
pub fn resolve_name(state_dir: &Path, name: &str) -> Result<String, Error> {
    let root = exec_root(state_dir);
    if check_id(name).is_ok() && root.join(name).join("state.json").is_file() {
        return Ok(name.to_string());
    }
    let rd = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(_) => return Err(Error::NotFound(name.to_string())),
    };
    for e in rd.flatten() {
        if let Ok(Some(st)) = super::state::ContainerState::load(&e.path())
            && st.name == name
        {
            return Ok(st.id);
        }
    }
    Err(Error::NotFound(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGTERM").ok(), Some(libc::SIGTERM));
        assert_eq!(parse_signal("kill").ok(), Some(libc::SIGKILL));
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("HUP").ok(), Some(libc::SIGHUP));
        assert_eq!(parse_signal("SIGRTMIN+1").ok(), Some(libc::SIGRTMIN() + 1));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("web-1_a.b").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
    }
}
