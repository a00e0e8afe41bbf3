//! One test per rule: each feeds a small manifest set and checks the exact location and a key
//! phrase of the error.

use crate::manifest::tests::{load, problems};

/// Image, volume and network that containers below may refer to.
const BASE: &str = "\
apiVersion: agent/v1
kind: Image
metadata: {name: busybox}
spec: {dockerArchive: {path: /images/docker.tar}}
---
apiVersion: agent/v1
kind: Volume
metadata: {name: data}
---
apiVersion: agent/v1
kind: Network
metadata: {name: shop}
spec: {subnet: 10.214.7.0/24}
";

/// A container document named `name` whose spec lines follow `image: busybox` (lines 6..).
fn container(name: &str, spec: &str) -> String {
    let mut s = format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n"
    );
    for line in spec.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Asserts the single problem of `files` starts with `at` and contains `phrase`.
#[track_caller]
fn one(files: &[(&str, &str)], at: &str, phrase: &str) {
    let p = problems(files);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    assert!(p[0].starts_with(at), "expected {at}, got {}", p[0]);
    assert!(p[0].contains(phrase), "expected {phrase:?} in {}", p[0]);
}

/// Asserts a container with `spec` lines (and BASE alongside) fails with one problem.
#[track_caller]
fn bad(spec: &str, at: &str, phrase: &str) {
    let c = container("web", spec);
    one(&[("base.yaml", BASE), ("web.yaml", &c)], at, phrase);
}

#[test]
fn base_and_a_plain_container_are_valid() {
    let c = container(
        "web",
        "volumes: [data:/data]\nnetworks: [shop]\nports: [\"127.0.0.1:18080:80\"]",
    );
    let loaded = load(&[("base.yaml", BASE), ("web.yaml", &c)]);
    assert!(
        loaded.is_valid(),
        "{:#?}",
        loaded.diagnostics().collect::<Vec<_>>()
    );
    assert_eq!(loaded.objects().count(), 4);
}

#[test]
fn names_must_be_dns_labels() {
    let c = container("Web_1", "");
    one(
        &[("base.yaml", BASE), ("web.yaml", &c)],
        "web.yaml:4:9: metadata.name:",
        "DNS label",
    );
    let long = "a".repeat(64);
    let c = container(&long, "");
    one(
        &[("base.yaml", BASE), ("web.yaml", &c)],
        "web.yaml:4:9:",
        "DNS label",
    );
    let c = container("-web", "");
    one(
        &[("base.yaml", BASE), ("web.yaml", &c)],
        "web.yaml:4:9:",
        "DNS label",
    );
}

#[test]
fn unknown_fields_suggest_the_right_one() {
    bad(
        "imgae: x",
        "web.yaml:7:3: spec.imgae:",
        "did you mean `image`",
    );
    bad(
        "resources: {memroy: 1g}",
        "web.yaml:7:15: spec.resources.memroy:",
        "did you mean `memory`",
    );
}

#[test]
fn wrong_types_and_units() {
    bad(
        "ports: {a: 1}",
        "web.yaml:7:10: spec.ports:",
        "expected a sequence",
    );
    bad(
        "resources: {memory: 12q}",
        "web.yaml:7:23: spec.resources.memory:",
        "64Mi",
    );
    bad(
        "stopGracePeriod: 10",
        "web.yaml:7:20: spec.stopGracePeriod:",
        "a unit is required",
    );
    bad(
        "env: {PORT: 8080}",
        "web.yaml:7:15: spec.env.PORT:",
        "quotes",
    );
    bad(
        "restart: sometimes",
        "web.yaml:7:12: spec.restart:",
        "on-failure",
    );
    bad(
        "ulimits: {nofiles: 3}",
        "web.yaml:7:13: spec.ulimits.nofiles:",
        "did you mean `nofile`",
    );
    bad(
        "networkMode: bridged",
        "web.yaml:7:16: spec.networkMode:",
        "container:NAME",
    );
    bad(
        "capAdd: [NET_ADMN]",
        "web.yaml:7:12: spec.capAdd[0]:",
        "did you mean NET_ADMIN",
    );
    bad(
        "stopSignal: SIGFOO",
        "web.yaml:7:15: spec.stopSignal:",
        "SIGTERM",
    );
    bad(
        "ports: [\"80/icmp\"]",
        "web.yaml:7:11: spec.ports[0]:",
        "unknown protocol",
    );
    bad(
        "ports: [\"8000-8010:80\"]",
        "web.yaml:7:11: spec.ports[0]:",
        "differ in length",
    );
}

#[test]
fn kind_and_api_version() {
    one(
        &[("x.yaml", "apiVersion: agent/v1\nkind: Contaner\n")],
        "x.yaml:2:7: kind:",
        "did you mean `Container`",
    );
    one(
        &[(
            "x.yaml",
            "apiVersion: agent/v2\nkind: Volume\nmetadata: {name: a}\n",
        )],
        "x.yaml:1:13: apiVersion:",
        "agent/v1",
    );
    one(
        &[("x.yaml", "apiVersion: agent/v1\nmetadata: {name: a}\n")],
        "x.yaml:1:1:",
        "missing field `kind`",
    );
    one(
        &[("x.yaml", "- a\n- b\n")],
        "x.yaml:1:1:",
        "expected a manifest",
    );
}

#[test]
fn relative_paths_are_refused() {
    bad(
        "workingDir: app",
        "web.yaml:7:15: spec.workingDir:",
        "absolute",
    );
    bad(
        "volumes: [{bind: srv, target: /srv}]",
        "web.yaml:7:20: spec.volumes[0].bind:",
        "absolute",
    );
    bad(
        "volumes: [{volume: data, target: data}]",
        "web.yaml:7:36: spec.volumes[0].target:",
        "absolute",
    );
    bad(
        "volumes: [{tmpfs: run}]",
        "web.yaml:7:21: spec.volumes[0].tmpfs:",
        "absolute",
    );
    let img = "apiVersion: agent/v1\nkind: Image\nmetadata: {name: i}\nspec:\n  rootfsTar: {path: rootfs.tar}\n";
    one(
        &[("i.yaml", img)],
        "i.yaml:5:21: spec.rootfsTar.path:",
        "absolute",
    );
}

#[test]
fn mounts() {
    bad(
        "volumes: [{volume: data}]",
        "web.yaml:7:13: spec.volumes[0]:",
        "needs `target`",
    );
    bad(
        "volumes: [{volume: data, bind: /x, target: /d}]",
        "web.yaml:7:13: spec.volumes[0]:",
        "exactly one of",
    );
    bad(
        "volumes: [data:/d, \"/srv:/d:ro\"]",
        "web.yaml:7:22: spec.volumes[1]:",
        "already used by spec.volumes[0]",
    );
    bad(
        "volumes: [\"data:/d:rx\"]",
        "web.yaml:7:13: spec.volumes[0]:",
        "not ro or rw",
    );
    bad(
        "volumes: [{tmpfs: /t, size: 0}]",
        "web.yaml:7:31: spec.volumes[0].size:",
        "more than 0",
    );
}

#[test]
fn ulimits_and_resources() {
    bad(
        "ulimits: {nofile: {soft: 10, hard: 5}}",
        "web.yaml:7:21: spec.ulimits.nofile:",
        "above hard limit",
    );
    bad(
        "resources: {memory: 1Mi}",
        "web.yaml:7:23: spec.resources.memory:",
        "minimum of 6Mi",
    );
    bad(
        "resources: {memory: 64Mi, memorySwap: 32Mi}",
        "web.yaml:7:41: spec.resources.memorySwap:",
        "below the memory limit",
    );
    bad(
        "resources: {memorySwap: 32Mi}",
        "web.yaml:7:27: spec.resources.memorySwap:",
        "needs `memory`",
    );
    bad(
        "resources: {memory: 64Mi, memoryReservation: 128Mi}",
        "web.yaml:7:48:",
        "above the memory limit",
    );
    bad(
        "resources: {cpus: 0}",
        "web.yaml:7:21: spec.resources.cpus:",
        "more than 0",
    );
    bad("resources: {cpuShares: 1}", "web.yaml:7:26:", "2-262144");
    bad("resources: {cpuset: \"0-\"}", "web.yaml:7:23:", "cpuset");
    bad("resources: {pids: 0}", "web.yaml:7:21:", "at least 1");
    bad(
        "restart: {policy: always, maxRetries: 3}",
        "web.yaml:7:12: spec.restart:",
        "only to the on-failure",
    );
}

#[test]
fn healthcheck_caps_sysctls() {
    bad(
        "healthcheck: {command: []}",
        "web.yaml:7:26: spec.healthcheck.command:",
        "must not be empty",
    );
    bad(
        "healthcheck: {command: [x], retries: 0}",
        "web.yaml:7:40:",
        "at least 1",
    );
    bad(
        "capAdd: [NET_ADMIN]\ncapDrop: [CAP_NET_ADMIN]",
        "web.yaml:7:12: spec.capAdd[0]:",
        "both added and dropped",
    );
    bad(
        "sysctls: {vm.swappiness: \"10\"}",
        "web.yaml:7:28: spec.sysctls.vm.swappiness:",
        "not namespaced",
    );
}

#[test]
fn network_modes_refuse_what_they_exclude() {
    bad(
        "networkMode: host\nports: [\"8080:80\"]",
        "web.yaml:8:10: spec.ports:",
        "networkMode host",
    );
    bad(
        "networkMode: none\nnetworks: [shop]",
        "web.yaml:8:13: spec.networks:",
        "networkMode none",
    );
    let kv = container("kv", "");
    let web = container("web", "networkMode: container:kv\nhostname: w");
    one(
        &[("base.yaml", BASE), ("kv.yaml", &kv), ("web.yaml", &web)],
        "web.yaml:8:13: spec.hostname:",
        "networkMode container:kv",
    );
    bad(
        "networkMode: container:web",
        "web.yaml:7:16: spec.networkMode:",
        "its own network",
    );
}

#[test]
fn links_and_volumes_from() {
    bad(
        "links: [web]",
        "web.yaml:7:11: spec.links[0]:",
        "link to itself",
    );
    bad(
        "links: [{container: Kv}]",
        "web.yaml:7:23: spec.links[0].container:",
        "DNS label",
    );
    bad(
        "volumesFrom: [web]",
        "web.yaml:7:17: spec.volumesFrom[0]:",
        "from itself",
    );
    let kv = container("kv", "");
    let web = container("web", "links: [kv, \"kv:kv\"]");
    one(
        &[("base.yaml", BASE), ("kv.yaml", &kv), ("web.yaml", &web)],
        "web.yaml:7:15: spec.links[1]:",
        "alias \"kv\" is already used",
    );
}

#[test]
fn dangling_references_name_what_exists() {
    bad(
        "links: [{container: db, alias: db}]",
        "web.yaml:7:23: spec.links[0].container:",
        "linked container \"db\" is not defined",
    );
    bad(
        "volumesFrom: [kv]",
        "web.yaml:7:17: spec.volumesFrom[0]:",
        "volumesFrom container \"kv\" is not defined",
    );
    bad(
        "networkMode: container:kv",
        "web.yaml:7:16: spec.networkMode:",
        "networkMode container \"kv\" is not defined",
    );
    bad(
        "volumes: [{volume: dat, target: /d}]",
        "web.yaml:7:22: spec.volumes[0].volume:",
        "known Volume names: data",
    );
    bad(
        "networks: [shp]",
        "web.yaml:7:14: spec.networks[0]:",
        "known Network names: shop",
    );
    // The mapping form (with aliases) points at the network's entry.
    bad(
        "networks: {shp: {aliases: [db]}}",
        "web.yaml:7:19: spec.networks.shp:",
        "known Network names: shop",
    );
    let c = container("web", "").replace("image: busybox", "image: nginx");
    one(
        &[("base.yaml", BASE), ("web.yaml", &c)],
        "web.yaml:6:10: spec.image:",
        "full reference",
    );
}

#[test]
fn references_into_a_failing_file_are_not_dangling() {
    let kv = container("kv", "bogus: 1");
    let web = container("web", "links: [kv]");
    let p = problems(&[("base.yaml", BASE), ("kv.yaml", &kv), ("web.yaml", &web)]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("kv.yaml:7:3: spec.bogus"), "{p:#?}");
}

#[test]
fn registry_references_are_checked() {
    let c = container("web", "").replace("image: busybox", "image: \"127.0.0.1:5000/Busy Box\"");
    one(
        &[("web.yaml", &c)],
        "web.yaml:6:10: spec.image:",
        "invalid image reference",
    );
    let ok = container("web", "").replace("image: busybox", "image: 127.0.0.1:5000/busybox:1.36");
    assert!(load(&[("web.yaml", &ok)]).is_valid());
}

#[test]
fn duplicates_within_and_across_files() {
    let two = format!("{}---\n{}", container("web", ""), container("web", ""));
    one(
        &[("base.yaml", BASE), ("web.yaml", &two)],
        "web.yaml:11:9: metadata.name:",
        "already defined at web.yaml:4:9",
    );
    let c = container("web", "");
    one(
        &[("base.yaml", BASE), ("a.yaml", &c), ("b.yaml", &c)],
        "b.yaml:4:9: metadata.name:",
        "already defined at a.yaml:4:9",
    );
    // The same name for different kinds is fine.
    let v = container("data", "");
    assert!(load(&[("base.yaml", BASE), ("v.yaml", &v)]).is_valid());
}

#[test]
fn cycles_print_the_cycle() {
    let a = container("a", "links: [b]");
    let b = container("b", "volumesFrom: [c]");
    let c = container("c", "networkMode: container:a");
    let p = problems(&[
        ("base.yaml", BASE),
        ("a.yaml", &a),
        ("b.yaml", &b),
        ("c.yaml", &c),
    ]);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("c.yaml:7:16: spec.networkMode:"), "{p:#?}");
    assert!(p[0].contains("a -> b -> c -> a"), "{p:#?}");
}

#[test]
fn host_port_conflicts() {
    let a = container("a", "ports: [\"0.0.0.0:8080:80\"]");
    let b = container("b", "ports: [\"8081:81\", \"127.0.0.1:8080:80\"]");
    one(
        &[("base.yaml", BASE), ("a.yaml", &a), ("b.yaml", &b)],
        "b.yaml:7:22: spec.ports[1]:",
        "published by container \"a\" at a.yaml:7:11",
    );
    let a = container("a", "ports: [\"8000-8010:8000-8010/udp\"]");
    let b = container("b", "ports: [\"8005:80/udp\"]");
    one(
        &[("base.yaml", BASE), ("a.yaml", &a), ("b.yaml", &b)],
        "b.yaml:7:11:",
        "host port conflict",
    );
    // Same port, other protocol or other address: fine.
    let b = container("b", "ports: [\"8005:80/tcp\", \"127.0.0.2:9000:90\"]");
    let c = container("c", "ports: [\"127.0.0.3:9000:90\"]");
    assert!(
        load(&[
            ("base.yaml", BASE),
            ("a.yaml", &a),
            ("b.yaml", &b),
            ("c.yaml", &c)
        ])
        .is_valid()
    );
    // Within one container.
    bad(
        "ports: [\"8080:80\", \"8080:81\"]",
        "web.yaml:7:22: spec.ports[1]:",
        "container \"web\"",
    );
}

#[test]
fn network_aliases() {
    let ok = container(
        "web",
        "networks:\n  shop:\n    aliases: [db, db.shop.local]",
    );
    assert!(problems(&[("base.yaml", BASE), ("web.yaml", &ok)]).is_empty());
    let short = container("web", "networks:\n  shop:");
    assert!(problems(&[("base.yaml", BASE), ("web.yaml", &short)]).is_empty());
    bad(
        "networks:\n  shop:\n    aliases: [db, \"no way\"]",
        "web.yaml:9:21: spec.networks.shop.aliases[1]:",
        "invalid alias \"no way\": a DNS name",
    );
    bad(
        "networks:\n  shop:\n    aliases: [db, DB]",
        "web.yaml:9:21: spec.networks.shop.aliases[1]:",
        "alias \"DB\" is listed twice",
    );
    bad(
        "networks:\n  shop:\n    alias: [db]",
        "web.yaml:9:7: spec.networks.shop.alias:",
        "aliases",
    );
}

#[test]
fn networks() {
    let n = |name: &str, spec: &str| {
        format!("apiVersion: agent/v1\nkind: Network\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    one(
        &[(
            "n.yaml",
            &n("a", "{subnet: 10.1.0.0/16, gateway: 10.2.0.1}"),
        )],
        "n.yaml:4:38: spec.gateway:",
        "not inside subnet",
    );
    one(
        &[(
            "n.yaml",
            &n("a", "{subnet: 10.1.0.0/16, gateway: 10.1.0.0}"),
        )],
        "n.yaml:4:38:",
        "network or broadcast",
    );
    one(
        &[("n.yaml", &n("a", "{subnet: 10.1.0.1/16}"))],
        "n.yaml:4:16: spec.subnet:",
        "did you mean \"10.1.0.0/16\"",
    );
    one(
        &[(
            "n.yaml",
            &n(
                "a",
                "{subnet: 10.1.0.0/16, bridge: a-very-long-bridge-name}",
            ),
        )],
        "n.yaml:4:37: spec.bridge:",
        "1-15 characters",
    );
    one(
        &[("n.yaml", &n("a", "{subnet: 10.1.0.0/16, mtu: 20}"))],
        "n.yaml:4:34: spec.mtu:",
        "68-65535",
    );
    one(
        &[
            ("a.yaml", &n("a", "{subnet: 10.1.0.0/16}")),
            ("b.yaml", &n("b", "{subnet: 10.1.2.0/24}")),
        ],
        "b.yaml:4:16: spec.subnet:",
        "overlaps subnet 10.1.0.0/16 of network \"a\" at a.yaml:4:16",
    );
    one(
        &[
            ("a.yaml", &n("a", "{subnet: 10.1.0.0/16, bridge: br0}")),
            ("b.yaml", &n("b", "{subnet: 10.2.0.0/16, bridge: br0}")),
        ],
        "b.yaml:4:37: spec.bridge:",
        "also used by network \"a\"",
    );
}
