//! One settings resolution for every command.
//!
//! Each setting is taken from the first of: the command-line flag, the `AGENT_*` environment
//! variable, the config file's key, the default. Every command that needs one resolves it here
//! (`logs`, `exec`, `kill`, `plan`, `export`, `image`, `stats`, `top`, `events`, `volume`,
//! `system`, `run`, ...), so `agent logs web` on a host configured with
//! `state_dir = "/srv/agent"` reads /srv/agent, as the agent does.
//!
//! | setting            | flag                         | environment           | config.toml     | default                  |
//! |--------------------|------------------------------|-----------------------|-----------------|--------------------------|
//! | config file        | `--config`                   | `AGENT_CONFIG`        | -               | /etc/agent/config.toml if it exists |
//! | API socket         | `--socket`                   | `AGENT_SOCKET`        | `socket`        | /run/agent/agent.sock    |
//! | state directory    | `--state-dir`                | `AGENT_STATE_DIR`     | `state_dir`     | /var/lib/agent           |
//! | manifest directory | `--manifests` (`plan DIR`)   | `AGENT_MANIFESTS_DIR` | `manifests_dir` | /etc/agent.d             |
//! | graph driver       | `--graph-driver`             | `AGENT_GRAPH_DRIVER`  | `graph.driver`  | overlay if it works, else vfs |
//!
//! A config file named by `--config` or `AGENT_CONFIG` must exist; the default one may be
//! missing (all defaults). An empty environment variable counts as unset.

use std::path::{Path, PathBuf};

use crate::api::Client;
use crate::daemon::config::{self, Config};
use crate::driver::graph::DriverKind;

pub const ENV_CONFIG: &str = "AGENT_CONFIG";
pub const ENV_SOCKET: &str = "AGENT_SOCKET";
pub const ENV_STATE_DIR: &str = "AGENT_STATE_DIR";
pub const ENV_MANIFESTS_DIR: &str = "AGENT_MANIFESTS_DIR";
pub const ENV_GRAPH_DRIVER: &str = "AGENT_GRAPH_DRIVER";

/// The flags every client command takes: where the running agent (or its store) is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientOpts {
    /// The agent's API socket, for commands that ask the running agent [env: AGENT_SOCKET;
    /// default: `socket` of the config file, /run/agent/agent.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The agent's state directory [env: AGENT_STATE_DIR; default: `state_dir` of the config
    /// file, /var/lib/agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration file [env: AGENT_CONFIG; default: /etc/agent/config.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file's contents (defaults when there is none), with the socket, state and
    /// manifest directories below already applied.
    pub config: Config,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub manifests_dir: PathBuf,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The config file to read and whether it must exist.
pub fn config_path(flag: Option<&Path>) -> (PathBuf, bool) {
    match flag.map(Path::to_path_buf).or_else(|| env_path(ENV_CONFIG)) {
        Some(p) => (p, true),
        None => (PathBuf::from(config::DEFAULT_CONFIG_PATH), false),
    }
}

/// The config file (`--config`, `AGENT_CONFIG`, the default path).
pub fn load_config(flag: Option<&Path>) -> crate::Result<Config> {
    let (path, required) = config_path(flag);
    Config::load(&path, required).map_err(|e| crate::daemon::Error::from(e).into())
}

/// Resolves every setting from the flags given (`None`: not on the command line).
pub fn resolve(
    config: Option<&Path>,
    socket: Option<&Path>,
    state_dir: Option<&Path>,
    manifests_dir: Option<&Path>,
) -> crate::Result<Settings> {
    let mut cfg = load_config(config)?;
    let pick = |flag: Option<&Path>, env: &str, file: &Path| {
        flag.map(Path::to_path_buf)
            .or_else(|| env_path(env))
            .unwrap_or_else(|| file.to_path_buf())
    };
    let socket = pick(socket, ENV_SOCKET, &cfg.socket);
    let state_dir = pick(state_dir, ENV_STATE_DIR, &cfg.state_dir);
    let manifests_dir = pick(manifests_dir, ENV_MANIFESTS_DIR, &cfg.manifests_dir);
    cfg.socket = socket.clone();
    cfg.state_dir = state_dir.clone();
    cfg.manifests_dir = manifests_dir.clone();
    Ok(Settings {
        config: cfg,
        socket,
        state_dir,
        manifests_dir,
    })
}

/// The graph driver: the flag, `AGENT_GRAPH_DRIVER`, `graph.driver` of the config; `None`:
/// detect.
pub fn graph_driver(flag: Option<DriverKind>, cfg: &Config) -> crate::Result<Option<DriverKind>> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var(ENV_GRAPH_DRIVER) {
        Ok(v) if !v.is_empty() => <DriverKind as clap::ValueEnum>::from_str(&v, true)
            .map(Some)
            .map_err(|_| {
                crate::Error::Usage(format!(
                    "{ENV_GRAPH_DRIVER}={v:?}: allowed values are overlay, vfs"
                ))
            }),
        _ => Ok(cfg.graph.driver.to_driver_kind()),
    }
}

impl ClientOpts {
    /// Every setting, from these flags, the environment and the config file.
    pub fn settings(&self) -> crate::Result<Settings> {
        resolve(
            self.config.as_deref(),
            self.socket.as_deref(),
            self.state_dir.as_deref(),
            None,
        )
    }

    /// The client of the agent's socket and the state directory.
    pub fn resolve(&self) -> crate::Result<(Client, PathBuf)> {
        let s = self.settings()?;
        Ok((Client::new(&s.socket), s.state_dir))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Flag over config over default (the environment is process-wide: the e2e tests cover
    /// it, with the real binary).
    #[test]
    fn flag_then_config_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "state_dir = \"/srv/agent\"\nsocket = \"/srv/agent.sock\"\n",
        )
        .unwrap();
        let s = resolve(Some(&file), None, Some(Path::new("/tmp/x")), None).unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.config.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.socket, PathBuf::from("/srv/agent.sock"));
        assert_eq!(s.manifests_dir, PathBuf::from("/etc/agent.d"));
        let e = resolve(Some(&dir.path().join("nope.toml")), None, None, None).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }
}
