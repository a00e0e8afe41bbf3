//! Two network driver instances on one host whose veth prefixes nest (`X` and `Xd`, as `asc` and
//! `ascd`): the start-up cleanup of the one with the shorter prefix must remove only its own
//! leaked veths and leave the other's container running with its veth and network. Also: a veth
//! named exactly like the instance's own but on someone else's bridge is left alone, and
//! `agent run` refuses configs whose names could collide (a veth prefix `agent-`, a bridge named
//! like the agent's veths). Root; nftables.
//!
//! Traffic goes only to the test's own namespaces.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::driver::network::FirewallChoice;
use agent_e2e::daemon::{Daemon, require_root};
use agent_e2e::network::*;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The bridge `veth` is enslaved to, if any.
fn master_of(veth: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", veth])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "master")?;
    words.next().map(str::to_string)
}

/// Deletes the links in `Drop`.
struct Links(Vec<String>);
impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    }
}

#[test]
fn cleanup_of_a_nested_prefix_leaves_the_other_agents_veths() {
    if !can_run(
        "cleanup_of_a_nested_prefix_leaves_the_other_agents_veths",
        FirewallChoice::Nftables,
    ) {
        return;
    }
    // Agent A: prefix X (5 characters, unique to this test); agent B: prefix Xd.
    let (mut opts_a, net_a) = TestNet::names(FirewallChoice::Nftables, true);
    let (mut opts_b, net_b) = TestNet::names(FirewallChoice::Nftables, true);
    let x = opts_a.veth_prefix.trim_end_matches('v').to_string();
    opts_a.veth_prefix = x.clone();
    opts_b.veth_prefix = format!("{x}d");
    let a = TestNet::with(tempfile::tempdir().unwrap(), opts_a.clone(), net_a);
    let mut b = TestNet::with(tempfile::tempdir().unwrap(), opts_b.clone(), net_b);

    // B runs a container whose veth starts with A's prefix.
    let web = b.attach(&b.req("web", vec![]));
    let b_veth = web.endpoints[0].host_veth.clone();
    assert!(b_veth.starts_with(&x), "{b_veth}");
    b.http_server(&web, 8080, "still-here");
    // A runs one too, and leaked one (a veth named like A's, on A's bridge, no record).
    let own = a.attach(&a.req("own", vec![]));
    let leak = format!("{x}0badcafe");
    let _links = Links(vec![leak.clone(), format!("{x}peer")]);
    ip(&[
        "link",
        "add",
        &leak,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{x}peer"),
    ]);
    ip(&["link", "set", &leak, "master", &a.net.bridge]);
    // And a veth named exactly like A's own sits on B's bridge: not A's to delete.
    let squatter = format!("{x}0000beef");
    let _links2 = Links(vec![squatter.clone()]);
    ip(&[
        "link",
        "add",
        &squatter,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{x}peer2"),
    ]);
    ip(&["link", "set", &squatter, "master", &b.net.bridge]);

    // A restarts: its start-up cleanup runs (every container of A still exists).
    let existing: HashSet<String> = ["own".to_string()].into();
    let report = a
        .driver
        .cleanup(Some(&existing))
        .unwrap_or_else(|e| panic!("cleanup: {e}"));
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    assert!(
        link_exists(&b_veth),
        "agent A's cleanup deleted agent B's veth {b_veth}: {:?}",
        report.removed
    );
    assert_eq!(master_of(&b_veth).as_deref(), Some(b.net.bridge.as_str()));
    let body = wget_in(&web, &format!("http://{}:8080/", web.endpoints[0].ip));
    assert_eq!(
        body.as_deref(),
        Some("still-here"),
        "B's container lost its network"
    );
    assert!(link_exists(&own.endpoints[0].host_veth), "A's own veth");
    assert!(
        !link_exists(&leak),
        "A's leaked veth stays: {:?}",
        report.removed
    );
    assert!(link_exists(&squatter), "a veth on B's bridge was deleted");
    assert_eq!(
        report.removed,
        vec![format!("veth {leak}")],
        "cleanup removed other things"
    );

    // And B's cleanup leaves A's container alone too.
    let report = b
        .driver
        .cleanup(Some(&["web".to_string()].into()))
        .unwrap_or_else(|e| panic!("cleanup B: {e}"));
    assert!(
        link_exists(&own.endpoints[0].host_veth),
        "{:?}",
        report.removed
    );
    assert!(link_exists(&b_veth), "{:?}", report.removed);
}

/// `agent run` with a config whose `[network]` has `key = value(veth prefix)` instead of the
/// fixture's: the value, how it exited (None: still running after 20 s, then stopped) and its
/// log.
fn run_with(
    key: &str,
    value: fn(&str) -> String,
) -> (String, Option<std::process::ExitStatus>, String) {
    let d = Daemon::prepare("vethprefix", "");
    let value = value(&d.net.veth_prefix);
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} = ")) {
                format!("{key} = \"{value}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&d.config, text).unwrap();
    let mut child = Command::new(agent_e2e::agent_bin())
        .args(["run", "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--socket")
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (value, status, err)
}

#[test]
fn configs_whose_names_could_collide_are_refused() {
    if !require_root("configs_whose_names_could_collide_are_refused") {
        return;
    }
    // `agent-` + 8 hex is also a bridge name the agent generates for a Network manifest; a
    // bridge named like the agent's veths would be taken for one.
    type Case = (&'static str, fn(&str) -> String, &'static str);
    let cases: [Case; 2] = [
        ("veth_prefix", |_| "agent-".into(), "network.veth_prefix"),
        ("bridge", |p| format!("{p}0123abcd"), "network.bridge"),
    ];
    for (key, value, field) in cases {
        let (value, status, err) = run_with(key, value);
        let status = status.unwrap_or_else(|| panic!("{key} = {value:?} was accepted: {err}"));
        assert!(!status.success(), "{key} = {value:?}: {status}\n{err}");
        assert!(
            err.contains(field) && err.contains(&value),
            "{key} = {value:?}: {err}"
        );
    }
}
