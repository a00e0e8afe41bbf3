//! Links: the container's `/etc/hosts` and Docker's legacy link variables.
//!
//! For a link to target `db` under alias `database` with exposed port 5432/tcp and address
//! 10.213.0.3, the source container gets the hosts line `10.213.0.3 database db` and (alias
//! upper-cased, `-` and `.` turned into `_`, as Docker does):
//!
//! ```text
//! DATABASE_NAME=/web/database
//! DATABASE_PORT=tcp://10.213.0.3:5432              (lowest exposed port)
//! DATABASE_PORT_5432_TCP=tcp://10.213.0.3:5432
//! DATABASE_PORT_5432_TCP_ADDR=10.213.0.3
//! DATABASE_PORT_5432_TCP_PORT=5432
//! DATABASE_PORT_5432_TCP_PROTO=tcp
//! DATABASE_ENV_<NAME>=<value>                      (target's env, without HOME and PATH)
//! ```
//!
//! When a target is recreated (new address), attaching the source again renders both anew.

use std::net::Ipv4Addr;

use super::types::LinkRequest;

/// The `/etc/hosts` content: loopback lines, the container's own names, one line per link.
pub fn render_hosts(own: &[(Ipv4Addr, &str)], links: &[LinkRequest]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (ip, name) in own {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    for l in links {
        let alias = l.alias();
        if alias == l.target_name {
            s.push_str(&format!("{}\t{}\n", l.target_ip, alias));
        } else {
            s.push_str(&format!("{}\t{} {}\n", l.target_ip, alias, l.target_name));
        }
    }
    s
}

fn env_prefix(alias: &str) -> String {
    alias
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Docker's link variables for every link of the container named `source_name`.
pub fn link_env(source_name: &str, links: &[LinkRequest]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for l in links {
        let p = env_prefix(l.alias());
        env.push((format!("{p}_NAME"), format!("/{source_name}/{}", l.alias())));
        let mut ports = l.target_ports.clone();
        ports.sort();
        ports.dedup();
        if let Some((port, proto)) = ports.first() {
            env.push((
                format!("{p}_PORT"),
                format!("{proto}://{}:{port}", l.target_ip),
            ));
        }
        for (port, proto) in &ports {
            let up = proto.as_str().to_ascii_uppercase();
            let base = format!("{p}_PORT_{port}_{up}");
            env.push((base.clone(), format!("{proto}://{}:{port}", l.target_ip)));
            env.push((format!("{base}_ADDR"), l.target_ip.to_string()));
            env.push((format!("{base}_PORT"), port.to_string()));
            env.push((format!("{base}_PROTO"), proto.to_string()));
        }
        for (k, v) in &l.target_env {
            if k == "HOME" || k == "PATH" {
                continue;
            }
            env.push((format!("{p}_ENV_{k}"), v.clone()));
        }
    }
    env
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::types::Protocol;

    fn db() -> LinkRequest {
        LinkRequest {
            target_name: "db".into(),
            alias: Some("my-db.x".into()),
            target_ip: Ipv4Addr::new(10, 213, 0, 3),
            target_ports: vec![(5432, Protocol::Tcp), (53, Protocol::Udp)],
            target_env: vec![
                ("PATH".into(), "/bin".into()),
                ("PGUSER".into(), "app".into()),
                ("HOME".into(), "/root".into()),
            ],
        }
    }

    #[test]
    fn hosts_has_own_name_and_links() {
        let h = render_hosts(&[(Ipv4Addr::new(10, 213, 0, 2), "web")], &[db()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.213.0.2\tweb\n"));
        assert!(h.ends_with("10.213.0.3\tmy-db.x db\n"), "{h}");
        let mut plain = db();
        plain.alias = None;
        assert!(render_hosts(&[], &[plain]).ends_with("10.213.0.3\tdb\n"));
    }

    #[test]
    fn env_matches_docker_names() {
        let env = link_env("web", &[db()]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_DB_X_NAME"), Some("/web/my-db.x"));
        assert_eq!(
            get("MY_DB_X_PORT"),
            Some("udp://10.213.0.3:53"),
            "lowest port"
        );
        assert_eq!(get("MY_DB_X_PORT_5432_TCP"), Some("tcp://10.213.0.3:5432"));
        assert_eq!(get("MY_DB_X_PORT_5432_TCP_ADDR"), Some("10.213.0.3"));
        assert_eq!(get("MY_DB_X_PORT_5432_TCP_PORT"), Some("5432"));
        assert_eq!(get("MY_DB_X_PORT_5432_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("MY_DB_X_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_DB_X_ENV_PGUSER"), Some("app"));
        assert_eq!(get("MY_DB_X_ENV_PATH"), None);
        assert_eq!(get("MY_DB_X_ENV_HOME"), None);
    }
}
