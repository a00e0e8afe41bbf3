//! firewalld: the agent's bridges go into its `trusted` zone, at runtime only, and leave it with
//! the bridge.
//!
//! Where firewalld runs, its nftables table rejects forwarded traffic of interfaces in no zone,
//! and input from them falls to the default zone (`public`: most ports rejected): the agent's own
//! accept rules cannot override that (every table on a hook must accept). Other engines put their
//! bridges into firewalld: netavark adds each network's subnet as a source of the `trusted` zone
//! over D-Bus and removes it with the network; Docker adds its bridges to its own `docker` zone.
//! The agent adds each bridge *interface* to `trusted` when it creates (or repairs) the bridge,
//! and at start-up for the bridges it has, and removes it when it deletes the bridge; runtime
//! only (never `--permanent`): firewalld forgets it when it restarts or reloads, and the agent's
//! next resync, `agent apply` or start puts it back (`agent status` says so meanwhile). A bridge the administrator put in
//! another zone is left there, and removed from no zone but `trusted`.
//!
//! It talks to firewalld with `firewall-cmd` (`--zone=trusted --add-interface=B`, the D-Bus call
//! `org.fedoraproject.FirewallD1.zone.addInterface`), which exists wherever firewalld does and
//! keeps a D-Bus client out of the agent for a few calls per bridge. It is only run when a
//! system bus is there (`DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`) and
//! `firewall-cmd` is installed, so hosts without firewalld pay nothing; where it runs, one
//! `--get-active-zones` call tells which bridges are where. Failures are logged, not
//! fatal: [`super::host::forward_problems`] reports bridges firewalld would still drop.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Error, run};

/// The zone the bridges go into.
pub const ZONE: &str = "trusted";

const CMD: &str = "firewall-cmd";

/// The system bus socket, when the bus address names one (`unix:path=...`).
fn bus_socket() -> Option<PathBuf> {
    match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
        Ok(addr) => socket_of(&addr),
        Err(_) => Some(PathBuf::from("/run/dbus/system_bus_socket")),
    }
}

/// The first `unix:path=` socket of a D-Bus address (`;`-separated, `,`-separated keys).
fn socket_of(addr: &str) -> Option<PathBuf> {
    addr.split(';')
        .flat_map(|a| a.split(','))
        .find_map(|p| p.split(':').next_back()?.strip_prefix("path="))
        .map(PathBuf::from)
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Whether firewalld may be there to ask: a system bus socket and `firewall-cmd`.
fn reachable() -> bool {
    let bus = match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
        // An address without a socket path (abstract, tcp): ask.
        Ok(_) => bus_socket().is_none_or(|p| p.exists()),
        Err(_) => bus_socket().is_some_and(|p| p.exists()),
    };
    bus && installed(CMD)
}

/// firewalld's zone of each interface bound to one (`firewall-cmd --get-active-zones`, one
/// call); `None` when firewalld does not run or cannot be reached.
pub fn zones() -> Option<HashMap<String, String>> {
    if !reachable() {
        return None;
    }
    run(CMD, &["--get-active-zones"], None)
        .ok()
        .map(|out| parse_active_zones(&out))
}

/// Parses `--get-active-zones`: a zone name on its own line, then indented `interfaces: a b`
/// and `sources: ...` lines.
fn parse_active_zones(out: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut zone = None;
    for line in out.lines() {
        if !line.starts_with(char::is_whitespace) {
            // `public (default)` in some versions.
            zone = line.split_whitespace().next().map(String::from);
        } else if let (Some(z), Some(list)) = (&zone, line.trim().strip_prefix("interfaces:")) {
            for i in list.split_whitespace() {
                map.insert(i.to_string(), z.clone());
            }
        }
    }
    map
}

/// Puts `bridges` that are in no zone into [`ZONE`] (runtime). Returns the ones it added; does
/// nothing when firewalld does not run.
pub fn trust(bridges: &[String]) -> Result<Vec<String>, Error> {
    if bridges.is_empty() {
        return Ok(Vec::new());
    }
    let Some(zones) = zones() else {
        return Ok(Vec::new());
    };
    let mut added = Vec::new();
    let mut errors = Vec::new();
    for b in bridges {
        match zones.get(b) {
            Some(z) if z == ZONE => continue,
            Some(z) => {
                tracing::info!(bridge = %b, zone = %z, "firewalld: bridge left in the zone it is in");
                continue;
            }
            None => {}
        }
        let zone = format!("--zone={ZONE}");
        let add = format!("--add-interface={b}");
        match run(CMD, &[&zone, &add], None) {
            Ok(_) => {
                tracing::info!(bridge = %b, zone = ZONE, "firewalld: bridge added to zone (runtime)");
                added.push(b.clone());
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(added)
    } else {
        Err(Error::Command {
            command: format!("{CMD} --zone={ZONE} --add-interface"),
            status: format!("{} failure(s)", errors.len()),
            stderr: errors.join("; "),
        })
    }
}

/// Takes `bridge` out of [`ZONE`] (runtime) when it is there. Returns whether it did.
pub fn untrust(bridge: &str) -> Result<bool, Error> {
    if zones().and_then(|z| z.get(bridge).cloned()).as_deref() != Some(ZONE) {
        return Ok(false);
    }
    let zone = format!("--zone={ZONE}");
    let rm = format!("--remove-interface={bridge}");
    run(CMD, &[&zone, &rm], None)?;
    tracing::info!(bridge = %bridge, zone = ZONE, "firewalld: bridge removed from zone");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_zones_are_parsed() {
        let out = "public (default)\n  interfaces: eth0\ntrusted\n  interfaces: br0 agent0\n  sources: 10.0.0.0/8\nblock\n  sources: 1.2.3.4\n";
        let z = parse_active_zones(out);
        assert_eq!(z.get("eth0").map(String::as_str), Some("public"));
        assert_eq!(z.get("agent0").map(String::as_str), Some("trusted"));
        assert_eq!(z.len(), 3);
    }

    #[test]
    fn bus_socket_is_read_from_the_address() {
        assert_eq!(
            socket_of("unix:path=/tmp/x/bus,guid=ab"),
            Some(PathBuf::from("/tmp/x/bus"))
        );
        assert_eq!(socket_of("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(
            socket_of("tcp:host=h;unix:path=/run/b"),
            Some(PathBuf::from("/run/b"))
        );
    }
}
