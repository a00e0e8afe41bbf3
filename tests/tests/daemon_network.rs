//! Bridge networking through the running daemon, driven by manifest files and the CLI: a
//! published port on 127.0.0.1, a link by alias, recreation keeping the address, removal leaving
//! nothing behind, kill -9 of the agent (no container restarts, network intact), leaked state
//! cleaned at start-up, a veth deleted by hand and a namespace deleted under a running container
//! repaired (as changes with a cause, through the applier), and the example manifests (with their
//! bridge, subnet and port rewritten so as not to collide with `scripts/run-example.sh`).
//!
//! Every fixture has its own instance (firewall table, namespace names), veth prefix, bridge and
//! subnet (see `agent_e2e::daemon::Daemon`), removed in `Drop`. Traffic goes to 127.0.0.1 and
//! between the test's own containers only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::network::links_with_prefix;
use serde_json::Value;

/// An HTTP server container publishing 8080 on 127.0.0.1:`port`, serving `srv-<v>`.
fn srv(v: u32, port: u16) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: srv\nspec:\n  image: busybox\n  entrypoint: [\"/bin/sh\", \"-c\"]\n  command: [\"mkdir -p /www && echo srv-$V > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n  env: {{V: \"{v}\"}}\n  ports: [\"127.0.0.1:{port}:8080/tcp\", \"127.0.0.1::9090/tcp\"]\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

/// A client container linking srv under the alias `db`.
const CLI: &str = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: cli\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  links: [{container: srv, alias: db}]\n  restart: always\n  stopGracePeriod: 1s\n";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET /` on 127.0.0.1:`port`; the body, if the server answered 200.
fn http_get(port: u16) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then_some(())
        .filter(|()| head.contains(" 200 "))?;
    Some(body.to_string())
}

/// `agent exec NAME -- args...`.
fn exec(d: &Daemon, name: &str, args: &[&str]) -> Output {
    Command::new(agent_e2e::agent_bin())
        .arg("exec")
        .arg("--state-dir")
        .arg(&d.state)
        .arg(name)
        .arg("--")
        .args(args)
        .output()
        .expect("run agent exec")
}

fn exec_out(d: &Daemon, name: &str, args: &[&str]) -> Option<String> {
    let o = exec(d, name, args);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The host port `agent ps` shows for container port 9090.
fn random_port(row: &Value) -> Option<u16> {
    row["ports"].as_array()?.iter().find_map(|p| {
        let p = p.as_str()?;
        let host = p.strip_suffix("->9090/tcp")?;
        host.rsplit(':').next()?.parse().ok()
    })
}

fn running(d: &Daemon, name: &str) -> Option<Value> {
    d.try_ps_row(name).filter(|r| r["state"] == "running")
}

/// The IPv4 address of `eth0` inside the container.
fn own_ip(d: &Daemon, name: &str) -> Option<String> {
    let out = exec_out(d, name, &["ip", "-4", "-o", "addr", "show", "eth0"])?;
    let cidr = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

/// The address `host` has in the container's /etc/hosts.
fn hosts_ip(d: &Daemon, name: &str, host: &str) -> Option<String> {
    let hosts = exec_out(d, name, &["cat", "/etc/hosts"])?;
    hosts
        .lines()
        .find(|l| l.split_whitespace().skip(1).any(|w| w == host))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

fn firewall_listing(d: &Daemon) -> String {
    let fw = agent::driver::network::firewall::select(d.net.firewall, &d.net.instance)
        .expect("firewall backend");
    agent::driver::network::FirewallDriver::list(&fw).unwrap_or_default()
}

/// Pids of the `agent monitor` processes of state directory `state`.
fn monitor_pids(state: &Path) -> Vec<i64> {
    let needle = state.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|r| {
            r.flatten()
                .filter_map(|e| {
                    let pid: i64 = e.file_name().to_str()?.parse().ok()?;
                    let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                    let args: Vec<String> = cmd
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    (args.get(1).is_some_and(|a| a == "monitor") && args.contains(&needle))
                        .then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

#[test]
fn bridge_ports_links_recreate_and_remove() {
    if !require_root("bridge_ports_links_recreate_and_remove") {
        return;
    }
    require_images();
    let port = free_port();
    let mut d = Daemon::prepare("net", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("srv.yaml", &srv(1, port));
    d.write("cli.yaml", CLI);
    let first = d.wait_for("srv and cli running", Duration::from_secs(90), || {
        running(&d, "cli")?;
        running(&d, "srv")
    });

    // The published port answers on 127.0.0.1; ps shows it.
    d.wait_for("srv on 127.0.0.1", Duration::from_secs(20), || {
        (http_get(port)? == "srv-1\n").then_some(())
    });
    let ports = first["ports"].to_string();
    assert!(
        ports.contains(&format!("127.0.0.1:{port}->8080/tcp")),
        "{ports}"
    );
    // The random host port of 9090, recorded; it must survive the recreation below.
    let random = random_port(&first).expect("a random host port for 9090");

    // The link: alias `db` resolves to srv's address, and reaches it.
    let ip = d.wait_for("srv's address", Duration::from_secs(10), || {
        own_ip(&d, "srv")
    });
    let subnet: ipnet_like::Net = d.subnet.parse().expect("subnet");
    assert!(subnet.contains(&ip), "{ip} not in {}", d.subnet);
    assert_eq!(hosts_ip(&d, "cli", "db").as_deref(), Some(ip.as_str()));
    assert_eq!(hosts_ip(&d, "cli", "srv").as_deref(), Some(ip.as_str()));
    let body = d.wait_for("cli reaches db:8080", Duration::from_secs(10), || {
        exec_out(&d, "cli", &["wget", "-q", "-O", "-", "http://db:8080/"])
    });
    assert_eq!(body, "srv-1\n");
    let env = exec_out(&d, "cli", &["env"]).unwrap_or_default();
    assert!(env.contains("DB_NAME=/cli/db"), "{env}");
    assert!(env.contains("DB_ENV_V=1"), "{env}");
    assert!(env.contains(&format!("DB_PORT=tcp://{ip}:8080")), "{env}");

    // Recreate srv (env changed): new runtime id, same address, port and link work again.
    d.write("srv.yaml", &srv(2, port));
    d.wait_for("srv recreated", Duration::from_secs(60), || {
        running(&d, "srv").filter(|r| r["id"] != first["id"])
    });
    d.wait_for("new srv on 127.0.0.1", Duration::from_secs(20), || {
        (http_get(port)? == "srv-2\n").then_some(())
    });
    assert_eq!(
        own_ip(&d, "srv").as_deref(),
        Some(ip.as_str()),
        "address kept"
    );
    let again = running(&d, "srv").expect("srv running");
    assert_eq!(random_port(&again), Some(random), "random host port kept");
    let body = d.wait_for("cli reaches the new db", Duration::from_secs(10), || {
        exec_out(&d, "cli", &["wget", "-q", "-O", "-", "http://db:8080/"])
            .filter(|b| b == "srv-2\n")
    });
    assert_eq!(body, "srv-2\n");
    assert_eq!(links_with_prefix(&d.net.veth_prefix).len(), 2);
    assert_eq!(d.netns().len(), 2, "{:?}", d.netns());

    // Remove both: no veth, no namespace, no rule for the port or the address.
    d.remove("cli.yaml");
    d.remove("srv.yaml");
    d.wait_for("containers removed", Duration::from_secs(60), || {
        (d.try_ps_row("srv").is_none() && d.try_ps_row("cli").is_none()).then_some(())
    });
    assert!(
        links_with_prefix(&d.net.veth_prefix).is_empty(),
        "veths left: {:?}",
        links_with_prefix(&d.net.veth_prefix)
    );
    assert!(d.netns().is_empty(), "namespaces left: {:?}", d.netns());
    let fw = firewall_listing(&d);
    assert!(
        !fw.contains(&port.to_string()) && !fw.contains(&ip),
        "rules left for {ip}:{port}:\n{fw}"
    );
    assert!(http_get(port).is_none(), "port {port} still answers");

    // Addresses and ports released in the store (read once the agent is stopped).
    d.stop();
    let db = rusqlite::Connection::open(d.state.join("state.db")).expect("open state.db");
    assert_eq!(count(&db, "ip_allocations"), 0);
    assert_eq!(count(&db, "port_bindings"), 0);
    assert_eq!(count(&db, "network_attachments"), 0);
}

#[test]
fn kill9_restart_cleans_leaks_and_repairs_a_deleted_veth() {
    if !require_root("kill9_restart_cleans_leaks_and_repairs_a_deleted_veth") {
        return;
    }
    require_images();
    let port = free_port();
    let mut d = Daemon::prepare("netkill", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("srv.yaml", &srv(1, port));
    let before = d.wait_for("srv running", Duration::from_secs(90), || {
        running(&d, "srv")
    });
    d.wait_for("srv on 127.0.0.1", Duration::from_secs(20), || {
        (http_get(port)? == "srv-1\n").then_some(())
    });
    let veths = links_with_prefix(&d.net.veth_prefix);
    assert_eq!(veths.len(), 1, "{veths:?}");

    // kill -9; leak a veth pair and a namespace with the agent's names (`<prefix><8 hex>`,
    // `<instance>-<id>`) meanwhile.
    d.stop_with(libc::SIGKILL);
    assert_eq!(
        http_get(port).as_deref(),
        Some("srv-1\n"),
        "container lives on"
    );
    let (leak_a, leak_b) = (
        format!("{}dead0000", d.net.veth_prefix),
        format!("{}dead0001", d.net.veth_prefix),
    );
    let ok = Command::new("ip")
        .args([
            "link", "add", &leak_a, "type", "veth", "peer", "name", &leak_b,
        ])
        .status()
        .expect("ip link add");
    assert!(ok.success());
    let leak_ns = format!("{}-leaked", d.net.instance);
    let ok = Command::new("ip")
        .args(["netns", "add", &leak_ns])
        .status()
        .expect("ip netns add");
    assert!(ok.success());

    let mark = d.log_text().len();
    d.start();
    d.wait_for("leaks removed", Duration::from_secs(20), || {
        (links_with_prefix(&d.net.veth_prefix) == veths && d.netns().len() == 1).then_some(())
    });
    let after = running(&d, "srv").expect("srv still running");
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["started_at"], before["started_at"], "not restarted");
    assert_eq!(after["restarts"], 0);
    assert_eq!(http_get(port).as_deref(), Some("srv-1\n"));
    let since = d.log_text().get(mark..).unwrap_or_default().to_string();
    assert!(
        !since.contains("\"attached\""),
        "adoption must not attach again:\n{since}"
    );

    // A veth deleted by hand: the next resync (`agent apply` forces one) puts it back, in the
    // same namespace, with the same address; the container is not restarted.
    let ip = own_ip(&d, "srv").expect("srv address");
    let ok = Command::new("ip")
        .args(["link", "del", &veths[0]])
        .status()
        .expect("ip link del");
    assert!(ok.success());
    d.cli_ok(&["apply"]);
    d.wait_for("veth repaired", Duration::from_secs(30), || {
        (links_with_prefix(&d.net.veth_prefix) == veths).then_some(())
    });
    d.wait_for("srv reachable again", Duration::from_secs(20), || {
        (http_get(port)? == "srv-1\n").then_some(())
    });
    assert_eq!(own_ip(&d, "srv"), Some(ip.clone()));
    let again = running(&d, "srv").expect("srv running");
    assert_eq!(again["started_at"], before["started_at"], "not restarted");
    // The repair was a change through the applier, with its cause, on the container.
    let repair = |cause: &str| {
        d.events().into_iter().find(|e| {
            e["kind"] == "network.repair"
                && e["object"] == "container/srv"
                && e["message"]["cause"] == cause
        })
    };
    assert!(
        repair("network drift").is_some(),
        "a network.repair event on container/srv, cause network drift: {:?}",
        d.events()
    );

    // Its namespace deleted while it runs (its processes keep the old one, unreachable from the
    // bridge): the repair makes a new one with the same address and ports and restarts it into
    // it, journalled (no intent left open), reported with cause "netns gone".
    let inspect: Value =
        serde_json::from_str(&d.cli_ok(&["inspect", "srv"])).expect("inspect is JSON");
    let netns = inspect["container"]["runtime"]["netns_path"]
        .as_str()
        .expect("netns path")
        .to_string();
    let ns_name = Path::new(&netns)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("netns name");
    let ok = Command::new("ip")
        .args(["netns", "del", &ns_name])
        .status()
        .expect("ip netns del");
    assert!(ok.success());
    d.cli_ok(&["apply"]);
    d.wait_for("netns repaired", Duration::from_secs(30), || {
        repair("netns gone")
    });
    d.wait_for(
        "srv reachable in its new namespace",
        Duration::from_secs(30),
        || (http_get(port)? == "srv-1\n").then_some(()),
    );
    let again = running(&d, "srv").expect("srv running");
    assert_ne!(again["started_at"], before["started_at"], "restarted");
    assert_eq!(again["id"], before["id"], "the same container");
    assert_eq!(own_ip(&d, "srv"), Some(ip));
    assert_eq!(d.netns().len(), 1, "{:?}", d.netns());
    assert_eq!(links_with_prefix(&d.net.veth_prefix).len(), 1);
    let db = rusqlite::Connection::open(d.state.join("state.db")).expect("open state.db");
    let open: i64 = db
        .query_row("SELECT count(*) FROM intents", [], |r| r.get(0))
        .expect("count open intents");
    assert_eq!(open, 0, "the repair's intent is closed");
}

#[test]
fn example_manifests_come_up_linked_and_reachable() {
    if !require_root("example_manifests_come_up_linked_and_reachable") {
        return;
    }
    require_images();
    let port = free_port();
    let mut d = Daemon::prepare("example", "");
    // The examples' bridge, subnet and port, rewritten to this fixture's own.
    let (_, other) = agent_e2e::network::TestNet::names(d.net.firewall, true);
    let prefix = other
        .subnet
        .network()
        .to_string()
        .trim_end_matches(".0")
        .to_string();
    let bridge = format!("{}x", d.bridge);
    d.extra_bridges.push(bridge.clone());
    let examples = agent_e2e::workspace_root().join("examples/manifests");
    for e in std::fs::read_dir(&examples).expect("examples").flatten() {
        let text = std::fs::read_to_string(e.path()).expect("read example");
        let text = text
            .replace("10.214.7.", &format!("{prefix}."))
            .replace("agent-shop", &bridge)
            .replace("127.0.0.1:18080:", &format!("127.0.0.1:{port}:"));
        d.write(&e.file_name().to_string_lossy(), &text);
    }
    d.start();
    d.wait_for("web on 127.0.0.1", Duration::from_secs(90), || {
        (http_get(port)? == "shop is up\n").then_some(())
    });
    let kv_ip = own_ip(&d, "kv").expect("kv address");
    assert!(kv_ip.starts_with(&format!("{prefix}.")), "{kv_ip}");
    assert_eq!(hosts_ip(&d, "web", "db").as_deref(), Some(kv_ip.as_str()));
    let started = d.wait_for("web reaches kv as db", Duration::from_secs(20), || {
        exec_out(
            &d,
            "web",
            &["wget", "-q", "-O", "-", "http://db:6379/started"],
        )
        .filter(|s| !s.trim().is_empty())
    });
    assert!(!started.is_empty());
    d.wait_for("kv healthy", Duration::from_secs(40), || {
        (d.try_ps_row("kv")?["health"] == "healthy").then_some(())
    });
}

/// A tiny IPv4 subnet check, so the test needs no extra crate.
mod ipnet_like {
    use std::net::Ipv4Addr;

    pub struct Net {
        base: u32,
        mask: u32,
    }

    impl std::str::FromStr for Net {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let (a, p) = s.split_once('/').ok_or("no /")?;
            let a: Ipv4Addr = a.parse().map_err(|e| format!("{e}"))?;
            let p: u32 = p.parse().map_err(|e| format!("{e}"))?;
            let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
            Ok(Net {
                base: u32::from(a) & mask,
                mask,
            })
        }
    }

    impl Net {
        pub fn contains(&self, ip: &str) -> bool {
            ip.parse::<Ipv4Addr>()
                .is_ok_and(|a| u32::from(a) & self.mask == self.base)
        }
    }
}

#[test]
fn after_a_simulated_reboot_the_container_comes_back_with_its_network() {
    if !require_root("after_a_simulated_reboot_the_container_comes_back_with_its_network") {
        return;
    }
    require_images();
    let port = free_port();
    let mut d = Daemon::prepare("netboot", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("srv.yaml", &srv(1, port));
    d.wait_for("srv on 127.0.0.1", Duration::from_secs(90), || {
        running(&d, "srv")?;
        (http_get(port)? == "srv-1\n").then_some(())
    });
    let ip = own_ip(&d, "srv").expect("srv address");
    let inspect: Value =
        serde_json::from_str(&d.cli_ok(&["inspect", "srv"])).expect("inspect is JSON");
    let rt = &inspect["container"]["runtime"];
    let pid = rt["container_pid"].as_i64().expect("container pid");
    let monitors = monitor_pids(&d.state);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let netns = rt["netns_path"].as_str().expect("netns path").to_string();

    // "Reboot": the agent, the monitor and the container die without a word, the namespace
    // (and with it the veth) is gone.
    d.stop_with(libc::SIGKILL);
    for p in monitors.into_iter().chain([pid]) {
        // SAFETY: kill(2) of processes this test's agent started.
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(300));
    let name = Path::new(&netns)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("netns name");
    let ok = Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .expect("ip netns del");
    assert!(ok.success());
    // The kernel destroys a namespace asynchronously; a reboot leaves no veth either.
    std::thread::sleep(Duration::from_secs(1));
    for v in links_with_prefix(&d.net.veth_prefix) {
        let _ = Command::new("ip").args(["link", "del", &v]).status();
    }
    assert!(http_get(port).is_none());

    // `restart: always` brings it back, attached again with the same address and port.
    d.start();
    d.wait_for("srv back on 127.0.0.1", Duration::from_secs(60), || {
        (http_get(port)? == "srv-1\n").then_some(())
    });
    assert_eq!(own_ip(&d, "srv"), Some(ip));
    assert_eq!(links_with_prefix(&d.net.veth_prefix).len(), 1);
    assert_eq!(d.netns().len(), 1);
}

/// A plain bridge-mode container `name` (sleeps).
fn sleeper(name: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

#[test]
fn kill9_while_attaching_converges_to_exactly_what_the_store_explains() {
    if !require_root("kill9_while_attaching_converges_to_exactly_what_the_store_explains") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("netcrash", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.wait_for("image imported", Duration::from_secs(60), || {
        d.log_text().contains("import docker-archive").then_some(())
    });
    let names: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    for n in &names {
        d.write(&format!("{n}.yaml"), &sleeper(n));
    }
    // Kill -9 right after the second container was attached: the pass is mid-way.
    d.wait_for("two attached", Duration::from_secs(60), || {
        (d.log_text().matches("\"attached\"").count() >= 2).then_some(())
    });
    d.stop_with(libc::SIGKILL);

    d.start();
    d.wait_for("all running", Duration::from_secs(90), || {
        names.iter().all(|n| running(&d, n).is_some()).then_some(())
    });
    for l in d.log_text().lines().filter(|l| {
        l.contains("cleanup") || l.contains("state removing") || l.contains("never completed")
    }) {
        eprintln!("after the crash: {l}");
    }
    // One veth and one namespace per container, distinct addresses, nothing else.
    let veths = links_with_prefix(&d.net.veth_prefix);
    assert_eq!(veths.len(), names.len(), "{veths:?}");
    assert_eq!(d.netns().len(), names.len(), "{:?}", d.netns());
    let mut ips: Vec<String> = names
        .iter()
        .map(|n| own_ip(&d, n).unwrap_or_else(|| panic!("{n} has no address")))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), names.len(), "{ips:?}");
    d.stop();
    let db = rusqlite::Connection::open(d.state.join("state.db")).expect("open state.db");
    assert_eq!(count(&db, "ip_allocations"), names.len() as i64);
    assert_eq!(count(&db, "containers"), names.len() as i64);
}

#[test]
fn container_mode_follows_its_owner_across_recreation() {
    if !require_root("container_mode_follows_its_owner_across_recreation") {
        return;
    }
    require_images();
    let port = free_port();
    let mut d = Daemon::prepare("netshare", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("srv.yaml", &srv(1, port));
    d.write(
        "side.yaml",
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: side\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  networkMode: container:srv\n  stopGracePeriod: 1s\n",
    );
    let local = ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"];
    d.wait_for(
        "side reaches srv on its loopback",
        Duration::from_secs(90),
        || exec_out(&d, "side", &local).filter(|b| b == "srv-1\n"),
    );
    let side = running(&d, "side").expect("side running");

    // srv recreated: side held srv's old namespace, so it is recreated into the new one.
    d.write("srv.yaml", &srv(2, port));
    d.wait_for("side reaches the new srv", Duration::from_secs(60), || {
        exec_out(&d, "side", &local).filter(|b| b == "srv-2\n")
    });
    let again = running(&d, "side").expect("side running");
    assert_ne!(again["id"], side["id"], "side recreated");
    assert!(
        d.events().iter().any(|e| e["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("recreated side too"))),
        "the reason names side"
    );
}
