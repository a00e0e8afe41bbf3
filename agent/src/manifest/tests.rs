//! Loading and checking whole manifests (unit tests across the module).

use std::path::PathBuf;

use super::*;

/// Loads `(file name, text)` pairs together.
pub(crate) fn load(files: &[(&str, &str)]) -> Loaded {
    Loaded::from_sources(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec())),
    )
}

/// Every diagnostic as `file:line:col: field: message`.
pub(crate) fn problems(files: &[(&str, &str)]) -> Vec<String> {
    load(files).diagnostics().map(ToString::to_string).collect()
}

/// What WEB refers to.
pub(crate) const SUPPORT: &str = "\
apiVersion: agent/v1
kind: Image
metadata: {name: busybox}
spec: {registry: {reference: \"127.0.0.1:5000/busybox:1.36\", insecure: true}}
---
apiVersion: agent/v1
kind: Volume
metadata: {name: kv-data}
---
apiVersion: agent/v1
kind: Container
metadata: {name: kv}
spec: {image: busybox}
";

pub(crate) const WEB: &str = "\
apiVersion: agent/v1
kind: Container
metadata:
  name: web
spec:
  image: busybox
  ports: [\"127.0.0.1:18080:8080/tcp\", 53/udp]
  volumes:
    - kv-data:/data:ro
    - {bind: /srv/conf, target: /etc/conf, readOnly: true}
    - {tmpfs: /run, size: 16Mi}
  links: [kv, {container: kv, alias: db}]
  ulimits: {nofile: {soft: 1024, hard: 4096}, core: 0, stack: unlimited}
  resources: {memory: 256Mi, memorySwap: -1, cpus: 0.5, pids: 200}
  restart: {policy: on-failure, maxRetries: 5}
  healthcheck: {command: [/bin/check], interval: 10s}
  stopSignal: INT
  stopGracePeriod: 1m30s
  capAdd: [net_admin]
";

#[test]
fn a_full_container_reads_into_the_typed_model() {
    let loaded = load(&[("support.yaml", SUPPORT), ("web.yaml", WEB)]);
    let objs: Vec<&Object> = loaded.objects().filter(|o| o.name() == "web").collect();
    assert_eq!(
        objs.len(),
        1,
        "{:?}",
        loaded.diagnostics().collect::<Vec<_>>()
    );
    let Manifest::Container(c) = &objs[0].manifest else {
        panic!("not a container")
    };
    let s = &c.spec;
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.ports[1].protocol, Protocol::Udp);
    assert_eq!(
        s.volumes[0],
        Mount::Volume {
            volume: "kv-data".into(),
            target: "/data".into(),
            read_only: true,
            no_copy: false
        }
    );
    assert_eq!(
        s.volumes[2],
        Mount::Tmpfs {
            tmpfs: "/run".into(),
            size: Some(ByteSize(16 << 20))
        }
    );
    assert_eq!(s.links[1].effective_alias(), "db");
    assert_eq!(s.links[0].effective_alias(), "kv");
    assert_eq!(
        s.ulimits[&UlimitName::Nofile],
        Ulimit {
            soft: Limit::Value(1024),
            hard: Limit::Value(4096)
        }
    );
    assert_eq!(s.ulimits[&UlimitName::Stack].hard, Limit::Unlimited);
    assert_eq!(s.resources.memory, Some(ByteSize(256 << 20)));
    assert_eq!(s.resources.memory_swap, Some(MemorySwap::Unlimited));
    assert_eq!(
        s.restart,
        RestartPolicy::OnFailure {
            max_retries: Some(5)
        }
    );
    assert_eq!(s.healthcheck.as_ref().map(|h| h.retries), Some(3));
    assert_eq!(s.stop_signal.map(|s| s.to_string()), Some("SIGINT".into()));
    assert_eq!(s.stop_grace_period.map(|d| d.get().as_secs()), Some(90));
    assert_eq!(s.cap_add[0].as_str(), "CAP_NET_ADMIN");
    assert_eq!(s.network_mode, NetworkMode::Bridge);
    assert_eq!(objs[0].source.line, 1);
}

#[test]
fn typed_model_round_trips_through_serde() {
    let loaded = load(&[("support.yaml", SUPPORT), ("web.yaml", WEB)]);
    let obj = loaded
        .objects()
        .find(|o| o.name() == "web")
        .expect("object");
    let json = serde_json::to_value(&obj.manifest).expect("serialize");
    let back: Manifest = serde_json::from_value(json.clone()).expect("deserialize");
    assert_eq!(back, obj.manifest, "{json:#}");
}

#[test]
fn file_results_carry_hash_and_all_documents() {
    let text = "apiVersion: agent/v1\nkind: Volume\nmetadata: {name: a}\n---\napiVersion: agent/v1\nkind: Volume\nmetadata: {name: b}\nspec: {reclaim: delete}\n";
    let loaded = load(&[("v.yaml", text)]);
    let f = &loaded.files[0];
    assert_eq!(f.sha256.len(), 64);
    let objs = f.outcome.as_ref().expect("ok");
    assert_eq!(objs.len(), 2);
    assert_eq!((objs[1].source.line, objs[1].source.document), (5, 1));
    let Manifest::Volume(v) = &objs[1].manifest else {
        panic!("volume")
    };
    assert_eq!(v.spec.reclaim, Reclaim::Delete);
}

#[test]
fn duplicate_names_across_files_name_both_files() {
    let v = "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\n";
    let p = problems(&[("a.yaml", v), ("b.yaml", v)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("b.yaml:4:9: metadata.name: duplicate Volume name \"data\": already defined at a.yaml:4:9"), "{p:?}");
}
