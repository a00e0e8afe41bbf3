//! The conformance suite every [`FirewallDriver`] runs (as containerd's snapshotter test suite):
//! the same cases, each backend under its own unique table or chain names. Needs root and the
//! backend's tool; skipped with a printed reason otherwise.

use super::tests::sample;
use super::{AnyFirewall, FirewallDriver, FirewallState, Iptables, Nftables, run};

fn available(tool: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the firewall conformance suite needs root");
        return false;
    }
    if run(tool, &["--version"], None).is_err() {
        eprintln!("skipped: {tool} is not installed");
        return false;
    }
    true
}

/// Removes the instance's rules even when a case fails.
struct Cleanup<'a>(&'a AnyFirewall);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

fn suite(fw: &AnyFirewall) {
    let _guard = Cleanup(fw);
    // Nothing there yet; removing nothing is fine.
    fw.remove_all().unwrap();
    assert_eq!(fw.list().unwrap(), "");

    // Apply: every network, port and link shows up.
    let state = sample();
    fw.apply(&state).unwrap();
    let listed = fw.list().unwrap();
    for needle in [
        "bra",
        "brb",
        "10.99.1.2",
        "10.99.2.3",
        "10.99.1.0/24",
        "8080",
        "5353",
    ] {
        assert!(
            listed.contains(needle),
            "{}: {needle} missing in\n{listed}",
            fw.name()
        );
    }
    // Idempotent: the same state gives the same rules, byte for byte.
    fw.apply(&state).unwrap();
    assert_eq!(
        fw.list().unwrap(),
        listed,
        "{}: second apply changed rules",
        fw.name()
    );

    // Replacing: a port and a link gone, a network switched to icc: false.
    let mut smaller = state.clone();
    smaller.ports.pop();
    smaller.links.clear();
    fw.apply(&smaller.clone().normalize()).unwrap();
    let listed2 = fw.list().unwrap();
    assert!(
        !listed2.contains("5353"),
        "{}: stale port rule\n{listed2}",
        fw.name()
    );
    assert!(
        !listed2.contains("10.99.2.3"),
        "{}: stale link rule\n{listed2}",
        fw.name()
    );

    // Back to the first state: same listing as before (no drift from the history).
    fw.apply(&state).unwrap();
    assert_eq!(
        fw.list().unwrap(),
        listed,
        "{}: history changed rules",
        fw.name()
    );

    // An empty state keeps only the hooks; remove_all leaves nothing.
    fw.apply(&FirewallState::default()).unwrap();
    assert!(!fw.list().unwrap().contains("10.99."), "{}", fw.name());
    fw.remove_all().unwrap();
    assert_eq!(fw.list().unwrap(), "", "{}: leftovers", fw.name());
    fw.remove_all().unwrap();
}

#[test]
fn nftables_passes_the_conformance_suite() {
    if available("nft") {
        let table = format!("agent_conf{}", std::process::id());
        suite(&AnyFirewall::Nftables(Nftables::new(&table)));
    }
}

#[test]
fn iptables_passes_the_conformance_suite() {
    if available("iptables") {
        let prefix = format!("ACONF{}", std::process::id());
        suite(&AnyFirewall::Iptables(Iptables::new(&prefix)));
    }
}

#[test]
fn auto_selection_prefers_nftables() {
    if available("nft") {
        let fw = super::select(crate::driver::network::FirewallChoice::Auto, "agent_sel").unwrap();
        assert_eq!(fw.name(), "nftables");
    }
}
