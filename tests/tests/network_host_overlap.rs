//! A `Network` whose subnet overlaps a route or address of another interface of the host is
//! refused before its bridge is made: on an edge device whose LAN is 192.168.1.0/24, a Network
//! with that subnet would give the host a second connected route for its LAN and could cut it off
//! the network it is managed through. A host interface that came to overlap an existing network
//! later (the LAN came up after) is reported in `agent status`, and the network's running
//! containers are left alone; after a reboot its bridge is not made again while the overlap
//! lasts, and the container's error says why. A Network naming a host interface the agent did
//! not make as its bridge is refused too.
//!
//! The "LAN" is an interface with a unique name and an address in a unique `10.213.x.0/24` (the
//! fixtures' own subnets are `10.214-253.x.0/24`), deleted in `Drop`: a `dummy` interface, or a
//! veth pair with both ends in the host where the kernel has no dummy driver. No traffic is sent
//! anywhere.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

/// A host interface with one address, removed in `Drop` (even when the test fails).
struct Dummy {
    name: String,
}

impl Dummy {
    /// `ip link add <name> type dummy` (or a veth pair `<name>`/`<name>p` where the kernel has
    /// no dummy driver), `<addr>/<prefix>` on it, up.
    fn new(name: &str, addr: &str) -> Dummy {
        let d = Dummy {
            name: name.to_string(),
        };
        let dummy = Command::new("ip")
            .args(["link", "add", name, "type", "dummy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !dummy {
            let peer = format!("{name}p");
            ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "up"]);
        }
        ip(&["addr", "add", addr, "dev", name]);
        ip(&["link", "set", name, "up"]);
        d
    }

    /// The IPv4 routes of the main table through this interface, one per line.
    fn routes(&self) -> String {
        let out = Command::new("ip")
            .args(["-4", "route", "show", "dev", &self.name])
            .output()
            .expect("ip route");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `10.213.x.0/24` no route of the host covers now, from this process's id.
fn free_test_subnet() -> (Ipv4Addr, String) {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .expect("ip route");
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = std::process::id() % 250;
    for k in 0..250 {
        let x = (start + k) % 250 + 1;
        let net = format!("10.213.{x}.");
        if !routes.contains(&net) {
            return (
                Ipv4Addr::new(10, 213, x as u8, 0),
                format!("10.213.{x}.0/24"),
            );
        }
    }
    panic!("no free 10.213.x.0/24 on this host");
}

fn network(name: &str, bridge: &str, subnet: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}\n  bridge: {bridge}\n"
    )
}

const APP: &str = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: app\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  networks: [lan]\n  restart: always\n  stopGracePeriod: 1s\n";

/// The error `agent status` shows for manifest file `file` (its load error or the failures of
/// its objects), if any.
fn status_errors(d: &Daemon, file: &str) -> String {
    d.file_status(file)
        .map(|f| f.to_string())
        .unwrap_or_default()
}

#[test]
fn a_network_overlapping_a_host_interface_is_refused_and_a_late_overlap_is_reported() {
    if !require_root("a_network_overlapping_a_host_interface_is_refused") {
        return;
    }
    require_images();
    let (base, lan) = free_test_subnet();
    let o = base.octets();
    let dummy_name = format!("agovl{}", std::process::id() % 1_000_000);
    let host_addr = format!("{}.{}.{}.7/24", o[0], o[1], o[2]);
    let dummy = Dummy::new(&dummy_name, &host_addr);
    let route_before = dummy.routes();
    assert!(route_before.contains(&lan), "dummy route: {route_before}");

    let mut d = Daemon::prepare_with("hostovl", "", false);
    let bridge = format!("{}x", d.bridge);
    d.extra_bridges.push(bridge.clone());
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("net.yaml", &network("lan", &bridge, &lan));
    d.write("app.yaml", APP);
    d.start();

    // The network's change fails, and says why: network, subnet, the host's route or address
    // and its interface, what to do.
    let text = d.wait_for(
        "the network's failure in agent status",
        Duration::from_secs(60),
        || {
            let s = status_errors(&d, "net.yaml");
            s.contains("choose another subnet").then_some(s)
        },
    );
    for want in ["lan", &lan, &dummy_name, "overlaps"] {
        assert!(text.contains(want), "{want:?} missing in: {text}");
    }
    // Nothing was created: no bridge, the container does not run; the host's route is intact.
    assert!(!link_exists(&bridge), "bridge {bridge} was created");
    let row = d.ps_row("app");
    assert_ne!(row["state"], "running", "app runs: {row}");
    assert_eq!(dummy.routes(), route_before, "the host's route changed");
    assert!(
        d.log_text().contains("choose another subnet"),
        "the log does not say why:\n{}",
        d.log_tail()
    );
    let events = d.events();
    assert!(
        events
            .iter()
            .any(|e| e.to_string().contains("choose another subnet")),
        "no event says why: {events:?}"
    );

    // Another subnet, but the host's interface as the bridge: refused too (it would be
    // adopted: given the gateway, deleted with the network); the interface is left as it was.
    let (_, other) = agent_e2e::network::TestNet::names(d.net.firewall, true);
    let good = other.subnet.to_string();
    let addr_before = on_link(&dummy_name);
    d.write("net.yaml", &network("lan", &dummy_name, &good));
    let text = d.wait_for(
        "the bridge name's failure in agent status",
        Duration::from_secs(60),
        || {
            let _ = d.cli(&["apply"]);
            let s = status_errors(&d, "net.yaml");
            s.contains("choose another bridge name").then_some(s)
        },
    );
    for want in ["lan", &dummy_name, &host_addr] {
        assert!(text.contains(want), "{want:?} missing in: {text}");
    }
    assert_eq!(
        on_link(&dummy_name),
        addr_before,
        "the host's interface changed"
    );

    // Another subnet on a bridge of its own works, and the host's route is still intact.
    d.write("net.yaml", &network("lan", &bridge, &good));
    let _ = d.cli(&["apply"]);
    d.wait_for(
        "app running on the new subnet",
        Duration::from_secs(90),
        || {
            let _ = d.cli(&["apply"]);
            d.try_ps_row("app").filter(|r| r["state"] == "running")
        },
    );
    assert!(link_exists(&bridge), "bridge {bridge} missing");
    assert_eq!(dummy.routes(), route_before, "the host's route changed");
    let started = d.ps_row("app")["started_at"].clone();

    // Later, another interface comes to overlap the network (a LAN that came up after the
    // agent): at the next start the agent says so in `agent status`, and leaves the running
    // container alone.
    let g = other.subnet.network().octets();
    let late_name = format!("agovm{}", std::process::id() % 1_000_000);
    let late_addr = format!("{}.{}.{}.200/24", g[0], g[1], g[2]);
    d.stop();
    let late = Dummy::new(&late_name, &late_addr);
    d.start();
    let warnings = d.wait_for("a host warning", Duration::from_secs(30), || {
        let w = d.cli_json(&["status"])["warnings"].to_string();
        w.contains(&late_name).then_some(w)
    });
    for want in ["lan", &good, &late_name] {
        assert!(warnings.contains(want), "{want:?} missing in: {warnings}");
    }
    let row = d.ps_row("app");
    assert_eq!(row["state"], "running", "app: {row}\n{}", d.log_text());
    assert_eq!(
        row["started_at"],
        started,
        "app was restarted: {row}\n{}",
        d.log_text()
    );
    assert!(link_exists(&bridge), "bridge {bridge} was removed");

    // After a reboot (bridges gone) the agent does not make the bridge again while the overlap
    // lasts: the container does not start, and says why.
    let late_route = late.routes();
    d.stop();
    d.simulate_reboot();
    d.start();
    let err = d.wait_for("app's failure", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let row = d.try_ps_row("app")?;
        let e = row["error"].as_str()?.to_string();
        e.contains("choose another subnet").then_some(e)
    });
    for want in ["lan", &good, &late_name] {
        assert!(err.contains(want), "{want:?} missing in: {err}");
    }
    assert!(!link_exists(&bridge), "bridge {bridge} was created again");
    assert_eq!(late.routes(), late_route, "the host's route changed");

    d.remove_all_and_wait(Duration::from_secs(60));
}

/// The addresses and routes of interface `dev` (`ip -4 addr` and `ip -4 route`, main table).
fn on_link(dev: &str) -> String {
    let addr = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", dev])
        .output()
        .expect("ip addr");
    let route = Command::new("ip")
        .args(["-4", "route", "show", "dev", dev])
        .output()
        .expect("ip route");
    format!(
        "{}{}",
        String::from_utf8_lossy(&addr.stdout),
        String::from_utf8_lossy(&route.stdout)
    )
}

#[test]
fn moving_a_network_off_a_subnet_another_interface_took_leaves_nothing_of_it() {
    if !require_root("moving_a_network_off_a_subnet_another_interface_took") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("hostmove", "", false);
    let bridge = format!("{}x", d.bridge);
    d.extra_bridges.push(bridge.clone());
    let (_, first) = agent_e2e::network::TestNet::names(d.net.firewall, true);
    let (_, second) = agent_e2e::network::TestNet::names(d.net.firewall, true);
    let (good, good2) = (first.subnet.to_string(), second.subnet.to_string());
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("net.yaml", &network("lan", &bridge, &good));
    d.write("app.yaml", APP);
    d.start();
    d.wait_for("app running", Duration::from_secs(90), || {
        d.try_ps_row("app").filter(|r| r["state"] == "running")
    });

    // Another interface comes to overlap it; the next rescan says so.
    let g = first.subnet.network().octets();
    let late_name = format!("agovn{}", std::process::id() % 1_000_000);
    let late = Dummy::new(&late_name, &format!("{}.{}.{}.200/24", g[0], g[1], g[2]));
    let late_route = late.routes();
    d.wait_for("a host warning", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let w = d.cli_json(&["status"])["warnings"].to_string();
        w.contains(&late_name).then_some(w)
    });

    // The operator moves the network to another subnet, as the warning says: the bridge keeps
    // nothing of the old one (its old address would go on taking the traffic), the warning
    // goes, the other interface's route is intact.
    d.write("net.yaml", &network("lan", &bridge, &good2));
    d.wait_for(
        "app running on the new subnet",
        Duration::from_secs(90),
        || {
            let _ = d.cli(&["apply"]);
            let row = d.try_ps_row("app").filter(|r| r["state"] == "running")?;
            on_link(&bridge).contains(&good2).then_some(row)
        },
    );
    let old_gw = format!("{}.{}.{}.1/", g[0], g[1], g[2]);
    let now = on_link(&bridge);
    assert!(
        !now.contains(&old_gw) && !now.contains(&good),
        "bridge {bridge} kept its old subnet {good}:\n{now}"
    );
    d.wait_for("the warning gone", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let w = d.cli_json(&["status"])["warnings"].to_string();
        (!w.contains(&late_name)).then_some(())
    });
    assert_eq!(late.routes(), late_route, "the host's route changed");

    d.remove_all_and_wait(Duration::from_secs(60));
}
