//! Planner scenarios and reason strings (the property tests are in `proptests.rs`).

use super::testkit::*;
use super::*;
use crate::store::ContainerState;

/// Plans, applies, and checks that a second plan is empty; returns the first plan's summaries.
fn converge(inputs: &[FileInput], actual: &mut Actual) -> Vec<String> {
    let d = desired(inputs, actual);
    let p = plan(&d, actual);
    assert_eq!(p, plan(&d, actual), "plan is not deterministic");
    apply(actual, &p, inputs);
    let again = plan(&desired(inputs, actual), actual);
    assert!(
        again.is_empty(),
        "second plan not empty: {:#?}",
        again.steps.iter().map(Step::summary).collect::<Vec<_>>()
    );
    p.steps.iter().map(Step::summary).collect()
}

fn set_state(actual: &mut Actual, name: &str, state: ContainerState) {
    if let Some(c) = actual.containers.get_mut(name) {
        c.state = state;
    }
}

fn shop() -> String {
    format!(
        "{}---\n{}---\n{}",
        volume("data", "retain"),
        container("db", "volumes: [\"data:/var/lib/db\"]"),
        container(
            "web",
            "links: [db]\nenv: {LOG_LEVEL: info}\nresources: {memory: 256Mi}"
        )
    )
}

#[test]
fn empty_desired_and_actual_give_an_empty_plan() {
    let p = plan(&Desired::default(), &Actual::default());
    assert!(p.is_empty() && p.held.is_empty());
}

#[test]
fn first_apply_orders_fetch_volume_targets_users() {
    let mut actual = Actual::default();
    let inputs = loaded_inputs(&[("shop.yaml", &shop())]);
    let steps = converge(&inputs, &mut actual);
    assert_eq!(
        steps,
        [
            "pull 127.0.0.1:5000/busybox:latest: needed by db, web",
            "create data: new in shop.yaml",
            "create db: new in shop.yaml; image 127.0.0.1:5000/busybox:latest: digest known after fetch",
            "start db: new container",
            "create web: new in shop.yaml; image 127.0.0.1:5000/busybox:latest: digest known after fetch",
            "start web: new container",
        ]
    );
}

#[test]
fn env_change_recreates_with_field_reason_and_refreshes_nothing_else() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let changed = shop().replace("LOG_LEVEL: info", "LOG_LEVEL: debug");
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert_eq!(steps, ["recreate web: env.LOG_LEVEL changed"]);
}

#[test]
fn env_values_never_appear_in_reasons_or_renderings() {
    let mut actual = Actual::default();
    let with = |env: &str| shop().replace("env: {LOG_LEVEL: info}", env);
    converge(
        &loaded_inputs(&[(
            "shop.yaml",
            &with("env: {PASSWORD: old-s3cret, GONE: gone-s3cret}"),
        )]),
        &mut actual,
    );
    let changed = with("env: {PASSWORD: new-s3cret, TOKEN: added-s3cret}");
    let inputs = loaded_inputs(&[("shop.yaml", &changed)]);
    let p = plan(&desired(&inputs, &actual), &actual);
    let summaries: Vec<String> = p.steps.iter().map(Step::summary).collect();
    assert_eq!(
        summaries,
        ["recreate web: env.GONE removed; env.PASSWORD changed; env.TOKEN added"]
    );
    let text = super::render::text(&p);
    let json = super::render::json(&p, &[]).to_string();
    for out in [summaries.join("\n"), text, json] {
        assert!(!out.contains("s3cret"), "a value leaked: {out}");
    }
}

#[test]
fn memory_change_is_updated_in_place() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let changed = shop().replace("memory: 256Mi", "memory: 512Mi");
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert_eq!(steps, ["update web: resources.memory 256Mi -> 512Mi"]);
}

#[test]
fn alias_change_is_updated_in_place_and_a_network_change_recreates() {
    let mut actual = Actual::default();
    let files = |web: &str| {
        format!(
            "{}---\n{}",
            network("back", "10.214.9.0/24"),
            container("web", web)
        )
    };
    converge(
        &loaded_inputs(&[("s.yaml", &files("networks: [back]"))]),
        &mut actual,
    );
    let aliased = files("networks: {back: {aliases: [API, db]}}");
    let steps = converge(&loaded_inputs(&[("s.yaml", &aliased)]), &mut actual);
    assert_eq!(
        steps,
        [
            "update web: networks.back.aliases (none) -> [api, db] (DNS names only: updated in place)"
        ]
    );
    // The same aliases in another order or case: nothing to do.
    let same = files("networks: {back: {aliases: [DB, api]}}");
    assert!(converge(&loaded_inputs(&[("s.yaml", &same)]), &mut actual).is_empty());
    // Another network is a new container.
    let moved = format!(
        "{}---\n{}",
        network("front", "10.214.10.0/24"),
        files("networks: {back: {aliases: [api, db]}, front: {}}")
    );
    let steps = converge(&loaded_inputs(&[("s.yaml", &moved)]), &mut actual);
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("recreate web:") && s.contains("networks")),
        "{steps:#?}"
    );
}

#[test]
fn label_change_is_updated_in_place_and_shm_size_recreates() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let labelled = shop().replacen("  name: web\n", "  name: web\n  labels: {tier: web}\n", 1);
    let steps = converge(&loaded_inputs(&[("shop.yaml", &labelled)]), &mut actual);
    assert_eq!(steps, ["update web: labels.tier (unset) -> web"]);
    let changed = labelled.replace(
        "resources: {memory: 256Mi}",
        "resources: {memory: 256Mi}\n  shmSize: 128Mi",
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert_eq!(steps, ["recreate web: shmSize 64Mi -> 128Mi"]);
}

#[test]
fn init_change_recreates() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let changed = shop().replace(
        "resources: {memory: 256Mi}",
        "resources: {memory: 256Mi}\n  init: true",
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert_eq!(steps, ["recreate web: init false -> true"]);
    let logged = changed.replace(
        "  init: true",
        "  init: true\n  logging: {driver: journald}",
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &logged)]), &mut actual);
    assert_eq!(
        steps,
        ["recreate web: logging.driver json-file -> journald"]
    );
    // `driver: json-file` and `logging: {}` are the default: no change.
    let default = changed.replace(
        "  init: true",
        "  init: true\n  logging: {driver: json-file}",
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &default)]), &mut actual);
    assert_eq!(
        steps,
        ["recreate web: logging.driver journald -> json-file"]
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert!(steps.is_empty(), "{steps:?}");
}

#[test]
fn recreated_link_target_refreshes_its_users() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let changed = shop().replace("data:/var/lib/db", "data:/srv/db");
    let steps = converge(&loaded_inputs(&[("shop.yaml", &changed)]), &mut actual);
    assert_eq!(
        steps,
        [
            "recreate db: volumes +data:/srv/db -data:/var/lib/db",
            "refresh-links web: link target db recreated: /etc/hosts refreshed",
        ]
    );
}

#[test]
fn image_digest_change_recreates_users() {
    let mut actual = Actual::default();
    let inputs = loaded_inputs(&[("shop.yaml", &shop())]);
    converge(&inputs, &mut actual);
    let old = digest_of("127.0.0.1:5000/busybox:latest");
    actual.images.insert(
        "127.0.0.1:5000/busybox:latest".into(),
        format!("sha256:cd34{}", "0".repeat(60)),
    );
    let steps = converge(&inputs, &mut actual);
    let short_old = format!("sha256:{}..", &old[7..19]);
    assert_eq!(
        steps,
        [
            format!("recreate db: image {short_old} -> sha256:cd3400000000.."),
            format!("recreate web: image {short_old} -> sha256:cd3400000000.."),
        ]
    );
}

#[test]
fn changed_image_source_is_fetched_again_and_users_recreated() {
    let mut actual = Actual::default();
    let inputs = loaded_inputs(&[("shop.yaml", &shop())]);
    converge(&inputs, &mut actual);
    let key = "127.0.0.1:5000/busybox:latest";
    let old = digest_of(key);
    let new = format!("sha256:ef56{}", "0".repeat(60));
    actual.changed_images.insert(
        key.into(),
        crate::plan::ImageChange {
            digest: new.clone(),
            reason: "moved".into(),
        },
    );
    let d = desired(&inputs, &actual);
    let p = plan(&d, &actual);
    let steps: Vec<String> = p.steps.iter().map(Step::summary).collect();
    let short_old = format!("sha256:{}..", &old[7..19]);
    assert_eq!(
        steps,
        [
            format!("pull {key}: moved"),
            format!("recreate db: image {short_old} -> sha256:ef5600000000.."),
            format!("recreate web: image {short_old} -> sha256:ef5600000000.."),
        ]
    );
}

#[test]
fn deleted_file_removes_users_first_and_keeps_retained_volumes() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let inputs = vec![FileInput {
        path: "shop.yaml".into(),
        state: FileState::Deleted,
    }];
    let d = desired(&inputs, &actual);
    let p = plan(&d, &actual);
    let steps: Vec<String> = p.steps.iter().map(Step::summary).collect();
    assert_eq!(
        steps,
        [
            "stop web: its file shop.yaml was deleted",
            "remove web: its file shop.yaml was deleted",
            "stop db: its file shop.yaml was deleted",
            "remove db: its file shop.yaml was deleted",
            "remove 127.0.0.1:5000/busybox:latest: no longer used by any manifest",
        ]
    );
    assert_eq!(
        p.held,
        [Held {
            kind: Some(crate::manifest::Kind::Volume),
            name: "data".into(),
            reason: "its manifest is gone; data kept (reclaim: retain)".into()
        }]
    );
    apply(&mut actual, &p, &inputs);
    assert!(plan(&desired(&inputs, &actual), &actual).is_empty());
}

#[test]
fn reclaim_delete_volume_is_removed_after_its_users() {
    let mut actual = Actual::default();
    let text = shop().replace("reclaim: retain", "reclaim: delete");
    converge(&loaded_inputs(&[("shop.yaml", &text)]), &mut actual);
    let inputs = vec![FileInput {
        path: "shop.yaml".into(),
        state: FileState::Deleted,
    }];
    let steps = converge(&inputs, &mut actual);
    assert_eq!(
        steps.last().map(String::as_str),
        Some("remove 127.0.0.1:5000/busybox:latest: no longer used by any manifest")
    );
    assert!(
        steps.contains(&"remove data: its file shop.yaml was deleted; reclaim: delete".to_string())
    );
    assert!(actual.volumes.is_empty());
}

#[test]
fn failed_file_keeps_last_good_objects_untouched() {
    let mut actual = Actual::default();
    let good = shop();
    converge(&loaded_inputs(&[("shop.yaml", &good)]), &mut actual);
    // The file now fails; its last good version asks for what runs. Even a drifted actual
    // state (web stopped, db with an old config) is left alone.
    let last_good = manifests(&[("shop.yaml", &good)]).remove(0).1;
    let inputs = vec![FileInput {
        path: "shop.yaml".into(),
        state: FileState::Failed {
            error: "shop.yaml:3:1: bad".into(),
            last_good,
        },
    }];
    set_state(&mut actual, "web", ContainerState::Created);
    let p = plan(&desired(&inputs, &actual), &actual);
    assert!(p.is_empty(), "{:?}", p.steps);
    assert_eq!(p.held.len(), 1);
    assert!(
        p.held[0]
            .reason
            .contains("failed to load (shop.yaml:3:1: bad)")
    );
}

#[test]
fn a_container_whose_image_manifest_is_gone_is_kept_not_pulled_from_a_registry() {
    let image = "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: busybox\nspec:\n  dockerArchive:\n    path: /images/busybox.tar\n";
    let app = container("app", "").replace("127.0.0.1:5000/busybox", "busybox");
    let mut actual = Actual::default();
    converge(
        &loaded_inputs(&[("image.yaml", image), ("app.yaml", &app)]),
        &mut actual,
    );
    // image.yaml deleted; app.yaml's objects still asked for (its last good version, never
    // applied, is planned like a loaded one): "busybox" names no Image manifest any more. It
    // must not become docker.io's busybox:latest (a pull from the internet and a recreate).
    let objs = manifests(&[("image.yaml", image), ("app.yaml", &app)])
        .into_iter()
        .find(|(p, _)| p.as_path() == std::path::Path::new("app.yaml"))
        .map(|(_, o)| o)
        .unwrap_or_default();
    assert_eq!(objs.len(), 1);
    let inputs = vec![
        FileInput {
            path: "image.yaml".into(),
            state: FileState::Deleted,
        },
        FileInput {
            path: "app.yaml".into(),
            state: FileState::Loaded(objs),
        },
    ];
    let d = desired(&inputs, &actual);
    assert!(
        d.images.keys().all(|k| !k.contains("busybox:latest")),
        "{:?}",
        d.images.keys().collect::<Vec<_>>()
    );
    let p = plan(&d, &actual);
    assert!(
        p.steps
            .iter()
            .all(|s| s.change.name() != "app" && !matches!(s.change, Change::PullImage { .. })),
        "{:?}",
        p.steps.iter().map(Step::summary).collect::<Vec<_>>()
    );
    // What it runs on stays (not removed as "no longer used by any manifest").
    assert!(
        p.held
            .iter()
            .any(|h| h.name == "docker-archive:/images/busybox.tar"
                && h.reason == "used by app, which is kept"),
        "{:?}",
        p.held
    );
}

#[test]
fn missing_file_without_seen_deletion_removes_nothing() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    // The directory reads as empty (say, a mount not up yet): no inputs at all.
    let p = plan(&desired(&[], &actual), &actual);
    assert!(p.is_empty(), "{:?}", p.steps);
    let held: Vec<&str> = p.held.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(held, ["127.0.0.1:5000/busybox:latest", "data", "db", "web"]);
    let web = p.held.iter().find(|h| h.name == "web").expect("web held");
    assert_eq!(
        web.reason,
        "its file shop.yaml is missing but its deletion was not seen; kept"
    );
}

#[test]
fn stopped_by_user_is_not_started_and_stays_stopped_on_recreate() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    for c in actual.containers.values_mut() {
        c.state = ContainerState::StoppedByUser;
    }
    assert!(
        plan(
            &desired(&loaded_inputs(&[("shop.yaml", &shop())]), &actual),
            &actual
        )
        .is_empty()
    );
    let changed = shop().replace("LOG_LEVEL: info", "LOG_LEVEL: warn");
    let inputs = loaded_inputs(&[("shop.yaml", &changed)]);
    let p = plan(&desired(&inputs, &actual), &actual);
    assert!(matches!(
        p.steps[0].change,
        Change::RecreateContainer { start: false, .. }
    ));
    apply(&mut actual, &p, &inputs);
    assert_eq!(
        actual.containers["web"].state,
        ContainerState::StoppedByUser
    );
}

#[test]
fn created_but_never_started_is_started_exited_is_left_to_restart_policy() {
    let mut actual = Actual::default();
    let inputs = loaded_inputs(&[("shop.yaml", &shop())]);
    converge(&inputs, &mut actual);
    set_state(&mut actual, "db", ContainerState::Exited);
    set_state(&mut actual, "web", ContainerState::Created);
    let steps = converge(&inputs, &mut actual);
    assert_eq!(steps, ["start web: created but never started"]);
}

#[test]
fn network_change_tears_down_users_and_recreates_them_after() {
    let text = format!(
        "{}---\n{}",
        network("net", "10.9.0.0/24"),
        container("web", "networks: [net]")
    );
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("n.yaml", &text)]), &mut actual);
    let changed = text.replace("10.9.0.0/24", "10.9.8.0/24");
    let steps = converge(&loaded_inputs(&[("n.yaml", &changed)]), &mut actual);
    assert_eq!(
        steps,
        [
            "stop web: network net is recreated",
            "remove web: network net is recreated",
            "remove net: gateway 10.9.0.1 -> 10.9.8.1; subnet 10.9.0.0/24 -> 10.9.8.0/24",
            "create net: gateway 10.9.0.1 -> 10.9.8.1; subnet 10.9.0.0/24 -> 10.9.8.0/24",
            "create web: network net is recreated",
            "start web: new container",
        ]
    );
}

#[test]
fn unlinked_target_is_removed_after_its_user_is_recreated() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    let text = format!(
        "{}---\n{}",
        volume("data", "retain"),
        container("web", "env: {LOG_LEVEL: info}\nresources: {memory: 256Mi}")
    );
    let steps = converge(&loaded_inputs(&[("shop.yaml", &text)]), &mut actual);
    assert_eq!(
        steps,
        [
            "recreate web: links -db:db",
            "stop db: no longer in shop.yaml",
            "remove db: no longer in shop.yaml",
        ]
    );
}

#[test]
fn orphans_without_owner_are_removed() {
    let mut actual = Actual::default();
    converge(&loaded_inputs(&[("shop.yaml", &shop())]), &mut actual);
    actual.owners.clear();
    let steps = converge(&[], &mut actual);
    assert_eq!(steps[0], "stop web: not in any manifest");
}

#[test]
fn reason_strings() {
    let base = "env: {A: \"1\", GONE: x}\nports: [\"8080:80\"]\ncommand: [a, b]\nrestart: always\n\
                healthcheck: {command: [/bin/check], interval: 10s}\nresources: {cpus: 0.5}";
    let table: &[(&str, &str, &[&str])] = &[
        (
            "env: {A: \"1\", GONE: x}",
            "env: {A: \"2\", NEW: z}",
            &["env.A changed", "env.GONE removed", "env.NEW added"],
        ),
        (
            "ports: [\"8080:80\"]",
            "ports: [\"127.0.0.1:9090:80/udp\"]",
            &["ports +127.0.0.1:9090:80/udp -8080:80/tcp"],
        ),
        (
            "command: [a, b]",
            "command: [c]",
            &["command [a, b] -> [c]"],
        ),
        (
            "restart: always",
            "restart: on-failure:3",
            &["restart always -> on-failure:3"],
        ),
        (
            "interval: 10s",
            "interval: 1m",
            &["healthcheck.interval 10s -> 1m"],
        ),
        ("cpus: 0.5", "cpus: 1.25", &["resources.cpus 0.5 -> 1.25"]),
    ];
    for (from, to, want) in table {
        let a = container("web", base);
        let b = container("web", &base.replace(from, to));
        let d1 = desired(&loaded_inputs(&[("w.yaml", &a)]), &Actual::default());
        let d2 = desired(&loaded_inputs(&[("w.yaml", &b)]), &Actual::default());
        let got = diff::container(
            &d1.containers["web"].value.config,
            &d2.containers["web"].value.config,
        )
        .all();
        assert_eq!(got, *want, "{from} -> {to}");
    }
    assert_eq!(diff::cpus(2_000_000_000), "2");
    assert_eq!(
        diff::short_digest(&format!("sha256:{}", "ab".repeat(32))),
        "sha256:abababababab.."
    );
    assert_eq!(diff::show("x".repeat(100)).len(), diff::MAX_VALUE);
}

#[test]
fn manifests_round_trip_through_the_store_format() {
    let objs = manifests(&[("shop.yaml", &shop())]).remove(0).1;
    let v = store::objects_value(&objs);
    let rec = crate::store::ManifestFileRecord {
        path: "shop.yaml".into(),
        content_hash: None,
        objects: v,
        last_error: None,
        loaded_at: None,
        applied_at: None,
    };
    assert_eq!(store::last_good(&rec).expect("last good"), objs);
}
