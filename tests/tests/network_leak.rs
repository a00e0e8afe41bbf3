//! Leak test (root): create and remove 100 containers with published ports, then check that no
//! veth, namespace, rule or address record is left and that the firewall listing is
//! byte-identical to the one before. Runs against both firewall backends; prints the timings.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use agent::driver::network::{FirewallChoice, Protocol};
use agent_e2e::network::*;

fn hundred_containers_leave_nothing(fw: FirewallChoice) {
    let t = TestNet::new(fw, true);
    let rules_before = t.firewall_listing();
    assert!(!rules_before.is_empty(), "the network's base rules exist");
    let veths_before = t.host_veths();
    let start = Instant::now();
    for i in 0..100 {
        let id = format!("leak{i}");
        let ports = vec![
            port(None, 0, 80, Protocol::Tcp),
            port(None, 0, 53, Protocol::Udp),
            // Below the ephemeral range (32768-60999) so that no outgoing connection holds it.
            port(None, 24000 + i, 8080, Protocol::Tcp),
        ];
        let a = t.attach(&t.req(&id, ports));
        assert_eq!(a.ports.len(), 3);
        if i == 50 {
            // While attached, the rules and objects are really there.
            let rules = t.firewall_listing();
            assert!(rules.contains(&a.endpoints[0].ip.to_string()), "{rules}");
            assert_eq!(t.host_veths().len(), 1);
            assert_eq!(t.netns_files().len(), 1);
        }
        t.driver
            .release(&id)
            .unwrap_or_else(|e| panic!("release {id}: {e}"));
    }
    let per = start.elapsed() / 100;
    println!(
        "{}: 100 x (attach with 3 ports + release): {:?} total, {per:?} per container",
        fw_name(fw),
        start.elapsed()
    );
    assert_eq!(t.host_veths(), veths_before, "veths left");
    assert!(
        t.netns_files().is_empty(),
        "namespaces left: {:?}",
        t.netns_files()
    );
    assert_eq!(store_counts(t.store.as_ref()), (0, 0, 0), "records left");
    let rules_after = t.firewall_listing();
    assert_eq!(rules_after, rules_before, "firewall differs from before");

    // Removing the network removes the table/chains too.
    t.driver.remove_network(&t.net.name).unwrap();
    assert_eq!(
        t.firewall_listing(),
        "",
        "rules left after removing the network"
    );
    assert!(links_with_prefix(&t.net.bridge).is_empty(), "bridge left");
}

fn fw_name(fw: FirewallChoice) -> &'static str {
    match fw {
        FirewallChoice::Iptables => "iptables",
        _ => "nftables",
    }
}

#[test]
fn nftables_hundred_containers_leave_nothing() {
    if can_run(
        "nftables_hundred_containers_leave_nothing",
        FirewallChoice::Nftables,
    ) {
        hundred_containers_leave_nothing(FirewallChoice::Nftables);
    }
}

#[test]
fn iptables_hundred_containers_leave_nothing() {
    if can_run(
        "iptables_hundred_containers_leave_nothing",
        FirewallChoice::Iptables,
    ) {
        hundred_containers_leave_nothing(FirewallChoice::Iptables);
    }
}
