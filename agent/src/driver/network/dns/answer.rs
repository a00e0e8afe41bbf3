//! What the DNS server says to one query: a reply built from the records, or "forward it".
//!
//! Pure: no sockets, no clock. The server ([`super::server`]) passes the query's bytes, the
//! gateway address it arrived on and the client's address.
//!
//! - The names a client sees are those of every network it is on (its address is on that
//!   network in the records), the network the query arrived on first; a client the records do
//!   not know sees the names of the network the query arrived on.
//! - A name matches case-insensitively, with or without the trailing dot, and also with one of
//!   the host's search domains appended (a client that tries `web.example.com` first, as musl
//!   and glibc do with a `search` line, gets the answer rather than a trip upstream).
//! - `A`: the address(es) of the name on the first network that has it. Any other type of a
//!   known name: no records, NOERROR (NODATA), so that an `AAAA` lookup does not go upstream and
//!   come back NXDOMAIN (which makes some resolvers give up on the `A` answer).
//! - `PTR` of a known address (`d.c.b.a.in-addr.arpa`): the first name of that address.
//! - Everything else, and queries that are not a plain standard query of one question, is
//!   forwarded unchanged to the upstream servers.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{DnsNetwork, Records};

/// Time to live of the answers, in seconds: short, because a recreated container may come back
/// with another address (Podman's aardvark-dns uses 60 s, Docker 600 s).
pub const TTL: u32 = 5;

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: send the query to the upstream servers as it is.
    Forward,
    /// Not a DNS query at all: drop it.
    Drop,
}

/// Decides what to answer to `query`, which arrived on `gateway` from `client`.
pub fn decide(
    records: &Records,
    search: &[String],
    gateway: Ipv4Addr,
    client: Ipv4Addr,
    query: &[u8],
) -> Decision {
    let Ok(msg) = Message::from_vec(query) else {
        return Decision::Drop;
    };
    if msg.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
        return Decision::Forward;
    }
    let q = &msg.queries[0];
    if q.query_class != DNSClass::IN {
        return Decision::Forward;
    }
    let networks = visible(records, gateway, client);
    if networks.is_empty() {
        return Decision::Forward;
    }
    let qname = q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let answers: Option<Vec<RData>> = if q.query_type == RecordType::PTR {
        reverse(&qname).and_then(|ip| {
            networks.iter().find_map(|n| {
                n.hosts
                    .iter()
                    .find(|h| h.ip == ip)
                    .and_then(|h| h.names.first())
                    .and_then(|name| Name::from_ascii(format!("{name}.")).ok())
                    .map(|name| vec![RData::PTR(PTR(name))])
            })
        })
    } else {
        lookup(&networks, search, &qname).map(|ips| {
            if q.query_type == RecordType::A {
                ips.into_iter().map(|ip| RData::A(A(ip))).collect()
            } else {
                Vec::new()
            }
        })
    };
    let Some(answers) = answers else {
        return Decision::Forward;
    };
    let mut reply = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&msg.metadata);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = ResponseCode::NoError;
    reply.add_query(q.clone());
    for rdata in answers {
        reply.add_answer(Record::from_rdata(q.name.clone(), TTL, rdata));
    }
    match reply.to_vec() {
        Ok(bytes) => Decision::Reply(bytes),
        Err(_) => Decision::Forward,
    }
}

/// The networks whose names `client` sees, the one of `gateway` first.
fn visible(records: &Records, gateway: Ipv4Addr, client: Ipv4Addr) -> Vec<&DnsNetwork> {
    let arrived = records.networks.iter().find(|n| n.gateway == gateway);
    let mut out: Vec<&DnsNetwork> = arrived.into_iter().collect();
    let member = |n: &&DnsNetwork| n.hosts.iter().any(|h| h.ip == client);
    if arrived.is_some_and(|a| member(&a)) {
        for n in records.networks.iter().filter(member) {
            if !out.iter().any(|o| o.name == n.name) {
                out.push(n);
            }
        }
    }
    out
}

/// The addresses of `name` on the first of `networks` that knows it, trying the name as it is
/// and then without each search domain.
fn lookup(networks: &[&DnsNetwork], search: &[String], name: &str) -> Option<Vec<Ipv4Addr>> {
    let candidates = std::iter::once(name).chain(search.iter().filter_map(|d| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        name.strip_suffix(d.as_str())?.strip_suffix('.')
    }));
    for candidate in candidates {
        for n in networks {
            let ips: Vec<Ipv4Addr> = n
                .hosts
                .iter()
                .filter(|h| h.names.iter().any(|x| x.eq_ignore_ascii_case(candidate)))
                .map(|h| h.ip)
                .collect();
            if !ips.is_empty() {
                return Some(ips);
            }
        }
    }
    None
}

/// The address of `d.c.b.a.in-addr.arpa`.
fn reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match parts[..] {
        [d, c, b, a] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::DnsHost;
    use super::*;
    use hickory_proto::op::Query;

    fn records() -> Records {
        Records {
            version: 1,
            upstreams: Vec::new(),
            networks: vec![
                DnsNetwork {
                    name: "front".into(),
                    gateway: Ipv4Addr::new(10, 1, 0, 1),
                    hosts: vec![
                        DnsHost {
                            ip: Ipv4Addr::new(10, 1, 0, 2),
                            names: vec!["web".into(), "api".into()],
                        },
                        DnsHost {
                            ip: Ipv4Addr::new(10, 1, 0, 3),
                            names: vec!["proxy".into()],
                        },
                    ],
                },
                DnsNetwork {
                    name: "back".into(),
                    gateway: Ipv4Addr::new(10, 2, 0, 1),
                    hosts: vec![
                        DnsHost {
                            ip: Ipv4Addr::new(10, 2, 0, 2),
                            names: vec!["db".into()],
                        },
                        DnsHost {
                            ip: Ipv4Addr::new(10, 2, 0, 3),
                            names: vec!["web".into()],
                        },
                    ],
                },
            ],
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn ask(gw: [u8; 4], client: [u8; 4], name: &str, t: RecordType) -> Option<Message> {
        match decide(
            &records(),
            &["example.com".to_string()],
            gw.into(),
            client.into(),
            &query(name, t),
        ) {
            Decision::Reply(b) => Some(Message::from_vec(&b).unwrap()),
            Decision::Forward => None,
            Decision::Drop => panic!("dropped"),
        }
    }

    fn a_of(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_and_aliases_of_the_network_answer() {
        let m = ask([10, 1, 0, 1], [10, 1, 0, 3], "web.", RecordType::A).unwrap();
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.recursion_desired && m.metadata.authoritative);
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 1, 0, 2)]);
        let m = ask([10, 1, 0, 1], [10, 1, 0, 3], "API", RecordType::A).unwrap();
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 1, 0, 2)]);
        // With a search domain appended.
        let m = ask(
            [10, 1, 0, 1],
            [10, 1, 0, 3],
            "api.example.com.",
            RecordType::A,
        )
        .unwrap();
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn other_networks_stay_hidden_unless_the_client_is_on_them() {
        // A client of front only does not see back's db.
        assert!(ask([10, 1, 0, 1], [10, 1, 0, 3], "db", RecordType::A).is_none());
        // A client on both (10.1.0.2 is web on front; make it a member of back too).
        let mut r = records();
        r.networks[1].hosts[1].ip = Ipv4Addr::new(10, 2, 0, 9);
        r.networks[1].hosts.push(DnsHost {
            ip: Ipv4Addr::new(10, 1, 0, 2),
            names: vec!["x".into()],
        });
        let d = decide(
            &r,
            &[],
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 2),
            &query("db", RecordType::A),
        );
        let Decision::Reply(b) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            a_of(&Message::from_vec(&b).unwrap()),
            vec![Ipv4Addr::new(10, 2, 0, 2)]
        );
        // The network the query arrived on wins for a name on both.
        let m = ask([10, 2, 0, 1], [10, 2, 0, 2], "web", RecordType::A).unwrap();
        assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 2, 0, 3)]);
    }

    #[test]
    fn aaaa_of_a_known_name_is_nodata_and_unknown_names_go_upstream() {
        let m = ask([10, 1, 0, 1], [10, 1, 0, 3], "web", RecordType::AAAA).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(ask([10, 1, 0, 1], [10, 1, 0, 3], "example.org", RecordType::A).is_none());
        assert!(ask([10, 9, 0, 1], [10, 9, 0, 3], "web", RecordType::A).is_none());
    }

    #[test]
    fn ptr_of_a_known_address() {
        let m = ask(
            [10, 1, 0, 1],
            [10, 1, 0, 3],
            "2.0.1.10.in-addr.arpa.",
            RecordType::PTR,
        )
        .unwrap();
        let names: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(names, vec!["web."]);
        assert!(
            ask(
                [10, 1, 0, 1],
                [10, 1, 0, 3],
                "9.0.1.10.in-addr.arpa.",
                RecordType::PTR
            )
            .is_none()
        );
    }

    #[test]
    fn garbage_is_dropped() {
        let d = decide(
            &records(),
            &[],
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 3),
            b"\x01\x02garbage",
        );
        assert_eq!(d, Decision::Drop);
    }
}
