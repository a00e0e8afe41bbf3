//! Table tests: every normalisation, as pairs of specs that must give equal configs and hashes,
//! and pairs that must not.

use super::*;
use crate::plan::testkit::{container, loaded_inputs, volume};
use crate::plan::{Desired, Resolutions};

const FIXTURES: &str = "db.yaml";

/// The effective config of container `web` with `spec`, next to a `db` container, a `data`
/// volume and a `net` network; busybox resolved.
fn web(spec: &str) -> EffectiveContainer {
    web_with(spec, "")
}

fn web_with(spec: &str, labels: &str) -> EffectiveContainer {
    let mut doc = container("web", spec);
    if !labels.is_empty() {
        doc = doc.replace(
            "  name: web\n",
            &format!("  name: web\n  labels: {labels}\n"),
        );
    }
    let fixtures = format!(
        "{}---\n{}---\n{}---\n{}",
        container("db", ""),
        container("db2", ""),
        volume("data", "retain"),
        crate::plan::testkit::network("net", "10.9.0.0/24")
    ) + "---\n"
        + &crate::plan::testkit::network("net2", "10.9.1.0/24");
    let inputs = loaded_inputs(&[("web.yaml", &doc), (FIXTURES, &fixtures)]);
    let mut res = Resolutions::new();
    res.insert("127.0.0.1:5000/busybox:latest".into(), "sha256:aaaa".into());
    let d = Desired::build(inputs, &res);
    d.containers["web"].value.config.clone()
}

#[test]
fn equivalent_spellings_are_equal() {
    let table: &[(&str, &str, &str)] = &[
        ("restart no = absent", "restart: \"no\"", ""),
        (
            "restart short = long",
            "restart: on-failure:5",
            "restart: {policy: on-failure, maxRetries: 5}",
        ),
        (
            "memory 1024Mi = 1Gi",
            "resources: {memory: 1024Mi}",
            "resources: {memory: 1Gi}",
        ),
        (
            "memory 512m = 512Mi",
            "resources: {memory: 512m}",
            "resources: {memory: 536870912}",
        ),
        (
            "cpus 0.5 = 0.50",
            "resources: {cpus: 0.5}",
            "resources: {cpus: 0.50}",
        ),
        (
            "cpuShares 1024 = default",
            "resources: {cpuShares: 1024}",
            "",
        ),
        (
            "cpuset order and ranges",
            "resources: {cpuset: \"4,0,1,2\"}",
            "resources: {cpuset: \"0-2,4\"}",
        ),
        (
            "port short = long",
            "ports: [\"127.0.0.1:8080:80/tcp\"]",
            "ports: [{hostIp: 127.0.0.1, hostPort: \"8080\", containerPort: \"80\", protocol: tcp}]",
        ),
        (
            "port default protocol",
            "ports: [\"80\"]",
            "ports: [\"80/tcp\"]",
        ),
        (
            "port order",
            "ports: [\"80\", \"81\"]",
            "ports: [\"81\", \"80\"]",
        ),
        (
            "port repeats",
            "ports: [\"80\", \"80/tcp\"]",
            "ports: [\"80\"]",
        ),
        (
            "port ranges expanded",
            "ports: [\"8000-8001:80-81\"]",
            "ports: [\"8001:81\", \"8000:80\"]",
        ),
        (
            "env order",
            "env: {A: \"1\", B: \"2\"}",
            "env: {B: \"2\", A: \"1\"}",
        ),
        (
            "volume short = long",
            "volumes: [\"data:/data\"]",
            "volumes: [{volume: data, target: /data}]",
        ),
        (
            "bind short = long",
            "volumes: [\"/srv:/srv:ro\"]",
            "volumes: [{bind: /srv, target: /srv, readOnly: true}]",
        ),
        (
            "rw = default",
            "volumes: [\"data:/data:rw\"]",
            "volumes: [\"data:/data\"]",
        ),
        (
            "mount order",
            "volumes: [\"data:/data\", \"/srv:/srv\"]",
            "volumes: [\"/srv:/srv\", \"data:/data\"]",
        ),
        (
            "trailing slash and dot",
            "volumes: [\"/srv/./x/:/x/\"]",
            "volumes: [\"/srv/x:/x\"]",
        ),
        (
            "tmpfs size 16Mi = 16777216",
            "volumes: [{tmpfs: /run, size: 16Mi}]",
            "volumes: [{tmpfs: /run, size: 16777216}]",
        ),
        (
            "link alias default",
            "links: [db]",
            "links: [{container: db, alias: db}]",
        ),
        ("link order", "links: [db, db2]", "links: [db2, db]"),
        (
            "volumesFrom short = long",
            "volumesFrom: [db]",
            "volumesFrom: [{container: db}]",
        ),
        (
            "capability spelling",
            "capAdd: [net_admin, CAP_NET_ADMIN]",
            "capAdd: [NET_ADMIN]",
        ),
        (
            "capability order",
            "capDrop: [CHOWN, KILL]",
            "capDrop: [KILL, CHOWN]",
        ),
        ("stop signal spelling", "stopSignal: TERM", "stopSignal: 15"),
        (
            "stop signal SIG prefix",
            "stopSignal: sigterm",
            "stopSignal: SIGTERM",
        ),
        ("grace period default", "stopGracePeriod: 10s", ""),
        (
            "grace period spelling",
            "stopGracePeriod: 1m30s",
            "stopGracePeriod: 90s",
        ),
        ("hostname default", "hostname: web", ""),
        (
            "healthcheck defaults",
            "healthcheck: {command: [/bin/check]}",
            "healthcheck: {command: [/bin/check], interval: 30s, timeout: 30s, retries: 3, startPeriod: 0s}",
        ),
        ("dns repeats", "dns: [1.1.1.1, 1.1.1.1]", "dns: [1.1.1.1]"),
        (
            "dnsSearch repeats",
            "dnsSearch: [a.example, a.example]",
            "dnsSearch: [a.example]",
        ),
        (
            "networks order",
            "networks: [net2, net]",
            "networks: [net, net2]",
        ),
        (
            "extraHosts short = long, order",
            "extraHosts: [\"b.local:10.0.0.2\", {host: a.local, ip: 10.0.0.1}]",
            "extraHosts: [\"a.local:10.0.0.1\", \"b.local:10.0.0.2\"]",
        ),
        (
            "ulimit single = pair",
            "ulimits: {nofile: 1024}",
            "ulimits: {nofile: {soft: 1024, hard: 1024}}",
        ),
        (
            "ulimit unlimited spellings",
            "ulimits: {core: -1}",
            "ulimits: {core: unlimited}",
        ),
        (
            "workingDir trailing slash",
            "workingDir: /app/",
            "workingDir: /app",
        ),
        (
            "networks ignored outside bridge mode",
            "networkMode: host",
            "networkMode: host",
        ),
    ];
    let invalid: Vec<String> = table
        .iter()
        .flat_map(|(what, a, b)| [(what, a), (what, b)])
        .filter_map(|(what, spec)| {
            let doc = container("web", spec);
            let loaded = crate::manifest::Loaded::from_sources([(
                std::path::PathBuf::from("web.yaml"),
                doc.into_bytes(),
            )]);
            let bad: Vec<String> = loaded
                .diagnostics()
                .map(ToString::to_string)
                .filter(|d| !d.contains("is not defined"))
                .collect();
            (!bad.is_empty()).then(|| format!("{what}: {bad:?}"))
        })
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
    for (what, a, b) in table {
        let (x, y) = (web(a), web(b));
        assert_eq!(x, y, "{what}: configs differ");
        assert_eq!(x.hash(), y.hash(), "{what}: hashes differ");
        assert!(x.hash().is_some(), "{what}: no hash");
    }
}

#[test]
fn labels_order_does_not_matter() {
    let a = web_with("", "{a: \"1\", b: \"2\"}");
    let b = web_with("", "{b: \"2\", a: \"1\"}");
    assert_eq!(a.hash(), b.hash());
    assert_ne!(a.hash(), web("").hash());
}

#[test]
fn different_meanings_differ() {
    let table: &[(&str, &str, &str)] = &[
        ("env value", "env: {A: \"1\"}", "env: {A: \"2\"}"),
        (
            "dns order matters",
            "dns: [1.1.1.1, 8.8.8.8]",
            "dns: [8.8.8.8, 1.1.1.1]",
        ),
        (
            "missing host ip is not 0.0.0.0",
            "ports: [\"8080:80\"]",
            "ports: [\"0.0.0.0:8080:80\"]",
        ),
        ("protocol", "ports: [\"80/tcp\"]", "ports: [\"80/udp\"]"),
        (
            "read-only mount",
            "volumes: [\"data:/data:ro\"]",
            "volumes: [\"data:/data\"]",
        ),
        ("command", "command: [a]", "command: [b]"),
        ("command unset vs empty", "command: []", ""),
        ("stop signal", "stopSignal: TERM", "stopSignal: INT"),
        ("restart", "restart: always", "restart: unless-stopped"),
        (
            "memory",
            "resources: {memory: 256Mi}",
            "resources: {memory: 257Mi}",
        ),
        (
            "link alias",
            "links: [db]",
            "links: [{container: db, alias: database}]",
        ),
    ];
    for (what, a, b) in table {
        assert_ne!(web(a).hash(), web(b).hash(), "{what}: should differ");
    }
}

#[test]
fn image_digest_is_hashed_not_the_key() {
    let mut a = web("");
    let h = a.hash();
    a.image.key = "other:latest".into();
    assert_eq!(a.hash(), h, "the key is display only");
    a.image.digest = Some("sha256:bbbb".into());
    assert_ne!(a.hash(), h, "the digest decides");
    a.image.digest = None;
    assert_eq!(a.hash(), None, "no digest, no hash yet");
    let (b, hb) = a.with_digest("sha256:aaaa");
    assert_eq!(Some(hb), h);
    assert_eq!(b.hash(), h);
}

#[test]
fn volumes_from_mounts_are_folded_in() {
    let docs = format!(
        "{}---\n{}---\n{}",
        container(
            "src",
            "volumes: [\"data:/data\", \"/srv:/srv:ro\", {tmpfs: /run}]"
        ),
        container(
            "mid",
            "volumesFrom: [{container: src, readOnly: true}]\nvolumes: [\"/etc/x:/x\"]"
        ),
        volume("data", "retain")
    ) + "---\n"
        + &container("top", "volumesFrom: [mid]\nvolumes: [\"/other:/srv\"]");
    let inputs = loaded_inputs(&[("a.yaml", &docs)]);
    let d = Desired::build(inputs, &Resolutions::new());
    let show = |n: &str| -> Vec<String> {
        d.containers[n]
            .value
            .config
            .fixed
            .mounts
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(show("src"), ["data:/data", "tmpfs:/run", "/srv:/srv:ro"]);
    assert_eq!(show("mid"), ["data:/data:ro", "/srv:/srv:ro", "/etc/x:/x"]);
    // Its own mount wins on /srv; tmpfs is not inherited.
    assert_eq!(show("top"), ["data:/data:ro", "/other:/srv", "/etc/x:/x"]);
}

#[test]
fn image_keys() {
    let table: &[(&str, &str)] = &[
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("127.0.0.1:5000/web", "127.0.0.1:5000/web:latest"),
        ("127.0.0.1:5000/web:1.4", "127.0.0.1:5000/web:1.4"),
    ];
    for (r, key) in table {
        assert_eq!(ImageSource::registry(r).key(), *key, "{r}");
    }
    let oci = ImageSource::OciLayout {
        path: "/img/x.tar".into(),
        tag: Some("v1".into()),
    };
    assert_eq!(oci.key(), "oci-layout:/img/x.tar#v1");
    assert_eq!(
        ImageSource::RootfsTar {
            path: normalize_path(Path::new("/img/./r.tar"))
        }
        .key(),
        "rootfs-tar:/img/r.tar"
    );
}

#[test]
fn network_defaults() {
    let inputs = loaded_inputs(&[(
        "n.yaml",
        &crate::plan::testkit::network("backend-services", "10.9.0.0/24"),
    )]);
    let d = Desired::build(inputs, &Resolutions::new());
    let n = &d.networks["backend-services"].value;
    assert_eq!(n.gateway.to_string(), "10.9.0.1");
    assert_eq!(n.bridge, "agent-backend-s");
    assert_eq!(n.mtu, 1500);
    assert!(n.icc);
}

#[test]
fn stored_json_round_trips_to_the_same_hash() {
    let c = web(
        "ports: [\"127.0.0.1:8080:80/udp\"]\nvolumes: [\"data:/data:ro\", {tmpfs: /run, size: 1Mi}]\nlinks: [db]\n\
         restart: on-failure:3\nresources: {memory: 64Mi, memorySwap: -1, cpus: 1.5, cpuset: \"0-1\"}\n\
         healthcheck: {command: [/bin/true], interval: 5s}\nstopSignal: INT\nulimits: {nproc: {soft: 10, hard: unlimited}}\n\
         extraHosts: [\"a:10.0.0.1\"]\ndns: [1.1.1.1]\ncapAdd: [NET_ADMIN]\nsysctls: {net.ipv4.ip_forward: \"1\"}\nnetworks: [net]",
    );
    let json = crate::plan::store::container_config_value(&c);
    let back: EffectiveContainer = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, c);
    assert_eq!(back.hash(), c.hash());
}
