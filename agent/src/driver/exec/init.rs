//! The init of containers with `init: true` (Docker's `--init`): `agent-init`, a static
//! executable built from `agent/init/main.rs` by `agent/build.rs` and embedded in the agent
//! binary, so nothing is downloaded or installed beside it. [`ensure`] writes it to
//! `<state>/bin/agent-init` (0755, atomically, only when missing or different: an upgraded agent
//! replaces it; running containers keep the file they mounted); the spec builder bind-mounts it
//! read-only at [`TARGET`] and runs it as the container's process 1 with the command after `--`.
//! What it does (signals, zombies, exit code): the `//!` docs of `agent/init/main.rs` and
//! `docs/exec.md`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Error;

/// The static `agent-init` executable.
pub const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agent-init"));

/// Where the init is mounted inside the container (Docker mounts its own at `/sbin/docker-init`).
pub const TARGET: &str = "/sbin/agent-init";

/// `<state>/bin/agent-init`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("bin").join("agent-init")
}

/// Writes [`BINARY`] to [`path`] unless it is there already with the same content and mode
/// 0755; returns the path. Creates run in parallel: one writer at a time.
pub fn ensure(state_dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    static WRITING: Mutex<()> = Mutex::new(());
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let p = path(state_dir);
    let current = std::fs::metadata(&p).is_ok_and(|m| {
        m.len() == BINARY.len() as u64
            && m.permissions().mode() & 0o7777 == 0o755
            && std::fs::read(&p).is_ok_and(|b| b == BINARY)
    });
    if current {
        return Ok(p);
    }
    let dir = state_dir.join("bin");
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let tmp = dir.join(format!(".agent-init.tmp-{}", std::process::id()));
    let result = (|| {
        std::fs::write(&tmp, BINARY).map_err(Error::io("write", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(Error::io("chmod", &tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(Error::io("fsync", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(Error::io("rename into place", &p))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync directory", &dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_init_is_a_static_executable() {
        // ELF, and no program interpreter (PT_INTERP = 3): it runs without a C library.
        assert_eq!(&BINARY[..4], b"\x7fELF");
        let phoff = u64::from_le_bytes(BINARY[32..40].try_into().unwrap_or_default()) as usize;
        let phentsize = u16::from_le_bytes([BINARY[54], BINARY[55]]) as usize;
        let phnum = u16::from_le_bytes([BINARY[56], BINARY[57]]) as usize;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            let kind = u32::from_le_bytes(BINARY[at..at + 4].try_into().unwrap_or_default());
            assert_ne!(kind, 3, "agent-init has a program interpreter: not static");
        }
    }

    #[test]
    fn ensure_writes_once_and_repairs() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = ensure(d.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&p).ok().as_deref(), Some(BINARY));
        let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777);
        assert_eq!(mode.ok(), Some(0o755));
        std::fs::write(&p, b"garbage").unwrap_or_else(|e| panic!("{e}"));
        ensure(d.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&p).ok().as_deref(), Some(BINARY));
    }
}
