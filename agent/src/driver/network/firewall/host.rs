//! Living with the host's other firewalls.
//!
//! An accept in the agent's own nftables table does not override a drop elsewhere: every base
//! chain on the forward hook must accept a packet. Docker sets iptables' `FORWARD` policy to
//! `DROP` and loads br_netfilter with `net.bridge.bridge-nf-call-iptables=1`, so traffic between
//! the agent's containers (bridged) and out of them (routed) goes through iptables' `FORWARD`
//! and dies there. As Docker's own documentation asks of other engines, the nftables backend
//! therefore adds, for each of its bridges `B`, two rules to iptables (`iptables`, whichever of
//! nft or legacy it is on this host), in `DOCKER-USER` when that chain exists, else in `FORWARD`:
//!
//! ```text
//! -I <chain> 1 -i B -m comment --comment agent:<instance> -j ACCEPT
//! -I <chain> 1 -o B -m comment --comment agent:<instance> -j ACCEPT
//! ```
//!
//! They only undo iptables' verdict: the agent's own table still drops what it drops (`icc:
//! false`, unsolicited inbound traffic). The comment tags them, so every apply makes them equal
//! to the current bridges (removing those of bridges that are gone, also after a crash), and
//! `remove_all` removes them. Nothing is added when the host has no iptables filter table
//! (nobody filters with iptables then). The iptables backend needs none of this: its own chain is
//! jumped to first from `FORWARD` and decides every packet of its bridges.
//!
//! [`forward_problems`] says when traffic on an agent bridge would still be dropped: iptables'
//! `FORWARD` drops by policy and the accepts are missing, another nftables table drops forwarded
//! traffic by policy, or firewalld runs and a bridge is in none of its zones (its zones reject
//! forwarded traffic of interfaces in no zone; the agent puts its bridges in `trusted` itself,
//! see [`super::firewalld`], so this is left for a firewalld it cannot reach, or one restarted
//! since).

use super::{Error, run};

/// The comment that tags the accept rules of instance `instance`.
fn tag(instance: &str) -> String {
    format!("agent:{instance}")
}

/// One of our accept rules: `-i B` (`inbound == false`: from the bridge) or `-o B`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Accept {
    chain: String,
    dir: &'static str,
    bridge: String,
}

impl Accept {
    fn spec(&self, instance: &str) -> Vec<String> {
        vec![
            self.dir.to_string(),
            self.bridge.clone(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            tag(instance),
            "-j".into(),
            "ACCEPT".into(),
        ]
    }
}

/// `iptables -S` of the filter table, or None when iptables is missing or the host has no
/// filter table.
fn filter_rules() -> Option<String> {
    let saved = run("iptables-save", &["-t", "filter"], None).ok()?;
    if !saved.lines().any(|l| l.trim() == "*filter") {
        return None;
    }
    run("iptables", &["-w", "-t", "filter", "-S"], None).ok()
}

/// Our accept rules in `rules` (`iptables -S` output), with the exact lines.
fn ours(rules: &str, instance: &str) -> Vec<(Accept, Vec<String>)> {
    let tag = tag(instance);
    rules
        .lines()
        .filter_map(|l| {
            // iptables quotes comments (`--comment "agent:x"`); ours have no spaces.
            let toks: Vec<String> = l
                .split_whitespace()
                .map(|t| t.trim_matches('"').to_string())
                .collect();
            if toks.first().map(String::as_str) != Some("-A") || !toks.contains(&tag) {
                return None;
            }
            let chain = toks.get(1)?.clone();
            let pos = toks.iter().position(|t| t == "-i" || t == "-o")?;
            let dir = if toks[pos] == "-i" { "-i" } else { "-o" };
            let bridge = toks.get(pos + 1)?.clone();
            Some((Accept { chain, dir, bridge }, toks))
        })
        .collect()
}

/// The chain the accepts belong in: `DOCKER-USER` when it exists, else `FORWARD`.
fn target_chain(rules: &str) -> &'static str {
    if rules.lines().any(|l| l.trim() == "-N DOCKER-USER") {
        "DOCKER-USER"
    } else {
        "FORWARD"
    }
}

/// Makes instance `instance`'s accept rules equal to `bridges` (see the module docs).
pub fn sync_accepts(instance: &str, bridges: &[String]) -> Result<(), Error> {
    let Some(rules) = filter_rules() else {
        return Ok(());
    };
    let chain = target_chain(&rules);
    let mut want: Vec<Accept> = bridges
        .iter()
        .flat_map(|b| {
            ["-o", "-i"].map(|dir| Accept {
                chain: chain.to_string(),
                dir,
                bridge: b.clone(),
            })
        })
        .collect();
    let mut errors = Vec::new();
    for (have, toks) in ours(&rules, instance) {
        if let Some(i) = want.iter().position(|w| *w == have) {
            want.remove(i);
            continue;
        }
        let mut args = vec!["-w".to_string(), "-t".into(), "filter".into(), "-D".into()];
        args.extend(toks.into_iter().skip(1));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = run("iptables", &args, None) {
            errors.push(e.to_string());
        }
    }
    for w in want {
        let mut args: Vec<String> = vec!["-w".into(), "-t".into(), "filter".into(), "-I".into()];
        args.push(w.chain.clone());
        args.push("1".into());
        args.extend(w.spec(instance));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = run("iptables", &args, None) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("iptables accept rules tagged {}", tag(instance)),
            status: format!("{} failure(s)", errors.len()),
            stderr: errors.join("; "),
        })
    }
}

/// Instance `instance`'s accept rules as `iptables -S` lines (for listings and leak checks).
pub fn list_accepts(instance: &str) -> String {
    let Some(rules) = filter_rules() else {
        return String::new();
    };
    ours(&rules, instance)
        .into_iter()
        .map(|(_, toks)| format!("iptables filter: {}\n", toks.join(" ")))
        .collect()
}

/// Why forwarded traffic on `bridges` would be dropped by someone else's firewall, one sentence
/// each; empty when nothing is known to drop it. `own_table` is the agent's nftables table
/// (None for the iptables backend, whose own chain decides first in `FORWARD`).
pub fn forward_problems(
    instance: &str,
    own_table: Option<&str>,
    bridges: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    if bridges.is_empty() {
        return problems;
    }
    let list = bridges.join(", ");
    if own_table.is_some()
        && let Some(rules) = filter_rules()
        && rules.lines().any(|l| l.trim() == "-P FORWARD DROP")
    {
        let have = ours(&rules, instance);
        let missing: Vec<&String> = bridges
            .iter()
            .filter(|b| {
                ["-i", "-o"]
                    .iter()
                    .any(|d| !have.iter().any(|(a, _)| &a.bridge == *b && a.dir == *d))
            })
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "iptables' FORWARD policy is DROP (Docker sets it) and the agent's accept rules \
                 for bridge(s) {missing:?} are missing: traffic of their containers is dropped"
            ));
        }
    }
    let chains = run("nft", &["-j", "list", "chains"], None).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&chains).unwrap_or_default();
    let entries = json["nftables"].as_array().cloned().unwrap_or_default();
    for c in entries.iter().filter_map(|o| o.get("chain")) {
        let (family, table, name) = (
            c["family"].as_str().unwrap_or_default(),
            c["table"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
        );
        if Some(table) == own_table && family == "ip" {
            continue;
        }
        if table == "firewalld" {
            if name == "filter_FORWARD" {
                // The agent adds its bridges to `trusted` itself when it can reach firewalld.
                let zones = super::firewalld::zones().unwrap_or_default();
                let outside: Vec<&String> =
                    bridges.iter().filter(|b| !zones.contains_key(*b)).collect();
                if !outside.is_empty() {
                    let names: Vec<&str> = outside.iter().map(|b| b.as_str()).collect();
                    problems.push(format!(
                        "firewalld runs and bridge(s) {} are in none of its zones: it rejects \
                         their forwarded traffic. The agent adds its bridges to the trusted zone \
                         when it can reach firewalld over the system D-Bus (firewall-cmd); \
                         otherwise run firewall-cmd --zone=trusted --add-interface=<bridge> \
                         (restart the agent after a firewalld restart or reload)",
                        names.join(", ")
                    ));
                }
            }
            continue;
        }
        // iptables-nft's FORWARD is handled above.
        if family == "ip" && table == "filter" && name == "FORWARD" {
            continue;
        }
        if c["hook"] == "forward" && c["policy"] == "drop" {
            problems.push(format!(
                "nftables chain {family} {table} {name} drops forwarded traffic by policy; \
                 the agent's accept cannot override it: accept traffic of bridge(s) {list} there"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -o br1 -m comment --comment "agent:a" -j ACCEPT
-A DOCKER-USER -i br1 -m comment --comment agent:a -j ACCEPT
-A FORWARD -i old -m comment --comment agent:a -j ACCEPT
-A DOCKER-USER -i brx -m comment --comment agent:a_2 -j ACCEPT
-A DOCKER-USER -j RETURN
"#;

    #[test]
    fn finds_only_this_instances_rules() {
        let found = ours(SAVED, "a");
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0.chain, "DOCKER-USER");
        assert_eq!((found[0].0.dir, found[0].0.bridge.as_str()), ("-o", "br1"));
        assert_eq!(
            (found[2].0.chain.as_str(), found[2].0.bridge.as_str()),
            ("FORWARD", "old")
        );
        assert_eq!(ours(SAVED, "a_2").len(), 1);
        assert!(ours(SAVED, "b").is_empty());
    }

    #[test]
    fn docker_user_is_preferred() {
        assert_eq!(target_chain(SAVED), "DOCKER-USER");
        assert_eq!(target_chain("-P FORWARD DROP\n"), "FORWARD");
    }
}
