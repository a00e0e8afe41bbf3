//! Crash test (root): a helper process (this test binary, re-executed with
//! `NETTEST_CRASH_HELPER` set) attaches ten containers with published ports and is killed with
//! SIGKILL halfway through; a fresh driver over the same state then runs start-up cleanup, and
//! the host must hold exactly what the records explain: the veths, namespaces and firewall rules
//! of the completed attachments, nothing of the interrupted one. Both firewall backends.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent::driver::network::{
    DriverOptions, FileStore, FirewallChoice, FirewallDriver, IpamStore, NetworkConfig,
    NetworkDriver, NetworkMode, Protocol,
};
use agent_e2e::network::*;

const HELPER_ENV: &str = "NETTEST_CRASH_HELPER";

/// Not a test on its own: the body of the helper process, which does nothing unless the crash
/// test started it.
#[test]
fn crash_helper_process() {
    let Some(spec) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let (opts, net, state): (DriverOptions, NetworkConfig, String) =
        serde_json::from_str(&spec.to_string_lossy()).unwrap();
    let store = Arc::new(FileStore::open(state).unwrap());
    let driver = NetworkDriver::new(opts, store).unwrap();
    for i in 0..10u16 {
        let req = agent::driver::network::AttachRequest {
            container_id: format!("c{i}"),
            name: format!("c{i}"),
            mode: NetworkMode::Bridge(vec![net.name.clone()]),
            ports: vec![
                port(None, 0, 80, Protocol::Tcp),
                port(None, 44000 + i, 53, Protocol::Udp),
            ],
            links: vec![],
            aliases: Default::default(),
        };
        driver.attach(&req).unwrap();
        println!("attached {i}");
    }
    std::thread::sleep(Duration::from_secs(30));
}

fn recs_have(store: &FileStore, id: &str) -> bool {
    store
        .attachments()
        .unwrap()
        .iter()
        .any(|r| r.container_id == id)
}

fn crash_midway_then_cleanup(fw: FirewallChoice) {
    let (opts, net) = TestNet::names(fw, true);
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("net.json");
    let mut t = TestNet::with(state, opts.clone(), net.clone());

    let spec = serde_json::to_string(&(&opts, &net, state_file.display().to_string())).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while an attachment is in progress: its intent is recorded (`complete: false`)
    // and its namespace and veth are being made.
    let started = std::time::Instant::now();
    let mut caught = None;
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(bytes) = std::fs::read(&state_file)
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
        {
            let recs = v["attachments"].as_array().cloned().unwrap_or_default();
            let done = recs.iter().filter(|r| r["complete"] == true).count();
            if let Some(r) = recs.iter().find(|r| r["complete"] == false)
                && done >= 5
            {
                caught = r["container_id"].as_str().map(str::to_string);
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let caught = caught.expect("never saw an attachment in progress");

    // Things the agent owns that no record mentions at all (as if a crash hit between creating
    // them and recording them): a veth with the instance's prefix and a namespace.
    let stray_veth = format!("{}deadbeef", opts.veth_prefix);
    let ok = Command::new("ip")
        .args([
            "link",
            "add",
            &stray_veth,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{stray_veth}p"),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let stray_ns = format!("{}-ghost", opts.instance);
    assert!(
        Command::new("ip")
            .args(["netns", "add", &stray_ns])
            .status()
            .unwrap()
            .success()
    );

    // And a published-port rule nothing explains.
    let stray_rule = match fw {
        FirewallChoice::Iptables => Command::new("iptables")
            .args([
                "-w",
                "-t",
                "nat",
                "-A",
                &format!("{}-PORTS", opts.chain_prefix()),
            ])
            .args([
                "-p",
                "tcp",
                "--dport",
                "1",
                "-j",
                "DNAT",
                "--to-destination",
                "10.214.0.9:1",
            ])
            .status(),
        _ => Command::new("nft")
            .args([
                "add",
                "rule",
                "ip",
                &opts.instance,
                "ports",
                "tcp",
                "dport",
                "1",
            ])
            .args(["dnat", "to", "10.214.0.9:1"])
            .status(),
    };
    assert!(stray_rule.unwrap().success());

    // "Restart": a fresh driver over the same state runs start-up cleanup.
    let store = Arc::new(FileStore::open(&state_file).unwrap());
    let driver = NetworkDriver::new(opts.clone(), store.clone()).unwrap();
    let report = driver.cleanup(None).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    println!(
        "{}: cleanup after kill -9: {:?}",
        driver.firewall().name(),
        report.removed
    );
    let said = |what: &str| report.removed.iter().any(|r| r.contains(what));
    assert!(
        said(&format!(
            "attachment of {caught} (attachment never completed)"
        )),
        "{report:?}"
    );
    assert!(said(&format!("veth {stray_veth}")), "{report:?}");
    assert!(said(&stray_ns), "{report:?}");
    assert!(
        said("firewall rules the records do not explain"),
        "{report:?}"
    );
    assert!(
        !recs_have(&store, &caught),
        "the interrupted attachment's record is gone"
    );

    let recs = store.attachments().unwrap();
    assert!(recs.iter().all(|r| r.complete), "incomplete records left");
    assert!(
        recs.len() >= 5 && recs.len() <= 10,
        "{} records",
        recs.len()
    );
    let want_veths: BTreeSet<String> = recs
        .iter()
        .flat_map(|r| r.endpoints.iter().map(|e| e.host_veth.clone()))
        .collect();
    let have_veths: BTreeSet<String> = t.host_veths().into_iter().collect();
    assert_eq!(have_veths, want_veths, "veths on the host vs. records");
    let want_ns: BTreeSet<String> = recs
        .iter()
        .filter_map(|r| {
            r.owned_netns
                .as_ref()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect();
    let have_ns: BTreeSet<String> = t.netns_files().into_iter().collect();
    assert_eq!(have_ns, want_ns, "namespaces vs. records");

    // The firewall is exactly the rendering of the records: rebuilding it from nothing gives the
    // same listing, and it holds one DNAT per recorded port.
    let after_cleanup = driver.firewall().list().unwrap();
    driver.firewall().remove_all().unwrap();
    driver.sync_firewall().unwrap();
    assert_eq!(driver.firewall().list().unwrap(), after_cleanup);
    let ports: usize = recs.iter().map(|r| r.ports.len()).sum();
    let dnats = after_cleanup
        .lines()
        .filter(|l| l.contains("dnat to") || l.contains("-j DNAT"))
        .count();
    assert_eq!(dnats, ports, "{after_cleanup}");
    assert!(!after_cleanup.contains("10.214.0.9"), "{after_cleanup}");

    // The survivors still work: their published UDP port reaches them.
    let first = &recs[0];
    let att = driver
        .attach(&agent::driver::network::AttachRequest {
            container_id: first.container_id.clone(),
            name: first.name.clone(),
            mode: first.mode.clone(),
            ports: vec![
                port(None, 0, 80, Protocol::Tcp),
                port(None, 44000, 53, Protocol::Udp),
            ],
            links: vec![],
            aliases: Default::default(),
        })
        .unwrap();
    assert_eq!(
        att.endpoints[0].ip, first.endpoints[0].ip,
        "address kept over the crash"
    );
    assert_eq!(
        att.ports[0].host_port, first.ports[0].host_port,
        "random port kept"
    );
    t.udp_echo(&att, 53);
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 44000));
    assert_eq!(udp_roundtrip(addr, "x").unwrap(), "echo:x");

    // Hand the fresh driver to the fixture so that Drop releases everything it recorded.
    t.driver = driver;
    t.store = store;
}

#[test]
fn nftables_crash_midway_then_cleanup() {
    if can_run(
        "nftables_crash_midway_then_cleanup",
        FirewallChoice::Nftables,
    ) && std::env::var_os(HELPER_ENV).is_none()
    {
        crash_midway_then_cleanup(FirewallChoice::Nftables);
    }
}

#[test]
fn iptables_crash_midway_then_cleanup() {
    if can_run(
        "iptables_crash_midway_then_cleanup",
        FirewallChoice::Iptables,
    ) && std::env::var_os(HELPER_ENV).is_none()
    {
        crash_midway_then_cleanup(FirewallChoice::Iptables);
    }
}
