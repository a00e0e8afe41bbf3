//! Preconditions of replacing a running container, checked before it is stopped.
//!
//! A recreate tears the running container down before the new one is created; a create that
//! then fails (a published host port another process holds) leaves nothing running. So before
//! a pass submits the works that replace a running container, the loop checks what can be
//! checked without changing anything, and holds all of that container's works when a check
//! fails: the old container keeps running, the failure is reported with the reason and the
//! object waits out its backoff ([`super::failing`]) like any failed change.
//!
//! Checked today:
//! - every fixed host port the new config publishes (bridge mode), TCP and UDP: not published
//!   by another container of the agent, and bindable on its host address (the network driver's
//!   own probe, [`crate::driver::network::ports::probe_bind`]). Ports the container being
//!   replaced declares itself are skipped (its own process or its rules may hold them);
//! - every ulimit of the new config: a hard limit the agent can set ([`AgentLimits`]: not above
//!   its own hard limit when it lacks CAP_SYS_RESOURCE, a `nofile` not above `fs.nr_open`).
//!   `agent validate` only warns about these (its limits are not the agent's; see
//!   [`crate::manifest::validate::warn`]), and the exec driver would refuse the new container
//!   only after the old one had stopped;
//! - `oomScoreAdj`: not below the agent's own when it lacks CAP_SYS_RESOURCE (the kernel's
//!   rule; the exec driver refused it at create, after the teardown). `agent validate` cannot
//!   know the agent's value and says nothing;
//! - every host device node of `devices` is there now and is a device node (the exec driver's
//!   own lookup, [`crate::driver::exec::devices::node`]): an edit naming a device that is
//!   unplugged keeps the running container until it comes (`agent validate` warns). CDI
//!   devices are resolved at create only.
//!
//! An image is fetched by earlier works of the same plan, before any teardown, so a missing
//! image never reaches this point; volumes are directories the agent creates.

use std::net::{IpAddr, Ipv4Addr};

use crate::driver::exec::spec::build::{AgentLimits, oom_floor_text, rlimit_text};
use crate::driver::network::Protocol as NetProtocol;
use crate::manifest::{NetworkMode, Protocol};
use crate::plan::EffectiveContainer;
use crate::plan::effective::Port;
use crate::store::PortBinding;

/// How a host port is probed: the network driver's bind test in the daemon, a fake in tests.
pub type Probe<'a> = &'a dyn Fn(Option<Ipv4Addr>, u16, NetProtocol) -> std::io::Result<()>;

/// How a host device node is looked up: the exec driver's in the daemon, a fake in tests.
/// `Err` says what is wrong with it.
pub type DeviceProbe<'a> = &'a dyn Fn(&std::path::Path) -> Result<(), String>;

fn overlaps(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    let any = |ip: Option<IpAddr>| ip.is_none_or(|i| i.is_unspecified());
    any(a) || any(b) || a == b
}

fn same_proto(p: Protocol, s: crate::store::Protocol) -> bool {
    matches!(
        (p, s),
        (Protocol::Tcp, crate::store::Protocol::Tcp)
            | (Protocol::Udp, crate::store::Protocol::Udp)
            | (Protocol::Sctp, crate::store::Protocol::Sctp)
    )
}

fn shown(p: &Port, port: u16) -> String {
    let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    format!("{ip}:{port}/{}", p.protocol)
}

/// Checks that `new` can replace `old` (the running container of the same name): `bindings`
/// are the host ports the agent's containers publish now, `limits` the agent's rlimit bounds.
/// `Err` says what is wrong.
pub fn replacement(
    new: &EffectiveContainer,
    old: Option<&EffectiveContainer>,
    bindings: &[PortBinding],
    probe: Probe<'_>,
    limits: &AgentLimits,
    device: DeviceProbe<'_>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for d in &new.fixed.devices.devices {
        if let Ok(crate::manifest::device::Device::Node { source, .. }) = d.parse()
            && let Err(e) = device(&source)
        {
            problems.push(format!("devices: {e}"));
        }
    }
    for (name, u) in &new.fixed.ulimits {
        let hard = u.hard.unwrap_or(u64::MAX);
        if let Some(ceiling) = limits.ceiling(name, hard) {
            problems.push(format!(
                "ulimit {name}: hard limit {} is above {ceiling}; use at most {}",
                rlimit_text(hard),
                ceiling.limit()
            ));
        }
    }
    if let Some(adj) = new.fixed.oom_score_adj
        && let Some(floor) = limits.oom_floor(adj)
    {
        problems.push(format!("oomScoreAdj {}", oom_floor_text(adj, floor)));
    }
    if new.fixed.network_mode == NetworkMode::Bridge {
        ports(new, old, bindings, probe, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "container {}: not replaced, the running one is kept: {}",
            new.name,
            problems.join("; ")
        ))
    }
}

/// The published ports of a bridge-mode `new` (see the module docs).
fn ports(
    new: &EffectiveContainer,
    old: Option<&EffectiveContainer>,
    bindings: &[PortBinding],
    probe: Probe<'_>,
    problems: &mut Vec<String>,
) {
    for p in &new.fixed.ports {
        let Some(port) = p.host_port else {
            continue;
        };
        let own = old.is_some_and(|o| {
            o.fixed.ports.iter().any(|q| {
                q.host_port == Some(port)
                    && q.protocol == p.protocol
                    && overlaps(q.host_ip, p.host_ip)
            })
        });
        if own {
            continue;
        }
        if let Some(b) = bindings.iter().find(|b| {
            b.container != new.name
                && b.host_port == port
                && same_proto(p.protocol, b.proto)
                && overlaps(Some(b.host_ip), p.host_ip)
        }) {
            problems.push(format!(
                "host port {} is published by container {}",
                shown(p, port),
                b.container
            ));
            continue;
        }
        let proto = match p.protocol {
            Protocol::Tcp => NetProtocol::Tcp,
            Protocol::Udp => NetProtocol::Udp,
            Protocol::Sctp => continue,
        };
        let ip = match p.host_ip {
            None => None,
            Some(IpAddr::V4(v4)) if v4.is_unspecified() => None,
            Some(IpAddr::V4(v4)) => Some(v4),
            Some(IpAddr::V6(_)) => continue,
        };
        if let Err(e) = probe(ip, port, proto) {
            problems.push(format!(
                "host port {} is in use by another process: {e}",
                shown(p, port)
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn container(spec: &str) -> EffectiveContainer {
        let yaml = format!(
            "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: 127.0.0.1:5000/busybox\n{spec}"
        );
        let loaded =
            crate::manifest::Loaded::from_sources(vec![("/m/web.yaml".into(), yaml.into_bytes())]);
        let objects = match &loaded.files[0].outcome {
            Ok(o) => o.iter().map(|o| o.manifest.clone()).collect(),
            Err(e) => panic!("{e:?}"),
        };
        let d = crate::plan::Desired::build(
            vec![crate::plan::FileInput {
                path: "/m/web.yaml".into(),
                state: crate::plan::FileState::Loaded(objects),
            }],
            &crate::plan::Actual::default().resolutions(),
        );
        d.containers["web"].value.config.clone()
    }

    /// Every device node is there.
    fn present(_: &std::path::Path) -> Result<(), String> {
        Ok(())
    }

    /// Limits that bound nothing.
    fn free() -> AgentLimits {
        AgentLimits {
            can_raise: true,
            ..AgentLimits::default()
        }
    }

    fn binding(container: &str, port: u16) -> PortBinding {
        PortBinding {
            container: container.into(),
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host_port: port,
            proto: crate::store::Protocol::Tcp,
            container_port: 80,
        }
    }

    #[test]
    fn a_port_another_process_holds_is_refused_by_name() {
        let new = container("  ports: [\"127.0.0.1:8080:80/tcp\", \"9090:90/udp\"]\n");
        let held = |_: Option<Ipv4Addr>, port: u16, proto: NetProtocol| {
            if port == 9090 && proto == NetProtocol::Udp {
                Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            } else {
                Ok(())
            }
        };
        let e = replacement(&new, None, &[], &held, &free(), &present).unwrap_err();
        assert!(e.contains("0.0.0.0:9090/udp is in use"), "{e}");
        assert!(!e.contains("8080"), "{e}");
        assert!(e.contains("the running one is kept"), "{e}");
        assert!(replacement(&new, None, &[], &|_, _, _| Ok(()), &free(), &present).is_ok());
    }

    #[test]
    fn ports_the_old_container_declares_are_not_probed() {
        let old = container("  ports: [\"8080:80/tcp\"]\n");
        let new = container("  ports: [\"8080:80/tcp\"]\n  env: {A: b}\n");
        let busy = |_: Option<Ipv4Addr>, _: u16, _: NetProtocol| {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        };
        assert!(
            replacement(
                &new,
                Some(&old),
                &[binding("web", 8080)],
                &busy,
                &free(),
                &present
            )
            .is_ok()
        );
        assert!(replacement(&new, None, &[], &busy, &free(), &present).is_err());
    }

    #[test]
    fn a_port_another_container_publishes_is_refused() {
        let new = container("  ports: [\"127.0.0.1:8080:80/tcp\"]\n");
        let e = replacement(
            &new,
            None,
            &[binding("db", 8080)],
            &|_, _, _| Ok(()),
            &free(),
            &present,
        )
        .unwrap_err();
        assert!(e.contains("published by container db"), "{e}");
        // Random host ports and other modes are not checked.
        let new = container("  ports: [\"80/tcp\"]\n");
        assert!(
            replacement(
                &new,
                None,
                &[binding("db", 8080)],
                &|_, _, _| Ok(()),
                &free(),
                &present,
            )
            .is_ok()
        );
    }

    /// A ulimit the agent cannot set is refused before the running container is stopped (the
    /// exec driver refused it only at create, after the teardown), in every network mode.
    #[test]
    fn a_ulimit_above_the_agents_bound_is_refused_by_name() {
        let limits = AgentLimits {
            hard: [("nofile".to_string(), 20000), ("nproc".to_string(), 500)].into(),
            can_raise: false,
            nr_open: Some(1_048_576),
            oom_score_adj: 0,
        };
        let ok = container("  ulimits: {nofile: {soft: 1024, hard: 20000}, core: unlimited}\n");
        assert!(replacement(&ok, None, &[], &|_, _, _| Ok(()), &limits, &present).is_ok());
        let new =
            container("  networkMode: none\n  ulimits: {nofile: {soft: 1024, hard: 40000}}\n");
        let e = replacement(&new, None, &[], &|_, _, _| Ok(()), &limits, &present).unwrap_err();
        assert!(
            e.contains("ulimit nofile: hard limit 40000 is above the agent's own hard limit 20000")
                && e.contains("CAP_SYS_RESOURCE")
                && e.contains("use at most 20000")
                && e.contains("the running one is kept"),
            "{e}"
        );
        let mut raise = limits.clone();
        raise.can_raise = true;
        assert!(replacement(&new, None, &[], &|_, _, _| Ok(()), &raise, &present).is_ok());
        let new = container("  ulimits: {nofile: {soft: 1024, hard: 2000000}}\n");
        let e = replacement(&new, None, &[], &|_, _, _| Ok(()), &raise, &present).unwrap_err();
        assert!(e.contains("above the kernel's fs.nr_open 1048576"), "{e}");
    }

    /// An `oomScoreAdj` below the agent's own is refused before the running container is
    /// stopped when the agent lacks CAP_SYS_RESOURCE.
    #[test]
    fn an_oom_score_adj_below_the_agents_is_refused_without_the_capability() {
        let mut limits = AgentLimits {
            oom_score_adj: -100,
            ..AgentLimits::default()
        };
        let any = |_: Option<Ipv4Addr>, _: u16, _: NetProtocol| Ok(());
        let ok = container("  networkMode: none\n  oomScoreAdj: -100\n");
        assert!(replacement(&ok, None, &[], &any, &limits, &present).is_ok());
        let low = container("  networkMode: none\n  oomScoreAdj: -500\n");
        let e = replacement(&low, None, &[], &any, &limits, &present).unwrap_err();
        assert!(
            e.contains("oomScoreAdj -500 is below the agent's own oom_score_adj (-100)")
                && e.contains("the running one is kept"),
            "{e}"
        );
        limits.can_raise = true;
        assert!(replacement(&low, None, &[], &any, &limits, &present).is_ok());
    }

    /// A device node that is not there now keeps the running container.
    #[test]
    fn a_missing_device_is_refused_by_name() {
        let any = |_: Option<Ipv4Addr>, _: u16, _: NetProtocol| Ok(());
        let new =
            container("  networkMode: none\n  devices: [/dev/ttyUSB0, \"/dev/null:/dev/x\"]\n");
        let gone = |p: &std::path::Path| {
            if p == std::path::Path::new("/dev/ttyUSB0") {
                Err("device /dev/ttyUSB0 does not exist on this host".to_string())
            } else {
                Ok(())
            }
        };
        let e = replacement(&new, None, &[], &any, &free(), &gone).unwrap_err();
        assert!(
            e.contains("devices: device /dev/ttyUSB0 does not exist on this host")
                && !e.contains("/dev/null")
                && e.contains("the running one is kept"),
            "{e}"
        );
        assert!(replacement(&new, None, &[], &any, &free(), &present).is_ok());
    }
}
