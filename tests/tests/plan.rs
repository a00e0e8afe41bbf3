//! `agent plan` through the real binary, against a real state store written the way the daemon
//! records applied changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use agent::manifest::{self, Manifest};
use agent::plan::{self, Desired};
use agent::store::{
    ContainerRecord, ContainerState, LinkRecord, NetworkRecord, Store, VolumeRecord,
};
use agent_e2e::agent_bin;

const SHOP: &str = "\
apiVersion: agent/v1
kind: Volume
metadata: {name: data}
spec: {reclaim: retain}
---
apiVersion: agent/v1
kind: Container
metadata: {name: db}
spec:
  image: 127.0.0.1:5000/busybox:1
  volumes: [\"data:/var/lib/db\"]
---
apiVersion: agent/v1
kind: Container
metadata: {name: web}
spec:
  image: 127.0.0.1:5000/busybox:1
  links: [db]
  env: {LOG_LEVEL: info}
  resources: {memory: 256Mi}
";

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn agent_plan(dir: &Path, state: &Path, json: bool) -> Run {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("plan").arg(dir).arg("--state-dir").arg(state);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = cmd.output().expect("run agent plan");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

/// Records in `store` what the daemon records after applying the manifests of `dir` with every
/// image resolved to a fixed digest: images, volumes, networks, running containers, links and
/// the per-file last good objects.
fn record_applied(store: &mut Store, dir: &Path) {
    let dir = std::fs::canonicalize(dir).expect("canonical dir");
    let loaded = manifest::load_dir(&dir).expect("load");
    assert!(loaded.is_valid());
    let mut resolutions = plan::Resolutions::new();
    for f in &loaded.files {
        for o in f.outcome.as_ref().expect("valid") {
            if let Manifest::Container(c) = &o.manifest {
                let key = plan::ImageSource::registry(&c.spec.image).key();
                resolutions.insert(key, format!("sha256:{}", "ab".repeat(32)));
            }
        }
    }
    let inputs = plan::inputs_from_loaded(&loaded, |_| Vec::new());
    let desired = Desired::build(inputs, &resolutions);
    store
        .transaction(|tx| -> Result<(), agent::store::Error> {
            for (key, digest) in &resolutions {
                tx.upsert_image(&agent::store::ImageRecord {
                    reference: key.clone(),
                    digest: digest.clone(),
                    config: serde_json::json!({}),
                    size: 0,
                    created_at: 0,
                })?;
            }
            for (name, v) in &desired.volumes {
                tx.upsert_volume(&VolumeRecord {
                    name: name.clone(),
                    driver_path: format!("/var/lib/agent/volumes/{name}"),
                    reclaim: plan::store::store_reclaim(v.value.reclaim),
                    labels: v.value.labels.clone(),
                    created_at: 0,
                })?;
            }
            for (name, n) in &desired.networks {
                tx.upsert_network(&NetworkRecord {
                    name: name.clone(),
                    bridge: n.value.bridge.clone(),
                    subnet: n.value.subnet.to_string(),
                    gateway: Some(n.value.gateway),
                    config: plan::store::network_config_value(&n.value),
                    created_at: 0,
                })?;
            }
            for (name, c) in &desired.containers {
                let cfg = &c.value.config;
                let mut rec = ContainerRecord::new(
                    name.clone(),
                    format!("id-{name}"),
                    plan::store::container_config_value(cfg),
                    c.value.hash.expect("resolved").to_string(),
                    cfg.image.digest.clone().expect("digest"),
                    0,
                );
                rec.state = ContainerState::Running;
                tx.upsert_container(&rec)?;
            }
            for (name, c) in &desired.containers {
                for l in &c.value.config.fixed.links {
                    tx.add_link(&LinkRecord {
                        parent: name.clone(),
                        child: l.container.clone(),
                        alias: l.alias.clone(),
                    })?;
                }
            }
            for f in &loaded.files {
                let objs: Vec<Manifest> = f
                    .outcome
                    .as_ref()
                    .expect("valid")
                    .iter()
                    .map(|o| o.manifest.clone())
                    .collect();
                tx.record_manifest_loaded(
                    &f.path.to_string_lossy(),
                    &f.sha256,
                    &plan::store::objects_value(&objs),
                    0,
                )?;
            }
            Ok(())
        })
        .expect("record applied state");
}

#[test]
fn without_a_store_everything_is_to_create_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir, "shop.yaml", SHOP);
    let state = tmp.path().join("state");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 2, "changes pending\n{}{}", r.out, r.err);
    for line in [
        "+ pull 127.0.0.1:5000/busybox:1",
        "+ create data",
        "+ create db",
        "+ create web",
        "Plan: 4 to add, 2 to change, 0 to replace, 0 to remove.",
    ] {
        assert!(r.out.contains(line), "missing {line:?} in\n{}", r.out);
    }
    assert!(!state.exists(), "agent plan created the state directory");
}

#[test]
fn recorded_state_gives_no_changes_then_field_reasons_while_the_store_is_locked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = write(&dir, "shop.yaml", SHOP);
    let state = tmp.path().join("state");
    // The "daemon" keeps the store open (and its lock held) during the whole test.
    let mut store = Store::open(&state).expect("open store");
    record_applied(&mut store, &dir);

    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("No changes"), "{}", r.out);

    std::fs::write(
        &file,
        SHOP.replace("LOG_LEVEL: info", "LOG_LEVEL: debug").replace(
            "resources: {memory: 256Mi}",
            "resources: {memory: 256Mi}\n  restart: always",
        ),
    )
    .expect("edit");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(r.out.contains("-/+ recreate web"), "{}", r.out);
    assert!(r.out.contains("env.LOG_LEVEL changed"), "{}", r.out);
    assert!(r.out.contains("restart no -> always"), "{}", r.out);

    let r = agent_plan(&dir, &state, true);
    assert_eq!(r.code, 2, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).expect("json");
    assert_eq!(v["changes"][0]["action"], "recreate", "{v}");
    assert_eq!(v["changes"][0]["name"], "web");
    assert_eq!(
        v["changes"][0]["summary"],
        "recreate web: env.LOG_LEVEL changed; restart no -> always"
    );
    assert_eq!(v["counts"]["replace"], 1);

    // Only an in-place field changes: update, not recreate.
    std::fs::write(&file, SHOP.replace("memory: 256Mi", "memory: 1Gi")).expect("edit");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 2);
    assert!(r.out.contains("~ update web"), "{}", r.out);
    assert!(r.out.contains("resources.memory 256Mi -> 1Gi"), "{}", r.out);
    drop(store);
}

#[test]
fn invalid_file_exits_1_and_keeps_its_last_good_objects() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = write(&dir, "shop.yaml", SHOP);
    let state = tmp.path().join("state");
    record_applied(&mut Store::open(&state).expect("open"), &dir);

    std::fs::write(&file, SHOP.replace("memory: 256Mi", "memory: lots")).expect("break it");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    assert!(
        r.out.contains("No changes"),
        "nothing of the broken file is touched:\n{}",
        r.out
    );
    assert!(r.out.contains("failed to load"), "{}", r.out);
    assert!(
        r.err.contains("shop.yaml:"),
        "file:line error expected:\n{}",
        r.err
    );
    assert!(r.err.contains("spec.resources.memory"), "{}", r.err);

    let r = agent_plan(&dir, &state, true);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.out).expect("json");
    assert!(
        v["errors"][0]["line"].as_u64().is_some_and(|l| l > 0),
        "{v}"
    );
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(0));
}

#[test]
fn deleted_file_removes_its_containers_users_first_and_keeps_the_volume() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = write(&dir, "shop.yaml", SHOP);
    let state = tmp.path().join("state");
    record_applied(&mut Store::open(&state).expect("open"), &dir);
    std::fs::remove_file(&file).expect("delete");
    let r = agent_plan(&dir, &state, true);
    assert_eq!(r.code, 2, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).expect("json");
    let steps: Vec<String> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap_or(""),
                c["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "stop web",
            "remove web",
            "stop db",
            "remove db",
            "remove 127.0.0.1:5000/busybox:1"
        ]
    );
    assert_eq!(v["held"][0]["name"], "data", "{v}");
}

#[test]
fn unreadable_directory_is_an_error_not_an_empty_plan() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = agent_plan(
        &tmp.path().join("missing"),
        &tmp.path().join("state"),
        false,
    );
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    assert!(r.err.contains("missing"), "{}", r.err);
}

/// A command argument with a newline (allowed, as in Docker: a `sh -c` script) is shown
/// escaped in the plan's reason: it cannot forge a step or a line of the plan.
#[test]
fn a_newline_in_a_command_cannot_forge_a_plan_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    let shop = SHOP.replace(
        "  links: [db]\n",
        "  links: [db]\n  command: [\"/bin/sh\", \"-c\", \"echo a\"]\n",
    );
    let file = write(&dir, "shop.yaml", &shop);
    let state = tmp.path().join("state");
    record_applied(&mut Store::open(&state).expect("open"), &dir);
    std::fs::write(
        &file,
        shop.replace("echo a", "echo a\\n  9. + create forged\\nPlan: 9 to add"),
    )
    .expect("edit");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(r.out.contains("-/+ recreate web"), "{}", r.out);
    let forged: Vec<&str> = r
        .out
        .lines()
        .filter(|l| l.trim_start().starts_with("9. + create forged") || l.starts_with("Plan: 9"))
        .collect();
    assert!(forged.is_empty(), "forged lines {forged:?} in\n{}", r.out);
    assert!(
        r.out.contains("echo a\\n  9. + create forged"),
        "the argument is not shown escaped:\n{}",
        r.out
    );
}

/// A label value with a right-to-left override (not a control character: `agent validate`
/// allows it) is shown escaped in the plan: it cannot reorder how the line reads.
#[test]
fn a_bidi_override_in_a_label_is_shown_escaped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    let shop = SHOP.replace(
        "metadata: {name: web}",
        "metadata: {name: web, labels: {note: plain}}",
    );
    let file = write(&dir, "shop.yaml", &shop);
    let state = tmp.path().join("state");
    record_applied(&mut Store::open(&state).expect("open"), &dir);
    std::fs::write(
        &file,
        shop.replace("note: plain", "note: \"\u{202e}nialp\""),
    )
    .expect("edit");
    let r = agent_plan(&dir, &state, false);
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(
        r.out.contains("labels.note plain -> \\u{202e}nialp") && !r.out.contains('\u{202e}'),
        "{}",
        r.out
    );
}
