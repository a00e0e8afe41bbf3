//! `agent system`: host-level housekeeping.
//!
//! `agent system reset` removes what the agent keeps on the host outside containers once no
//! container is left: every network's bridge (the default network's included, which the agent
//! keeps while it runs, as Docker keeps `docker0`), the instance's firewall table or chains and
//! its accept rules in `DOCKER-USER`/`FORWARD`. It runs only while no agent runs on the state
//! directory (it takes the store's lock) and refuses while the store still records containers:
//! containers are removed by the agent itself, through its one mutation path (empty the manifest
//! directory, let the agent converge, stop it), never behind its back. With `--state`, the state
//! directory goes too (store, images, layers, volumes: nothing is kept). This is what
//! `scripts/run-example.sh --clean` and a package purge use.

use std::path::PathBuf;

use crate::driver::network::FirewallDriver;
use crate::reconcile::translate::network::Net;
use crate::store::{self, Store};

use super::Outcome;
use super::daemon::ClientOpts;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Remove the agent's networks (bridges, the default one included) and firewall rules once
    /// no container is left; with --state, the state directory too. The agent must be stopped.
    Reset(ResetArgs),
    /// Disk use of the state directory by kind (images, layers, containers, volumes, logs) and
    /// what removing the unused ones would free.
    Df(super::volume::DfArgs),
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Also delete the state directory: the store, images, layers and volumes (their data is
    /// lost).
    #[arg(long)]
    pub state: bool,
}

pub fn run(cmd: Command) -> crate::Result<Outcome> {
    match cmd {
        Command::Reset(args) => reset(args),
        Command::Df(args) => super::volume::df(args),
    }
}

fn reset(args: ResetArgs) -> crate::Result<Outcome> {
    let settings = args.client.settings()?;
    let (config, state_dir) = (settings.config, settings.state_dir);
    if !state_dir.join(store::DB_FILE).exists() {
        println!(
            "agent: {} holds no state; nothing to reset",
            state_dir.display()
        );
        return Ok(Outcome::OK);
    }
    let mut st = match Store::open(&state_dir) {
        Ok(s) => s,
        Err(store::Error::Locked { pid, .. }) => {
            return Err(crate::Error::Failed(format!(
                "the agent (pid {}) is running on {}: stop it first (its containers are \
                 removed by emptying its manifest directory and letting it converge)",
                pid.map_or_else(|| "?".into(), |p| p.to_string()),
                state_dir.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let containers = st.transaction(|tx| tx.containers())?;
    if !containers.is_empty() {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        return Err(crate::Error::Failed(format!(
            "{} still records {} container(s) ({}): remove their manifests and let the agent \
             remove them (agent run --manifests <empty directory>), then reset",
            state_dir.display(),
            names.len(),
            names.join(", ")
        )));
    }
    let networks = st.transaction(|tx| tx.networks())?;
    let shared = std::sync::Arc::new(std::sync::Mutex::new(st));
    let net = Net::open(&config, shared.clone()).map_err(crate::Error::Failed)?;
    let mut failed = false;
    for n in &networks {
        match net.driver().remove_network(&n.name) {
            Ok(()) => println!("removed network {} (bridge {})", n.name, n.bridge),
            Err(e) => {
                failed = true;
                eprintln!("agent: network {}: {e}", n.name);
            }
        }
    }
    match net.driver().firewall().remove_all() {
        Ok(()) => println!(
            "removed firewall rules of instance {}",
            config.network.instance
        ),
        Err(e) => {
            failed = true;
            eprintln!("agent: firewall: {e}");
        }
    }
    drop(net);
    drop(shared);
    if failed {
        return Ok(Outcome::FAILED);
    }
    if args.state {
        remove_state(&state_dir)?;
        println!("removed {}", state_dir.display());
    }
    Ok(Outcome::OK)
}

/// Deletes the state directory. Mounts below it (a container's rootfs left mounted) would make
/// `remove_dir_all` walk into them: refuse instead.
fn remove_state(dir: &PathBuf) -> crate::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    if let Some(m) = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|m| m.starts_with(&prefix))
    {
        return Err(crate::Error::Failed(format!(
            "{m} is still mounted below {}: not deleting it",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(dir).map_err(|source| crate::Error::Io {
        context: format!("removing {}", dir.display()),
        source,
    })
}
