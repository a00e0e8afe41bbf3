//! Published ports: Docker's `[hostIp:][hostPort:]containerPort[/proto]` syntax with ranges,
//! host port choice (fixed or random, random ones recorded and stable) and the in-use probe.
//!
//! Publishing is done with DNAT rules only (no userland proxy). To report "port already in use"
//! as Docker does, each host port is probed by binding it (TCP: listen socket, UDP: datagram
//! socket) on the requested host address just before the rules are written; a port some other
//! process holds fails that container's attachment with [`super::Error::PortInUse`] and nothing
//! else. The probe is not a reservation: a process that binds the port later is shadowed by the
//! DNAT rule, as with Docker's `userland-proxy: false`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use super::Error;
use super::ipam::{IpamStore, PortAllocation, PortKey};
use super::types::{PortMapping, Protocol};

/// Parses one Docker-style port spec, expanding ranges (`8000-8002:80-82/udp`).
///
/// Forms: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, each with `/tcp` or `/udp`.
/// A missing host port means a random one. Host and container ranges must be equally long.
pub fn parse_port_spec(spec: &str) -> Result<Vec<PortMapping>, Error> {
    let bad = |reason: String| Error::PortSpec {
        spec: spec.to_string(),
        reason,
    };
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p.parse::<Protocol>().map_err(bad)?),
        None => (spec, Protocol::Tcp),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| bad(format!("host address {ip:?} is not an IPv4 address")))?;
            (if ip.is_unspecified() { None } else { Some(ip) }, *h, *c)
        }
        _ => {
            return Err(bad(
                "expected [hostIp:][hostPort:]containerPort[/tcp|udp]".into()
            ));
        }
    };
    let containers = parse_range(container).map_err(|r| bad(format!("container port: {r}")))?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(parse_range(host).map_err(|r| bad(format!("host port: {r}")))?)
    };
    if let Some((hlo, hhi)) = hosts
        && hhi - hlo != containers.1 - containers.0
    {
        return Err(bad(format!(
            "host range {hlo}-{hhi} and container range {}-{} differ in length",
            containers.0, containers.1
        )));
    }
    Ok((containers.0..=containers.1)
        .enumerate()
        .map(|(i, cport)| PortMapping {
            host_ip,
            host_port: hosts.map_or(0, |(lo, _)| lo + i as u16),
            container_port: cport,
            protocol: proto,
        })
        .collect())
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port (1 to 65535)")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("range {a}-{b} is reversed"));
            }
            Ok((a, b))
        }
        None => port(s).map(|p| (p, p)),
    }
}

/// A host port already published by some container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenPort {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: Protocol,
    /// The container that published it.
    pub owner: String,
}

fn overlaps(a: Option<Ipv4Addr>, b: Option<Ipv4Addr>) -> bool {
    a.is_none() || b.is_none() || a == b
}

/// Probes whether a host port can be bound on `host_ip` (all addresses when `None`).
pub fn probe_bind(host_ip: Option<Ipv4Addr>, port: u16, proto: Protocol) -> std::io::Result<()> {
    let addr = SocketAddrV4::new(host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    match proto {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    }
}

/// Decides the host port of every mapping of one container.
///
/// Fixed ports must not be published by another container (`taken`) and must pass `probe`.
/// Random ports reuse the recorded one when it is still free, otherwise the next free port of
/// `range` from a starting point derived from the key; the choice is recorded in `store`.
pub fn choose_host_ports(
    store: &dyn IpamStore,
    container_id: &str,
    container_name: &str,
    mappings: &[PortMapping],
    range: (u16, u16),
    taken: &[TakenPort],
    probe: &dyn Fn(Option<Ipv4Addr>, u16, Protocol) -> std::io::Result<()>,
) -> Result<Vec<u16>, Error> {
    let mut mine: Vec<TakenPort> = Vec::new();
    let conflict = |ip: Option<Ipv4Addr>, port: u16, proto: Protocol, mine: &[TakenPort]| {
        taken
            .iter()
            .chain(mine.iter())
            .find(|t| t.host_port == port && t.protocol == proto && overlaps(t.host_ip, ip))
            .map(|t| t.owner.clone())
    };
    let recorded = store.host_ports()?;
    let reserved: HashSet<(Protocol, u16)> = recorded
        .iter()
        .filter(|p| p.key.container_id != container_id)
        .map(|p| (p.key.protocol, p.host_port))
        .collect();
    let mut out = Vec::with_capacity(mappings.len());
    for m in mappings {
        let port = if m.host_port != 0 {
            if let Some(owner) = conflict(m.host_ip, m.host_port, m.protocol, &mine) {
                return Err(Error::PortConflict {
                    container: container_name.to_string(),
                    port: format!("{}/{}", m.host_port, m.protocol),
                    owner,
                });
            }
            probe(m.host_ip, m.host_port, m.protocol).map_err(|e| Error::PortInUse {
                container: container_name.to_string(),
                port: format!(
                    "{}:{}/{}",
                    m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    m.host_port,
                    m.protocol
                ),
                source: e,
            })?;
            m.host_port
        } else {
            let key = PortKey {
                container_id: container_id.to_string(),
                protocol: m.protocol,
                host_ip: m.host_ip,
                container_port: m.container_port,
            };
            let previous = recorded.iter().find(|p| p.key == key).map(|p| p.host_port);
            let usable = |p: u16, mine: &[TakenPort]| {
                conflict(m.host_ip, p, m.protocol, mine).is_none()
                    && probe(m.host_ip, p, m.protocol).is_ok()
            };
            let chosen = match previous {
                Some(p) if usable(p, &mine) => p,
                _ => {
                    if let Some(p) = previous {
                        tracing::warn!(
                            container = container_name,
                            port = p,
                            "recorded random host port is taken now; choosing another"
                        );
                    }
                    let (lo, hi) = range;
                    let span = u32::from(hi - lo) + 1;
                    let start = start_offset(&key) % span;
                    (0..span)
                        .map(|i| (lo as u32 + (start + i) % span) as u16)
                        .find(|p| !reserved.contains(&(m.protocol, *p)) && usable(*p, &mine))
                        .ok_or_else(|| Error::NoFreePort {
                            container: container_name.to_string(),
                            range: format!("{lo}-{hi}/{}", m.protocol),
                        })?
                }
            };
            if previous != Some(chosen) {
                store.record_host_port(&PortAllocation {
                    key,
                    host_port: chosen,
                })?;
            }
            chosen
        };
        mine.push(TakenPort {
            host_ip: m.host_ip,
            host_port: port,
            protocol: m.protocol,
            owner: container_name.to_string(),
        });
        out.push(port);
    }
    Ok(out)
}

/// A stable per-key start point so that random ports spread over the range.
fn start_offset(key: &PortKey) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(
        format!(
            "{}/{}/{:?}/{}",
            key.container_id, key.protocol, key.host_ip, key.container_port
        )
        .as_bytes(),
    );
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::ipam::FileStore;

    fn pm(ip: Option<[u8; 4]>, h: u16, c: u16, p: Protocol) -> PortMapping {
        PortMapping {
            host_ip: ip.map(Ipv4Addr::from),
            host_port: h,
            container_port: c,
            protocol: p,
        }
    }

    #[test]
    fn parses_docker_forms_and_ranges() {
        use Protocol::*;
        assert_eq!(parse_port_spec("80").unwrap(), vec![pm(None, 0, 80, Tcp)]);
        assert_eq!(
            parse_port_spec("8080:80").unwrap(),
            vec![pm(None, 8080, 80, Tcp)]
        );
        assert_eq!(
            parse_port_spec("127.0.0.1:8080:80/udp").unwrap(),
            vec![pm(Some([127, 0, 0, 1]), 8080, 80, Udp)]
        );
        assert_eq!(
            parse_port_spec("127.0.0.1::80").unwrap(),
            vec![pm(Some([127, 0, 0, 1]), 0, 80, Tcp)]
        );
        assert_eq!(
            parse_port_spec("0.0.0.0:1:2").unwrap(),
            vec![pm(None, 1, 2, Tcp)]
        );
        assert_eq!(
            parse_port_spec("8000-8002:80-82/UDP").unwrap(),
            vec![
                pm(None, 8000, 80, Udp),
                pm(None, 8001, 81, Udp),
                pm(None, 8002, 82, Udp)
            ]
        );
        assert_eq!(parse_port_spec("90-91").unwrap().len(), 2);
    }

    #[test]
    fn bad_specs_say_what_is_allowed() {
        for (spec, needle) in [
            ("80/sctp", "allowed are tcp and udp"),
            ("8000-8001:80", "differ in length"),
            ("0:80", "not a port"),
            ("x:1:2", "IPv4"),
            ("1:2:3:4", "expected"),
            ("90-80", "reversed"),
            ("70000", "not a port"),
        ] {
            let e = parse_port_spec(spec).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(spec), "{spec}: {e}");
        }
    }

    #[test]
    fn fixed_ports_conflict_and_probe_errors_name_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s.json")).unwrap();
        let ok = |_: Option<Ipv4Addr>, _: u16, _: Protocol| Ok(());
        let taken = vec![TakenPort {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080,
            protocol: Protocol::Tcp,
            owner: "db".into(),
        }];
        let e = choose_host_ports(
            &store,
            "id",
            "web",
            &[pm(None, 8080, 80, Protocol::Tcp)],
            (40000, 40010),
            &taken,
            &ok,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("web") && e.contains("8080/tcp") && e.contains("db"),
            "{e}"
        );
        // Other address, other protocol: fine.
        let got = choose_host_ports(
            &store,
            "id",
            "web",
            &[
                pm(Some([10, 0, 0, 1]), 8080, 80, Protocol::Tcp),
                pm(None, 8080, 80, Protocol::Udp),
            ],
            (40000, 40010),
            &taken,
            &ok,
        )
        .unwrap();
        assert_eq!(got, vec![8080, 8080]);
        // Duplicate inside one request.
        assert!(
            choose_host_ports(
                &store,
                "id",
                "web",
                &[
                    pm(None, 81, 80, Protocol::Tcp),
                    pm(None, 81, 82, Protocol::Tcp)
                ],
                (40000, 40010),
                &[],
                &ok,
            )
            .is_err()
        );
        let busy = |_: Option<Ipv4Addr>, _: u16, _: Protocol| {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        };
        let e = choose_host_ports(
            &store,
            "id",
            "web",
            &[pm(None, 9090, 80, Protocol::Tcp)],
            (40000, 40010),
            &[],
            &busy,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("web") && e.contains("0.0.0.0:9090/tcp") && e.contains("in use"),
            "{e}"
        );
    }

    #[test]
    fn random_ports_are_recorded_stable_and_skip_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s.json")).unwrap();
        let ok = |_: Option<Ipv4Addr>, _: u16, _: Protocol| Ok(());
        let req = [
            pm(None, 0, 80, Protocol::Tcp),
            pm(None, 0, 81, Protocol::Tcp),
        ];
        let first = choose_host_ports(&store, "a", "a", &req, (40000, 40003), &[], &ok).unwrap();
        assert_ne!(first[0], first[1]);
        assert!(first.iter().all(|p| (40000..=40003).contains(p)));
        let again = choose_host_ports(&store, "a", "a", &req, (40000, 40003), &[], &ok).unwrap();
        assert_eq!(first, again, "stable across attaches");
        // Another container avoids a's recorded ports even while a is detached.
        let other = choose_host_ports(&store, "b", "b", &req, (40000, 40003), &[], &ok).unwrap();
        assert!(
            other.iter().all(|p| !first.contains(p)),
            "{other:?} vs {first:?}"
        );
        // Range exhausted.
        let e = choose_host_ports(&store, "c", "c", &req[..1], (40000, 40003), &[], &ok)
            .unwrap_err()
            .to_string();
        assert!(e.contains("40000-40003/tcp") && e.contains("c"), "{e}");
        // A recorded port that became busy is replaced.
        store.release_host_ports("b").unwrap();
        let busy_first = first[0];
        let probe = move |_: Option<Ipv4Addr>, p: u16, _: Protocol| {
            if p == busy_first {
                Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            } else {
                Ok(())
            }
        };
        let moved = choose_host_ports(&store, "a", "a", &req, (40000, 40003), &[], &probe).unwrap();
        assert_ne!(moved[0], busy_first);
        assert_eq!(moved[1], first[1]);
    }

    /// Candidate ports outside the kernel's ephemeral range
    /// (`/proc/sys/net/ipv4/ip_local_port_range`), starting at a pid-derived offset. A test
    /// running in parallel that binds port 0 is never handed one of these, so a port released
    /// here stays free unless someone binds it by number.
    fn non_ephemeral_ports() -> impl Iterator<Item = u16> {
        let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999));
        let mut ports: Vec<u16> = (1024..lo).chain(hi.saturating_add(1)..=u16::MAX).collect();
        if ports.is_empty() {
            // The whole unprivileged range is ephemeral: fall back to it (retries still help).
            ports = (1024..=u16::MAX).collect();
        }
        let start = std::process::id() as usize % ports.len();
        ports.rotate_left(start);
        // Spread the tries so that a neighbour's fixed port block is left quickly.
        ports.into_iter().step_by(97)
    }

    #[test]
    fn probe_detects_a_listener_on_loopback() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        assert!(probe_bind(Some(Ipv4Addr::LOCALHOST), uport, Protocol::Udp).is_err());

        // TCP: a held port is busy on its address and on 0.0.0.0, and free again once released
        // (for the next probe too).
        // Only a bind by number can take the released port before the last probe; if that
        // happens (the probe then rightly says busy) the next candidate port is tried.
        let mut released_but_busy = Vec::new();
        for port in non_ephemeral_ports().take(20) {
            let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
                continue;
            };
            assert!(probe_bind(Some(Ipv4Addr::LOCALHOST), port, Protocol::Tcp).is_err());
            assert!(
                probe_bind(None, port, Protocol::Tcp).is_err(),
                "0.0.0.0 overlaps 127.0.0.1"
            );
            drop(l);
            // Twice: the probe itself must not keep the port.
            if probe_bind(Some(Ipv4Addr::LOCALHOST), port, Protocol::Tcp).is_ok()
                && probe_bind(None, port, Protocol::Tcp).is_ok()
            {
                return;
            }
            released_but_busy.push(port);
        }
        panic!(
            "the probe never reported a released port free (busy after release: {released_but_busy:?})"
        );
    }
}
