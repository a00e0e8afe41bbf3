//! Network driver end-to-end tests (root): two busybox "containers" (busybox processes inside
//! the driver's namespaces) reaching each other by link name, published TCP and UDP ports from
//! the host, `icc: false`, host/none/container modes. Every test runs against both firewall
//! backends. Traffic goes only to 127.0.0.0/8 and to the test's own namespaces.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use agent::driver::network::{
    AttachRequest, Error, FirewallChoice, LinkRequest, NetworkMode, Protocol,
};
use agent_e2e::network::*;

fn link(
    to: &agent::driver::network::Attachment,
    name: &str,
    alias: &str,
    port: u16,
) -> LinkRequest {
    LinkRequest {
        target_name: name.into(),
        alias: Some(alias.into()),
        target_ip: to.endpoints[0].ip,
        target_ports: vec![(port, Protocol::Tcp)],
        target_env: vec![("GREETING".into(), "hi".into())],
    }
}

fn links_reach_each_other_by_name(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, true);
    let a = t.attach(&t.req("alpha", vec![]));
    let mut rb = t.req("beta", vec![]);
    rb.links = vec![link(&a, "alpha", "db", 8080)];
    let b = t.attach(&rb);
    // alpha learns about beta once beta exists (as when a link target is recreated).
    let a = t
        .driver
        .update_links("alpha", &[link(&b, "beta", "web", 8081)])
        .unwrap_or_else(|e| panic!("update links: {e}"));
    assert!(
        b.hosts
            .contains(&format!("{}\tdb alpha\n", a.endpoints[0].ip)),
        "{}",
        b.hosts
    );
    assert!(
        a.hosts
            .contains(&format!("{}\tweb beta\n", b.endpoints[0].ip)),
        "{}",
        a.hosts
    );
    assert!(b.env.contains(&(
        "DB_PORT_8080_TCP_ADDR".into(),
        a.endpoints[0].ip.to_string()
    )));
    assert!(b.env.contains(&("DB_ENV_GREETING".into(), "hi".into())));

    t.http_server(&a, 8080, "from-alpha");
    t.http_server(&b, 8081, "from-beta");
    assert_eq!(
        wget_in(&b, "http://db:8080/").as_deref(),
        Some("from-alpha")
    );
    assert_eq!(
        wget_in(&b, "http://alpha:8080/").as_deref(),
        Some("from-alpha")
    );
    assert_eq!(
        wget_in(&a, "http://web:8081/").as_deref(),
        Some("from-beta")
    );
    // The link variables reach the process environment.
    let out = run_in(&b, &["sh", "-c", "echo $DB_PORT"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tcp://{}:8080", a.endpoints[0].ip)
    );
    // Interface shape inside: eth0 with the address, MTU, default route via the gateway.
    let out = run_in(&a, &["ip", "-o", "-4", "addr", "show", "eth0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}/24", a.endpoints[0].ip)),
        "{text}"
    );
    let out = run_in(&a, &["ip", "route"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("default via {}", t.net.gateway())),
        "{text}"
    );
}

fn published_ports_from_host(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, true);
    let req = t.req(
        "web",
        vec![
            port(None, 0, 80, Protocol::Tcp),
            port(Some(Ipv4Addr::LOCALHOST), 0, 5353, Protocol::Udp),
        ],
    );
    let w = t.attach(&req);
    let (tcp, udp) = (w.ports[0].host_port, w.ports[1].host_port);
    assert!((42000..=42999).contains(&tcp) && (42000..=42999).contains(&udp));
    t.http_server(&w, 80, "published");
    t.udp_echo(&w, 5353);
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, tcp));
    assert_eq!(
        http_get(lo).unwrap_or_else(|e| panic!("GET {lo}: {e}")),
        "published"
    );
    let gw = SocketAddr::from((t.net.gateway(), tcp));
    assert_eq!(
        http_get(gw).unwrap_or_else(|e| panic!("GET {gw}: {e}")),
        "published"
    );
    let u = SocketAddr::from((Ipv4Addr::LOCALHOST, udp));
    assert_eq!(
        udp_roundtrip(u, "ping").unwrap_or_else(|e| panic!("UDP {u}: {e}")),
        "echo:ping"
    );

    // Random host ports are stable across detach/attach (a restart).
    t.driver
        .detach("web")
        .unwrap_or_else(|e| panic!("detach: {e}"));
    assert!(http_get(lo).is_err(), "no rule while detached");
    let w2 = t.attach(&req);
    assert_eq!(w2.ports, w.ports);
    assert_eq!(w2.endpoints[0].ip, w.endpoints[0].ip, "address kept");

    // A fixed host port taken by another process fails that container only.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let busy = holder.local_addr().map(|a| a.port()).unwrap_or_default();
    let e = t
        .driver
        .attach(&t.req("other", vec![port(None, busy, 80, Protocol::Tcp)]))
        .unwrap_err();
    assert!(matches!(e, Error::PortInUse { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("other") && msg.contains(&busy.to_string()),
        "{msg}"
    );
    assert!(
        !t.driver
            .recorded_ids()
            .unwrap_or_default()
            .contains("other")
    );
    t.http_server(&w2, 80, "published");
    assert_eq!(
        http_get(lo).unwrap_or_default(),
        "published",
        "web unaffected"
    );
    // The same fixed port published twice is a conflict naming the owner.
    let fixed = t.attach(&t.req("fixed", vec![port(None, 42999, 80, Protocol::Tcp)]));
    assert_eq!(fixed.ports[0].host_port, 42999);
    let e = t
        .driver
        .attach(&t.req("dup", vec![port(None, 42999, 81, Protocol::Tcp)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dup") && e.contains("fixed"), "{e}");
}

fn icc_false_blocks_unlinked(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, false);
    let db = t.attach(&t.req("db", vec![]));
    let mut r = t.req("app", vec![]);
    r.links = vec![link(&db, "db", "db", 80)];
    let app = t.attach(&r);
    let stranger = t.attach(&t.req("stranger", vec![]));
    t.http_server(&db, 80, "secret");
    assert_eq!(wget_in(&app, "http://db/").as_deref(), Some("secret"));
    let url = format!("http://{}/", db.endpoints[0].ip);
    assert_eq!(
        wget_in(&stranger, &url),
        None,
        "icc: false must block unlinked traffic"
    );
    // Only the linked port is open.
    t.http_server(&db, 81, "other-port");
    assert_eq!(
        wget_in(&app, &format!("http://{}:81/", db.endpoints[0].ip)),
        None
    );
}

fn host_none_and_container_modes(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, true);
    let mut host = t.req("h", vec![]);
    host.mode = NetworkMode::Host;
    let h = t.attach(&host);
    assert!(h.netns.is_none() && h.endpoints.is_empty());
    let mut none = t.req("n", vec![]);
    none.mode = NetworkMode::None;
    let n = t.attach(&none);
    let out = run_in(&n, &["ip", "-o", "link"]);
    let links = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    let out = run_in(
        &n,
        &["ping", "-c", "1", "-W", "1", &t.net.gateway().to_string()],
    );
    assert!(!out.status.success(), "none mode has no route out");
    // container:<id> shares the namespace path and sees the owner's server on localhost.
    let owner = t.attach(&t.req("owner", vec![]));
    t.http_server(&owner, 8088, "shared");
    let mut joined = t.req("joined", vec![]);
    joined.mode = NetworkMode::Container("owner".into());
    let j = t.attach(&joined);
    assert_eq!(j.netns, owner.netns);
    assert_eq!(
        wget_in(&j, "http://127.0.0.1:8088/").as_deref(),
        Some("shared")
    );
    let bad = AttachRequest {
        mode: NetworkMode::Container("missing".into()),
        ..t.req("x", vec![])
    };
    assert!(
        t.driver
            .attach(&bad)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

fn two_networks_and_teardown_past_failures(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, true);
    let back = t.add_network("back", true);
    let mut r = t.req("multi", vec![port(None, 0, 80, Protocol::Tcp)]);
    r.mode = NetworkMode::Bridge(vec![t.net.name.clone(), back.name.clone()]);
    let m = t.attach(&r);
    assert_eq!(m.endpoints.len(), 2);
    assert_eq!(m.endpoints[1].ifname, "eth1");
    assert!(back.subnet.contains(&m.endpoints[1].ip));
    let out = run_in(&m, &["ip", "-o", "-4", "addr"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("eth1    inet {}/24", m.endpoints[1].ip)),
        "{text}"
    );
    let other = t.attach(&AttachRequest {
        mode: NetworkMode::Bridge(vec![back.name.clone()]),
        ..t.req("other", vec![])
    });
    t.http_server(&other, 80, "on-back");
    let url = format!("http://{}/", other.endpoints[0].ip);
    assert_eq!(wget_in(&m, &url).as_deref(), Some("on-back"));
    // A network in use can't be removed.
    let e = t.driver.remove_network(&back.name).unwrap_err().to_string();
    assert!(e.contains("multi") || e.contains("other"), "{e}");

    // Teardown keeps going past a failure: make the namespace unremovable (a directory with a
    // file where the namespace file should be); the veths still go, the rules still go, and the
    // failure is reported; the record stays (incomplete) for cleanup to retry.
    let mut rec = t
        .driver
        .attachments()
        .unwrap()
        .into_iter()
        .find(|r| r.container_id == "multi")
        .unwrap();
    let blocker = t.state.path().join("blocker");
    std::fs::create_dir_all(blocker.join("sub")).unwrap();
    let real_ns = rec.owned_netns.replace(blocker.clone()).unwrap();
    agent::driver::network::IpamStore::put_attachment(t.store.as_ref(), &rec).unwrap();
    let e = t.driver.detach("multi").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Teardown { .. }) && msg.contains("blocker"),
        "{msg}"
    );
    assert!(
        t.host_veths()
            .iter()
            .all(|v| !v.starts_with(&m.endpoints[0].host_veth))
    );
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, m.ports[0].host_port));
    assert!(
        !t.firewall_listing()
            .contains(&format!("{}", m.ports[0].host_port)),
        "{lo}"
    );
    assert!(
        t.driver.recorded_ids().unwrap().contains("multi"),
        "record kept"
    );
    // Fixed; start-up cleanup retries and finishes it (and the real namespace goes as stray).
    std::fs::remove_dir_all(&blocker).unwrap();
    let report = t.driver.cleanup(None).unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(!t.driver.recorded_ids().unwrap().contains("multi"));
    assert!(!real_ns.exists(), "namespace removed by cleanup");
}

macro_rules! for_both_firewalls {
    ($($name:ident),*) => {
        mod nftables {
            use super::*;
            $(#[test]
            fn $name() {
                if can_run(stringify!($name), FirewallChoice::Nftables) {
                    super::$name(FirewallChoice::Nftables);
                }
            })*
        }
        mod iptables {
            use super::*;
            $(#[test]
            fn $name() {
                if can_run(stringify!($name), FirewallChoice::Iptables) {
                    super::$name(FirewallChoice::Iptables);
                }
            })*
        }
    };
}

for_both_firewalls!(
    links_reach_each_other_by_name,
    published_ports_from_host,
    icc_false_blocks_unlinked,
    host_none_and_container_modes,
    two_networks_and_teardown_past_failures
);
