//! CVE-2020-8558 (root): the agent's bridges have `route_localnet=1` (so the host reaches
//! published ports on 127.0.0.1), which would also let a container reach the host's own services
//! bound to 127.0.0.1. The "container" here sends to 127.0.0.1 through its gateway (its local
//! routes for 127.0.0.0/8 replaced by a route via the bridge and `route_localnet` set on its
//! `eth0`, what a container with NET_ADMIN can do and one with NET_RAW can do by crafting the
//! frame); the host's UDP and TCP listeners on 127.0.0.1 must see nothing, while the same
//! packets to the gateway address arrive and published ports on 127.0.0.1 keep working. Runs
//! against both firewall backends.
//!
//! Traffic goes only to 127.0.0.0/8, the test bridge's gateway and the test's own namespaces.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::driver::network::{FirewallChoice, Protocol};
use agent_e2e::network::*;

/// Runs `f` on a thread that entered the network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.to_path_buf();
    std::thread::spawn(move || {
        let ns = path;
        let file = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("open {ns:?}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|_| panic!("thread in {} panicked", ns.display()))
}

/// `nsenter --net=<ns> <args>`, which must succeed.
fn ns_cmd(ns: &Path, args: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("nsenter {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `msg` from the namespace to `to` a few times, then waits for it on `sock`: whether it
/// arrived (from the container's address).
fn udp_arrives(ns: &Path, to: SocketAddr, sock: &UdpSocket, msg: &'static str) -> bool {
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            // Errors (EPERM from a local firewall, unreachable) count as "not delivered".
            let _ = s.send_to(msg.as_bytes(), to);
        }
    });
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && &buf[..n] == msg.as_bytes()
        {
            return true;
        }
    }
    false
}

/// Whether the host has a TCP socket on local address `local` talking to `peer` in any state
/// (a half-open SYN-RECV connection counts: the SYN was delivered to the listener).
fn host_tcp_peer(local: SocketAddr, peer: Ipv4Addr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let want = hex(local);
    let peer = format!("{:08X}:", u32::from_le_bytes(peer.octets()));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == want && f[2].starts_with(&peer)
        })
}

/// Tries a TCP connection from the namespace (address `from`) to `to` and checks whether the
/// host's `listener` got it: connected, accepted, or at least its SYN delivered.
fn tcp_arrives(ns: &Path, from: Ipv4Addr, to: SocketAddr, listener: &TcpListener) -> bool {
    let connected = in_netns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(2))
            .and_then(|mut s| s.write_all(b"x"))
            .is_ok()
    });
    let half_open = host_tcp_peer(to, from);
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept().is_ok();
    connected || accepted || half_open
}

fn container_cannot_reach_host_loopback(fw: FirewallChoice) {
    let mut t = TestNet::new(fw, true);
    let att = t.attach(&t.req("attacker", vec![]));
    let ns = att.netns.clone().unwrap();
    let gw = t.net.gateway();
    let me = att.endpoints[0].ip;

    // The attacker's set-up: 127.0.0.0/8 goes out of eth0 to the gateway.
    ns_cmd(
        &ns,
        &["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
    );
    ns_cmd(
        &ns,
        &["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
    );
    ns_cmd(
        &ns,
        &["ip", "route", "del", "local", "127.0.0.1", "table", "local"],
    );
    ns_cmd(
        &ns,
        &[
            "ip",
            "route",
            "del",
            "local",
            "127.0.0.0/8",
            "table",
            "local",
        ],
    );
    let via = gw.to_string();
    ns_cmd(
        &ns,
        &[
            "ip",
            "route",
            "add",
            "127.0.0.0/8",
            "via",
            &via,
            "dev",
            "eth0",
        ],
    );

    // Control: the same packets to the host's address on the bridge arrive.
    let on_gw = UdpSocket::bind((gw, 0)).unwrap();
    let gw_addr = on_gw.local_addr().unwrap();
    assert!(
        udp_arrives(&ns, gw_addr, &on_gw, "to-gateway"),
        "{fw:?}: UDP to the gateway {gw_addr} did not arrive: the test set-up is broken"
    );
    let gw_tcp = TcpListener::bind((gw, 0)).unwrap();
    assert!(
        tcp_arrives(&ns, me, gw_tcp.local_addr().unwrap(), &gw_tcp),
        "{fw:?}: TCP to the gateway did not arrive: the test set-up is broken"
    );

    // The host's services on 127.0.0.1 see nothing.
    let lo_udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let lo_udp_addr = lo_udp.local_addr().unwrap();
    let udp_leak = udp_arrives(&ns, lo_udp_addr, &lo_udp, "to-loopback");
    let lo_tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let lo_tcp_addr = lo_tcp.local_addr().unwrap();
    let tcp_leak = tcp_arrives(&ns, me, lo_tcp_addr, &lo_tcp);
    assert!(
        !udp_leak && !tcp_leak,
        "{fw:?}: a container reached the host's loopback: UDP to {lo_udp_addr} delivered: \
         {udp_leak}, TCP to {lo_tcp_addr} delivered: {tcp_leak}"
    );

    // Published ports on 127.0.0.1 (DNAT) still work, TCP and UDP. Host ports free right now
    // (not from the random range: the other backend's test, running in parallel, would draw
    // the same port for the same container name and DNAT it to its own container).
    let free_tcp = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let free_udp = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let req = t.req(
        "web",
        vec![
            port(Some(Ipv4Addr::LOCALHOST), free_tcp, 80, Protocol::Tcp),
            port(Some(Ipv4Addr::LOCALHOST), free_udp, 5353, Protocol::Udp),
        ],
    );
    let web = t.attach(&req);
    t.http_server(&web, 80, "published");
    t.udp_echo(&web, 5353);
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, web.ports[0].host_port));
    assert_eq!(
        http_get(http).unwrap_or_else(|e| panic!("{fw:?}: GET {http}: {e}")),
        "published"
    );
    let udp = SocketAddr::from((Ipv4Addr::LOCALHOST, web.ports[1].host_port));
    assert_eq!(
        udp_roundtrip(udp, "ping").unwrap_or_else(|e| panic!("{fw:?}: UDP {udp}: {e}")),
        "echo:ping"
    );
}

#[test]
fn nftables_container_cannot_reach_host_loopback() {
    if can_run(
        "nftables_container_cannot_reach_host_loopback",
        FirewallChoice::Nftables,
    ) {
        container_cannot_reach_host_loopback(FirewallChoice::Nftables);
    }
}

#[test]
fn iptables_container_cannot_reach_host_loopback() {
    if can_run(
        "iptables_container_cannot_reach_host_loopback",
        FirewallChoice::Iptables,
    ) {
        container_cannot_reach_host_loopback(FirewallChoice::Iptables);
    }
}
