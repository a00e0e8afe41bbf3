//! nftables backend: one table `ip <instance>` built with the `nftables` crate's JSON schema and
//! applied with `nft -j -f -` as one transaction (`add table; delete table; add table ...`), so
//! the kernel switches from the old rules to the new ones atomically and a repeated apply changes
//! nothing. Where iptables filters forwarded traffic too (Docker), accept rules for the bridges
//! are kept in iptables as well (see [`super::host`]).

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::expr::{CT, Payload, PayloadField, Prefix};
use nftables::expr::{Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables as Batch, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{Error, FirewallDriver, FirewallState, loopback_net, run};
use crate::driver::network::types::Protocol;

/// The nftables backend for one instance (table `ip <table>`).
#[derive(Debug, Clone)]
pub struct Nftables {
    table: String,
}

const FORWARD: &str = "forward";
const INPUT: &str = "input";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const POSTROUTING: &str = "postrouting";
const PORTS: &str = "ports";

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}
fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}
fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}
fn prefix(net: ipnet::Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}
fn m(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}
fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    m(left, Operator::EQ, right)
}
fn iif(b: &str) -> Statement<'static> {
    eq(meta(MetaKey::Iifname), s(b))
}
fn oif(b: &str) -> Statement<'static> {
    eq(meta(MetaKey::Oifname), s(b))
}
fn proto_port(proto: Protocol, field: &'static str, port: u16) -> Statement<'static> {
    eq(
        payload(proto.as_str(), field),
        Expression::Number(u32::from(port)),
    )
}
fn local_daddr() -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        s("local"),
    )
}
fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

impl Nftables {
    /// The backend for table `ip <table>`.
    pub fn new(table: &str) -> Self {
        Nftables {
            table: table.to_string(),
        }
    }

    fn table_obj(&self) -> NfListObject<'static> {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: Cow::Owned(self.table.clone()),
            handle: None,
        })
    }

    fn chain(&self, name: &str, base: Option<(NfChainType, NfHook, i32)>) -> NfObject<'static> {
        let mut c = Chain {
            family: NfFamily::IP,
            table: Cow::Owned(self.table.clone()),
            name: Cow::Owned(name.to_string()),
            ..Default::default()
        };
        if let Some((ty, hook, prio)) = base {
            c._type = Some(ty);
            c.hook = Some(hook);
            c.prio = Some(prio);
            c.policy = Some(NfChainPolicy::Accept);
        }
        NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c)))
    }

    fn rule(&self, chain: &str, expr: Vec<Statement<'static>>) -> NfObject<'static> {
        NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: Cow::Owned(self.table.clone()),
            chain: Cow::Owned(chain.to_string()),
            expr: Cow::Owned(expr),
            ..Default::default()
        })))
    }

    /// The whole transaction for `state`: recreate the table with every chain and rule.
    pub fn render(&self, state: &FirewallState) -> Batch<'static> {
        let mut o = vec![
            NfObject::CmdObject(NfCmd::Add(self.table_obj())),
            NfObject::CmdObject(NfCmd::Delete(self.table_obj())),
            NfObject::CmdObject(NfCmd::Add(self.table_obj())),
            self.chain(FORWARD, Some((NfChainType::Filter, NfHook::Forward, 0))),
            self.chain(INPUT, Some((NfChainType::Filter, NfHook::Input, 0))),
            self.chain(
                PREROUTING,
                Some((NfChainType::NAT, NfHook::Prerouting, -100)),
            ),
            self.chain(OUTPUT, Some((NfChainType::NAT, NfHook::Output, -100))),
            self.chain(
                POSTROUTING,
                Some((NfChainType::NAT, NfHook::Postrouting, 100)),
            ),
            self.chain(PORTS, None),
        ];
        let jump = || {
            Statement::Jump(JumpTarget {
                target: PORTS.into(),
            })
        };
        o.push(self.rule(PREROUTING, vec![local_daddr(), jump()]));
        o.push(self.rule(OUTPUT, vec![local_daddr(), jump()]));

        for n in &state.networks {
            let b = n.bridge.as_str();
            o.push(self.rule(
                FORWARD,
                vec![
                    oif(b),
                    m(
                        Expression::Named(NamedExpression::CT(CT {
                            key: "state".into(),
                            family: None,
                            dir: None,
                        })),
                        Operator::IN,
                        Expression::List(vec![s("established"), s("related")]),
                    ),
                    accept(),
                ],
            ));
            for p in state.ports.iter().filter(|p| p.bridge == b) {
                let pp = &p.port;
                o.push(self.rule(
                    FORWARD,
                    vec![
                        m(meta(MetaKey::Iifname), Operator::NEQ, s(b)),
                        oif(b),
                        eq(payload("ip", "daddr"), s(pp.container_ip.to_string())),
                        proto_port(pp.protocol, "dport", pp.container_port),
                        accept(),
                    ],
                ));
            }
            if !n.icc {
                for l in state.links.iter().filter(|l| l.bridge == b) {
                    let mut e = vec![
                        iif(b),
                        oif(b),
                        eq(payload("ip", "saddr"), s(l.src.to_string())),
                        eq(payload("ip", "daddr"), s(l.dst.to_string())),
                    ];
                    if let Some((port, proto)) = l.port {
                        e.push(proto_port(proto, "dport", port));
                    }
                    e.push(accept());
                    o.push(self.rule(FORWARD, e));
                }
            }
            o.push(self.rule(
                FORWARD,
                vec![
                    iif(b),
                    oif(b),
                    if n.icc {
                        accept()
                    } else {
                        Statement::Drop(None)
                    },
                ],
            ));
            o.push(self.rule(FORWARD, vec![iif(b), accept()]));
            o.push(self.rule(FORWARD, vec![oif(b), Statement::Drop(None)]));

            // CVE-2020-8558: with route_localnet on the bridge, a container could reach host
            // services on 127.0.0.0/8; only the replies of DNATed (published) traffic may pass.
            let to_loopback = || eq(payload("ip", "daddr"), prefix(loopback_net()));
            o.push(self.rule(
                INPUT,
                vec![
                    iif(b),
                    to_loopback(),
                    m(
                        Expression::Named(NamedExpression::CT(CT {
                            key: "status".into(),
                            family: None,
                            dir: None,
                        })),
                        Operator::IN,
                        s("dnat"),
                    ),
                    accept(),
                ],
            ));
            o.push(self.rule(INPUT, vec![iif(b), to_loopback(), Statement::Drop(None)]));
            // The DNS server on the gateway.
            if let Some(gw) = n.dns {
                for proto in [Protocol::Udp, Protocol::Tcp] {
                    o.push(self.rule(
                        INPUT,
                        vec![
                            iif(b),
                            eq(payload("ip", "daddr"), s(gw.to_string())),
                            proto_port(proto, "dport", 53),
                            accept(),
                        ],
                    ));
                }
            }

            o.push(self.rule(
                POSTROUTING,
                vec![
                    eq(payload("ip", "saddr"), prefix(n.subnet.trunc())),
                    m(meta(MetaKey::Oifname), Operator::NEQ, s(b)),
                    Statement::Masquerade(None),
                ],
            ));
            o.push(self.rule(
                POSTROUTING,
                vec![
                    eq(payload("ip", "saddr"), prefix(loopback_net())),
                    oif(b),
                    Statement::Masquerade(None),
                ],
            ));
        }
        for p in &state.ports {
            let pp = &p.port;
            let mut e = Vec::new();
            if let Some(ip) = pp.host_ip {
                e.push(eq(payload("ip", "daddr"), s(ip.to_string())));
            }
            e.push(proto_port(pp.protocol, "dport", pp.host_port));
            e.push(Statement::DNAT(Some(NAT {
                addr: Some(s(pp.container_ip.to_string())),
                family: None,
                port: Some(Expression::Number(u32::from(pp.container_port))),
                flags: None,
            })));
            o.push(self.rule(PORTS, e));
        }
        Batch {
            objects: Cow::Owned(o),
        }
    }

    fn json(batch: &Batch) -> Result<String, Error> {
        serde_json::to_string(batch).map_err(|e| Error::Encode(e.to_string()))
    }
}

impl FirewallDriver for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn apply(&self, state: &FirewallState) -> Result<(), Error> {
        let json = Self::json(&self.render(state))?;
        run("nft", &["-j", "-f", "-"], Some(&json))?;
        let bridges: Vec<String> = state.networks.iter().map(|n| n.bridge.clone()).collect();
        // Not fatal: where iptables does not drop forwarded traffic nothing is lost, and where
        // it does, `forward_problems` reports it.
        if let Err(e) = super::host::sync_accepts(&self.table, &bridges) {
            tracing::warn!(error = %e, "firewall: iptables accept rules for the agent's bridges");
        }
        Ok(())
    }

    fn remove_all(&self) -> Result<(), Error> {
        let batch = Batch {
            objects: Cow::Owned(vec![
                NfObject::CmdObject(NfCmd::Add(self.table_obj())),
                NfObject::CmdObject(NfCmd::Delete(self.table_obj())),
            ]),
        };
        run("nft", &["-j", "-f", "-"], Some(&Self::json(&batch)?))?;
        super::host::sync_accepts(&self.table, &[])
    }

    fn list(&self) -> Result<String, Error> {
        let tables = run("nft", &["list", "tables", "ip"], None)?;
        let wanted = format!("table ip {}", self.table);
        let accepts = super::host::list_accepts(&self.table);
        if !tables.lines().any(|l| l.trim() == wanted) {
            return Ok(accepts);
        }
        Ok(run("nft", &["list", "table", "ip", &self.table], None)? + &accepts)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::firewall::tests::sample;

    fn rules(json: &serde_json::Value, chain: &str) -> Vec<String> {
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("add").and_then(|a| a.get("rule")))
            .filter(|r| r["chain"] == chain)
            .map(|r| r["expr"].to_string())
            .collect()
    }

    #[test]
    fn renders_one_replacing_transaction() {
        let fw = Nftables::new("agent_t1");
        let v = serde_json::to_value(fw.render(&sample())).unwrap();
        let objs = v["nftables"].as_array().unwrap();
        assert_eq!(objs[0]["add"]["table"]["name"], "agent_t1");
        assert_eq!(objs[1]["delete"]["table"]["name"], "agent_t1");
        assert_eq!(objs[2]["add"]["table"]["family"], "ip");

        let ports = rules(&v, PORTS);
        assert_eq!(ports.len(), 2);
        assert!(
            ports[0].contains(r#""protocol":"tcp"}},"op":"==","right":8080"#),
            "{}",
            ports[0]
        );
        assert!(
            ports[0].contains(r#""dnat":{"addr":"10.99.1.2","port":80}"#),
            "{}",
            ports[0]
        );
        assert!(ports[1].contains(r#""right":"127.0.0.1""#) && ports[1].contains("udp"));

        let fwd = rules(&v, FORWARD);
        // bra: established, port, icc accept, outbound, drop; brb: established, port, 2 links,
        // icc drop, outbound, drop.
        assert_eq!(fwd.len(), 5 + 7, "{fwd:#?}");
        assert!(fwd[2].contains(r#"{"accept":null}"#) && fwd[2].contains("bra"));
        assert!(fwd[9].contains(r#"{"drop":null}"#) && fwd[9].contains("brb"));
        assert!(fwd[7].contains("10.99.2.3") && fwd[7].contains("53"));
        assert!(fwd[8].contains("10.99.2.4") && !fwd[8].contains("dport"));

        let post = rules(&v, POSTROUTING);
        assert_eq!(post.len(), 4);
        assert!(post[0].contains(r#""addr":"10.99.1.0","len":24"#));
        assert!(post[1].contains(r#""addr":"127.0.0.0","len":8"#));
        assert_eq!(rules(&v, PREROUTING).len(), 1);
        let input = rules(&v, INPUT);
        // bra: loopback accept and drop, DNS udp and tcp; brb (no DNS): loopback accept and drop.
        assert_eq!(input.len(), 6, "{input:#?}");
        assert!(
            input[2].contains("10.99.1.1") && input[2].contains("udp") && input[2].contains("53")
        );
        assert!(input[3].contains("10.99.1.1") && input[3].contains("tcp"));
        assert!(input[3].contains(r#"{"accept":null}"#) && input[3].contains("bra"));
        assert!(input[0].contains(r#""addr":"127.0.0.0","len":8"#) && input[0].contains("bra"));
        assert!(input[0].contains(r#""ct":{"key":"status"}"#) && input[0].contains("dnat"));
        assert!(input[1].contains(r#"{"drop":null}"#) && !input[1].contains("dnat"));
        assert!(rules(&v, OUTPUT)[0].contains(r#""fib":{"flags":["daddr"],"result":"type"}"#));
    }

    #[test]
    fn empty_state_still_has_the_hooks() {
        let v = serde_json::to_value(Nftables::new("t").render(&FirewallState::default())).unwrap();
        assert!(rules(&v, FORWARD).is_empty());
        assert!(rules(&v, INPUT).is_empty());
        assert_eq!(rules(&v, PREROUTING).len(), 1);
    }

    /// `nft --check` accepts the rendered JSON (needs root and nft; skipped otherwise).
    #[test]
    fn nft_accepts_the_rendering() {
        if !nix::unistd::Uid::effective().is_root() || run("nft", &["--version"], None).is_err() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let json = Nftables::json(&Nftables::new("agent_check").render(&sample())).unwrap();
        run("nft", &["--check", "-j", "-f", "-"], Some(&json)).unwrap();
    }
}
