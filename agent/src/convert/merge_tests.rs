//! The merge rules, each on two small files, compared without positions.

use serde_json::{Value, json};

use super::super::tagged::{self, Tags, decode};
use super::*;

/// The value of a node without positions (mappings as JSON objects, keys in any order).
fn plain(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(b) => json!(b),
        NodeKind::Int(i) => json!(i),
        NodeKind::UInt(u) => json!(u),
        NodeKind::Float(f) => json!(f),
        NodeKind::Str(s) => json!(s),
        NodeKind::Seq(items) => Value::Array(items.iter().map(plain).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), plain(v)))
                .collect(),
        ),
    }
}

/// The merged tree of files `a` then `b`.
fn merged(a: &str, b: &str) -> Node {
    let mut tags = Tags::new();
    let a = tagged::parse(a, 0, &mut tags).expect("a");
    let b = tagged::parse(b, 1, &mut tags).expect("b");
    files(strip(a, &tags), b, &tags).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Service `web` of files `a` then `b`, both given as the service's body.
fn web(a: &str, b: &str) -> Value {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let n = merged(
        &format!("services:\n  web:\n{}", indent(a)),
        &format!("services:\n  web:\n{}", indent(b)),
    );
    plain(n.get("services").and_then(|s| s.get("web")).expect("web"))
}

#[test]
fn mappings_merge_recursively_scalars_are_replaced_lists_appended() {
    let got = web(
        "image: a:1\nrestart: always\ndeploy: {resources: {limits: {memory: 1g, cpus: 1}}}\ncap_add: [NET_ADMIN]\ngroup_add: [a]\n",
        "image: a:2\ndeploy: {resources: {limits: {memory: 2g}}}\ncap_add: [SYS_TIME, NET_ADMIN]\ngroup_add: [b]\nuser: x\n",
    );
    assert_eq!(
        got,
        json!({
            "image": "a:2", "restart": "always", "user": "x",
            "deploy": {"resources": {"limits": {"memory": "2g", "cpus": 1}}},
            "cap_add": ["NET_ADMIN", "SYS_TIME"],
            "group_add": ["a", "b"],
        })
    );
    // A null keeps the earlier value; a value replaces an earlier null.
    assert_eq!(web("image: a:1\n", "image:\n"), json!({"image": "a:1"}));
    assert_eq!(
        web(
            "ports:\nenvironment:\n",
            "ports: [\"80\"]\nenvironment: {A: !reset 1, B: 2}\n"
        ),
        json!({"ports": ["80"], "environment": {"B": 2}})
    );
}

#[test]
fn command_entrypoint_and_healthcheck_test_are_replaced() {
    let got = web(
        "command: [echo, a]\nentrypoint: [tini, --]\nhealthcheck: {test: [CMD, a], interval: 5s}\n",
        "command: [echo, b]\nentrypoint: /run.sh\nhealthcheck: {test: [CMD-SHELL, b]}\n",
    );
    assert_eq!(
        got,
        json!({
            "command": ["echo", "b"], "entrypoint": "/run.sh",
            "healthcheck": {"test": ["CMD-SHELL", "b"], "interval": "5s"},
        })
    );
}

#[test]
fn environment_labels_sysctls_merge_by_key_in_either_form() {
    let got = web(
        "environment: [A=1, B=2, PASS]\nlabels: {x: \"1\"}\nsysctls: [net.core.somaxconn=1024]\n",
        "environment: {B: 3, C: 4}\nlabels: [x=2, y=3]\nsysctls: {net.ipv4.tcp_syncookies: 0}\n",
    );
    assert_eq!(
        got,
        json!({
            "environment": {"A": "1", "B": 3, "PASS": null, "C": 4},
            "labels": {"x": "2", "y": "3"},
            "sysctls": {"net.core.somaxconn": "1024", "net.ipv4.tcp_syncookies": 0},
        })
    );
}

#[test]
fn extra_hosts_append_without_repeats_and_ulimits_merge_by_name() {
    let got = web(
        "extra_hosts: [\"db=10.0.0.1\", \"cache:10.0.0.2\"]\nulimits: {nproc: 100, nofile: {soft: 1, hard: 2}}\n",
        "extra_hosts: {db: 10.0.0.1, api: 10.0.0.3}\nulimits: {nofile: {soft: 5}}\n",
    );
    assert_eq!(
        got,
        json!({
            "extra_hosts": ["db=10.0.0.1", "cache:10.0.0.2", "api=10.0.0.3"],
            "ulimits": {"nproc": 100, "nofile": {"soft": 5}},
        })
    );
}

#[test]
fn ports_and_expose_append_without_duplicates() {
    let got = web(
        "ports: [\"8080:80\", \"443\"]\nexpose: [\"9000\"]\n",
        "ports: [{published: 8080, target: 80}, \"127.0.0.1:5432:5432\"]\nexpose: [\"9000\", \"9001\"]\n",
    );
    assert_eq!(
        got,
        json!({
            "ports": [{"published": 8080, "target": 80}, "443", "127.0.0.1:5432:5432"],
            "expose": ["9000", "9001"],
        })
    );
}

#[test]
fn volumes_by_target_secrets_and_configs_by_target() {
    let got = web(
        "volumes: [\"data:/var/lib/data\", \"./conf:/etc/app:ro\", \"/tmp/cache\"]\nsecrets: [pw, {source: key, target: /keys/k}]\nconfigs: [app]\n",
        "volumes: [\"./dev-data:/var/lib/data\", {type: bind, source: ./src, target: /src}]\nsecrets: [{source: pw, uid: \"1\"}, other]\nconfigs: [{source: app2, target: /app}]\n",
    );
    assert_eq!(
        got,
        json!({
            "volumes": ["./dev-data:/var/lib/data", "./conf:/etc/app:ro", "/tmp/cache", {"type": "bind", "source": "./src", "target": "/src"}],
            "secrets": [{"source": "pw", "uid": "1"}, {"source": "key", "target": "/keys/k"}, "other"],
            "configs": [{"source": "app2", "target": "/app"}],
        })
    );
}

#[test]
fn networks_depends_on_and_dns_lists() {
    let got = web(
        "networks: [front]\ndepends_on: [db]\ndns: 1.1.1.1\ndns_search: [a.example]\ntmpfs: /run\n",
        "networks: {back: {aliases: [api]}, front: {aliases: [www]}}\ndepends_on: {cache: {condition: service_healthy}, db: {condition: service_healthy}}\ndns: [8.8.8.8, 1.1.1.1]\ndns_search: b.example\ntmpfs: [/tmp]\n",
    );
    assert_eq!(
        got,
        json!({
            "networks": {"front": {"aliases": ["www"]}, "back": {"aliases": ["api"]}},
            "depends_on": {"db": {"condition": "service_healthy"}, "cache": {"condition": "service_healthy"}},
            "dns": ["1.1.1.1", "8.8.8.8"],
            "dns_search": ["a.example", "b.example"],
            "tmpfs": ["/run", "/tmp"],
        })
    );
}

#[test]
fn logging_merges_for_the_same_driver_and_build_reads_a_directory() {
    let got = web(
        "logging: {driver: json-file, options: {max-size: 1m}}\nbuild: ./app\n",
        "logging: {options: {max-file: \"3\"}}\nbuild: {dockerfile: Dockerfile.dev}\n",
    );
    assert_eq!(
        got,
        json!({
            "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}},
            "build": {"context": "./app", "dockerfile": "Dockerfile.dev"},
        })
    );
    let got = web(
        "logging: {driver: json-file, options: {max-size: 1m}}\n",
        "logging: {driver: journald}\n",
    );
    assert_eq!(got, json!({"logging": {"driver": "journald"}}));
}

#[test]
fn reset_and_override_tags() {
    let got = web(
        "image: a:1\nports: [\"8080:80\"]\nenvironment: {FOO: bar, KEEP: x}\ncommand: [a]\nvolumes: [\"d:/d\"]\n",
        "ports: !reset []\nenvironment: {FOO: !reset null}\ncommand: !reset null\nvolumes: !override [\"e:/e\"]\nextra_hosts: !reset []\n",
    );
    assert_eq!(
        got,
        json!({"image": "a:1", "environment": {"KEEP": "x"}, "volumes": ["e:/e"]})
    );
    // Alone (nothing earlier to reset), a `!reset` value is left out.
    let mut tags = Tags::new();
    let n = tagged::parse("a: !reset 1\nb: [x, !reset y]\n", 0, &mut tags).expect("parse");
    assert_eq!(plain(&strip(n, &tags)), json!({"b": ["x"]}));
}

#[test]
fn merged_keys_keep_the_position_of_the_file_they_came_from() {
    let n = merged(
        "services:\n  web:\n    image: a:1\n    ports: [\"80:80\"]\n",
        "services:\n  web:\n    image: a:2\n    ports: [\"81:81\"]\n    user: x\n",
    );
    let web = n.get("services").and_then(|s| s.get("web")).expect("web");
    let (k, _) = web.entry("image").expect("image");
    assert_eq!(decode(k.line), (1, 3));
    let (k, ports) = web.entry("ports").expect("ports");
    assert_eq!(
        decode(k.line),
        (0, 4),
        "merged lists keep the first file's key"
    );
    let NodeKind::Seq(items) = &ports.kind else {
        panic!("ports")
    };
    assert_eq!(
        items.iter().map(|i| decode(i.line)).collect::<Vec<_>>(),
        [(0, 4), (1, 4)]
    );
    let (k, _) = web.entry("user").expect("user");
    assert_eq!(decode(k.line), (1, 5));
}

#[test]
fn a_list_over_a_mapping_is_refused_where_it_is() {
    let mut tags = Tags::new();
    let a = tagged::parse(
        "services:\n  web:\n    deploy: {replicas: 1}\n",
        0,
        &mut tags,
    )
    .expect("a");
    let b = tagged::parse("services:\n  web:\n    deploy: [x]\n", 1, &mut tags).expect("b");
    let (line, col, message) = files(a, b, &tags).expect_err("mismatch");
    assert_eq!((decode(line), col), ((1, 3), 13));
    assert!(message.contains("services.web.deploy"), "{message}");
}
