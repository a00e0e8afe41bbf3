//! iptables backend, for hosts without a working `nft`: the agent's own chains, as Docker has
//! `DOCKER`, `DOCKER-FORWARD` and friends.
//!
//! - filter `<P>-FORWARD`, jumped to from `FORWARD`;
//! - filter `<P>-INPUT`, jumped to from `INPUT`: drops traffic from the agent's bridges to
//!   127.0.0.0/8 that is not the reply of a published port (Kubernetes' `KUBE-FIREWALL`);
//! - nat `<P>-PORTS` (DNAT of published ports), jumped to from `PREROUTING` and `OUTPUT` for
//!   packets to a local address (`-m addrtype --dst-type LOCAL`);
//! - nat `<P>-POSTROUTING` (masquerade), jumped to from `POSTROUTING`.
//!
//! Apply writes both tables with one `iptables-restore --noflush` (a declared chain is flushed and
//! refilled; each table's `COMMIT` is atomic, the two tables are committed one after the other),
//! then adds each jump from a built-in chain once (`-C` before `-I`). Remove deletes the jumps and
//! then the chains.

use super::{Error, FirewallDriver, FirewallState, loopback_net, run};

/// The iptables backend for one chain prefix (`AGENT` gives `AGENT-FORWARD`, ...).
#[derive(Debug, Clone)]
pub struct Iptables {
    prefix: String,
}

impl Iptables {
    /// The backend for chains `<prefix>-FORWARD`, `<prefix>-PORTS`, `<prefix>-POSTROUTING`.
    pub fn new(prefix: &str) -> Self {
        Iptables {
            prefix: prefix.to_string(),
        }
    }

    fn forward(&self) -> String {
        format!("{}-FORWARD", self.prefix)
    }
    fn input(&self) -> String {
        format!("{}-INPUT", self.prefix)
    }
    fn ports(&self) -> String {
        format!("{}-PORTS", self.prefix)
    }
    fn postrouting(&self) -> String {
        format!("{}-POSTROUTING", self.prefix)
    }

    /// The jumps from built-in chains: (table, built-in chain, match args, target chain).
    fn hooks(&self) -> Vec<(&'static str, &'static str, Vec<String>)> {
        let local = |chain: String| {
            vec![
                "-m".into(),
                "addrtype".into(),
                "--dst-type".into(),
                "LOCAL".into(),
                "-j".into(),
                chain,
            ]
        };
        vec![
            ("filter", "FORWARD", vec!["-j".into(), self.forward()]),
            ("filter", "INPUT", vec!["-j".into(), self.input()]),
            ("nat", "PREROUTING", local(self.ports())),
            ("nat", "OUTPUT", local(self.ports())),
            ("nat", "POSTROUTING", vec!["-j".into(), self.postrouting()]),
        ]
    }

    /// The `iptables-restore --noflush` input for `state`.
    pub fn render(&self, state: &FirewallState) -> String {
        let (fwd, ports, post) = (self.forward(), self.ports(), self.postrouting());
        let inp = self.input();
        let mut f = format!("*filter\n:{fwd} - [0:0]\n:{inp} - [0:0]\n");
        let mut n = format!("*nat\n:{ports} - [0:0]\n:{post} - [0:0]\n");
        for net in &state.networks {
            let b = &net.bridge;
            f.push_str(&format!(
                "-A {fwd} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
            ));
            for p in state.ports.iter().filter(|p| &p.bridge == b) {
                let pp = &p.port;
                f.push_str(&format!(
                    "-A {fwd} -d {}/32 ! -i {b} -o {b} -p {proto} -m {proto} --dport {} -j ACCEPT\n",
                    pp.container_ip,
                    pp.container_port,
                    proto = pp.protocol
                ));
            }
            if !net.icc {
                for l in state.links.iter().filter(|l| &l.bridge == b) {
                    let port = l.port.map_or_else(String::new, |(port, proto)| {
                        format!(" -p {proto} -m {proto} --dport {port}")
                    });
                    f.push_str(&format!(
                        "-A {fwd} -s {}/32 -d {}/32 -i {b} -o {b}{port} -j ACCEPT\n",
                        l.src, l.dst
                    ));
                }
            }
            let icc = if net.icc { "ACCEPT" } else { "DROP" };
            f.push_str(&format!("-A {fwd} -i {b} -o {b} -j {icc}\n"));
            f.push_str(&format!("-A {fwd} -i {b} -j ACCEPT\n"));
            f.push_str(&format!("-A {fwd} -o {b} -j DROP\n"));
            // CVE-2020-8558: no container reaches host services on 127.0.0.0/8; replies of
            // DNATed (published) traffic pass.
            f.push_str(&format!(
                "-A {inp} -d {} -i {b} -m conntrack ! --ctstate DNAT -j DROP\n",
                loopback_net()
            ));
            // The DNS server on the gateway: accepted before any drop of the host's INPUT
            // chain, since the jump to this chain comes first.
            if let Some(gw) = net.dns {
                for proto in ["udp", "tcp"] {
                    f.push_str(&format!(
                        "-A {inp} -d {gw}/32 -i {b} -p {proto} -m {proto} --dport 53 -j ACCEPT\n"
                    ));
                }
            }
            n.push_str(&format!(
                "-A {post} -s {} ! -o {b} -j MASQUERADE\n",
                net.subnet.trunc()
            ));
            n.push_str(&format!(
                "-A {post} -s {} -o {b} -j MASQUERADE\n",
                loopback_net()
            ));
        }
        for p in &state.ports {
            let pp = &p.port;
            let dst = pp
                .host_ip
                .map_or_else(String::new, |ip| format!(" -d {ip}/32"));
            n.push_str(&format!(
                "-A {ports}{dst} -p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}\n",
                pp.host_port,
                pp.container_ip,
                pp.container_port,
                proto = pp.protocol
            ));
        }
        f.push_str("COMMIT\n");
        n.push_str("COMMIT\n");
        f + &n
    }

    fn has_hook(table: &str, chain: &str, spec: &[String]) -> bool {
        let mut args = vec!["-w", "-t", table, "-C", chain];
        args.extend(spec.iter().map(String::as_str));
        run("iptables", &args, None).is_ok()
    }

    /// The names of this instance's chains.
    fn chains(&self) -> [(&'static str, String); 4] {
        [
            ("filter", self.forward()),
            ("filter", self.input()),
            ("nat", self.ports()),
            ("nat", self.postrouting()),
        ]
    }
}

impl FirewallDriver for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn apply(&self, state: &FirewallState) -> Result<(), Error> {
        run(
            "iptables-restore",
            &["-w", "--noflush"],
            Some(&self.render(state)),
        )?;
        for (table, chain, spec) in self.hooks() {
            if !Self::has_hook(table, chain, &spec) {
                let mut args = vec!["-w", "-t", table, "-I", chain, "1"];
                args.extend(spec.iter().map(String::as_str));
                run("iptables", &args, None)?;
            }
        }
        Ok(())
    }

    fn remove_all(&self) -> Result<(), Error> {
        let mut errors = Vec::new();
        for (table, chain, spec) in self.hooks() {
            // Delete every copy (a crash between -C and -I elsewhere could have left two).
            for _ in 0..16 {
                if !Self::has_hook(table, chain, &spec) {
                    break;
                }
                let mut args = vec!["-w", "-t", table, "-D", chain];
                args.extend(spec.iter().map(String::as_str));
                if let Err(e) = run("iptables", &args, None) {
                    errors.push(e.to_string());
                    break;
                }
            }
        }
        for (table, chain) in self.chains() {
            let exists = run("iptables", &["-w", "-t", table, "-n", "-L", &chain], None).is_ok();
            if !exists {
                continue;
            }
            for op in ["-F", "-X"] {
                if let Err(e) = run("iptables", &["-w", "-t", table, op, &chain], None) {
                    errors.push(e.to_string());
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Command {
                command: format!("removing iptables chains {}-*", self.prefix),
                status: format!("{} failure(s)", errors.len()),
                stderr: errors.join("; "),
            })
        }
    }

    fn list(&self) -> Result<String, Error> {
        let names: Vec<String> = self.chains().into_iter().map(|(_, c)| c).collect();
        let mut out = String::new();
        for table in ["filter", "nat"] {
            let saved = run("iptables-save", &["-t", table], None)?;
            for line in saved.lines() {
                let ours = line
                    .split_whitespace()
                    .any(|tok| names.iter().any(|n| tok == n || tok == format!(":{n}")));
                if ours {
                    // Chain lines carry packet counters; they are not part of the rules.
                    let line = match line.find(" [") {
                        Some(i) if line.starts_with(':') => &line[..i],
                        _ => line,
                    };
                    out.push_str(&format!("{table}: {line}\n"));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::firewall::tests::sample;

    #[test]
    fn renders_the_documented_rules() {
        let text = Iptables::new("AT1").render(&sample());
        let expected = "\
*filter
:AT1-FORWARD - [0:0]
:AT1-INPUT - [0:0]
-A AT1-FORWARD -o bra -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A AT1-FORWARD -d 10.99.1.2/32 ! -i bra -o bra -p tcp -m tcp --dport 80 -j ACCEPT
-A AT1-FORWARD -i bra -o bra -j ACCEPT
-A AT1-FORWARD -i bra -j ACCEPT
-A AT1-FORWARD -o bra -j DROP
-A AT1-INPUT -d 127.0.0.0/8 -i bra -m conntrack ! --ctstate DNAT -j DROP
-A AT1-INPUT -d 10.99.1.1/32 -i bra -p udp -m udp --dport 53 -j ACCEPT
-A AT1-INPUT -d 10.99.1.1/32 -i bra -p tcp -m tcp --dport 53 -j ACCEPT
-A AT1-FORWARD -o brb -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A AT1-FORWARD -d 10.99.2.2/32 ! -i brb -o brb -p udp -m udp --dport 53 -j ACCEPT
-A AT1-FORWARD -s 10.99.2.3/32 -d 10.99.2.2/32 -i brb -o brb -p udp -m udp --dport 53 -j ACCEPT
-A AT1-FORWARD -s 10.99.2.4/32 -d 10.99.2.2/32 -i brb -o brb -j ACCEPT
-A AT1-FORWARD -i brb -o brb -j DROP
-A AT1-FORWARD -i brb -j ACCEPT
-A AT1-FORWARD -o brb -j DROP
-A AT1-INPUT -d 127.0.0.0/8 -i brb -m conntrack ! --ctstate DNAT -j DROP
COMMIT
*nat
:AT1-PORTS - [0:0]
:AT1-POSTROUTING - [0:0]
-A AT1-POSTROUTING -s 10.99.1.0/24 ! -o bra -j MASQUERADE
-A AT1-POSTROUTING -s 127.0.0.0/8 -o bra -j MASQUERADE
-A AT1-POSTROUTING -s 10.99.2.0/24 ! -o brb -j MASQUERADE
-A AT1-POSTROUTING -s 127.0.0.0/8 -o brb -j MASQUERADE
-A AT1-PORTS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80
-A AT1-PORTS -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.99.2.2:53
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn hooks_jump_to_own_chains_only() {
        let hooks = Iptables::new("AGENT").hooks();
        assert_eq!(hooks.len(), 5);
        assert!(
            hooks
                .iter()
                .all(|(_, _, spec)| spec.last().unwrap().starts_with("AGENT-"))
        );
        assert!(hooks[2].2.contains(&"LOCAL".to_string()));
    }
}
