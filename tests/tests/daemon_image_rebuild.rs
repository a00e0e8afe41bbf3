//! Issue 19 item 3: a layout rebuilt in place (same path, same tag) is imported again and the
//! container using it recreated on the new image, the plan reason naming the old and new
//! digests, and the replaced image leaves the graph; the same after `agent image pull` moved a
//! registry tag (re-pushed to a docker-registry on 127.0.0.1).

use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::graph::{Registry, agent_ok, images};
use agent_e2e::layout::{Entry, Layout};

fn short(d: &str) -> String {
    format!("{}..", &d[..19])
}

fn container(image: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: app\nspec:\n  image: {image}\n  \
         command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n"
    )
}

fn running_id(d: &Daemon, not: Option<&str>) -> String {
    d.wait_for("app running", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let r = d.ps_row("app");
        let id = r["id"].as_str().unwrap_or_default().to_string();
        (r["state"] == "running" && Some(id.as_str()) != not).then_some(id)
    })
}

fn recreate_reasons(d: &Daemon) -> Vec<String> {
    d.events()
        .into_iter()
        .filter(|e| e["object"] == "container/app" && e["kind"] == "container.recreate")
        .map(|e| {
            e["message"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn a_layout_rebuilt_in_place_is_used() {
    if !require_root("a_layout_rebuilt_in_place_is_used") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("rebuild", "");
    let mut layout = Layout::new(&d.dir.path().join("app"));
    let v1 = layout.add(
        "1",
        &[Entry::file("etc/which", b"v1\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    d.start();
    d.write(
        "app.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: app\nspec:\n  ociLayout:\n    path: {}\n    tag: \"1\"\n---\n{}",
            layout.dir.display(),
            container("app")
        ),
    );
    let id1 = running_id(&d, None);
    assert!(d.sh_in(&id1, "grep -qx v1 /etc/which"));

    // Rebuilt at the same path and tag: nothing in the manifests changed.
    let v2 = layout.add(
        "1",
        &[Entry::file("etc/which", b"v2\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    let id2 = running_id(&d, Some(&id1));
    assert!(
        d.sh_in(&id2, "grep -qx v2 /etc/which"),
        "recreated on the old image"
    );
    let reasons = recreate_reasons(&d);
    let want = format!("image {} -> {}", short(&v1.config), short(&v2.config));
    assert!(
        reasons.iter().any(|r| r.contains(&want)),
        "{want} not in {reasons:?}"
    );
    let imports: Vec<String> = d
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "image.import")
        .map(|e| {
            e["message"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        imports.iter().any(|r| r.contains("changed on disk")
            && r.contains(&short(&v1.config))
            && r.contains(&short(&v2.config))),
        "{imports:?}"
    );
    // The replaced image left the graph.
    let ids: Vec<String> = images(&d.state)
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&v2.config));
    // Nothing changes without a rebuild.
    let _ = d.cli(&["apply"]);
    assert_eq!(d.ps_row("app")["id"], id2.as_str());
    d.stop();
}

#[test]
fn a_registry_tag_moved_by_image_pull_is_used() {
    if !require_root("a_registry_tag_moved_by_image_pull_is_used") {
        return;
    }
    require_images();
    let reg = Registry::start();
    let mut d = Daemon::prepare("repull", "");
    let mut layout = Layout::new(&d.dir.path().join("src"));
    layout.add(
        "v1",
        &[Entry::file("etc/which", b"v1\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    layout.add(
        "v2",
        &[Entry::file("etc/which", b"v2\n", 0, 0, 0o644)],
        serde_json::json!({}),
    );
    let lp = layout.dir.to_string_lossy().into_owned();
    reg.push(&format!("oci:{lp}:v1"), "backend:2", false);
    let reference = format!("{}/backend:2", reg.host());
    d.start();
    d.write(
        "app.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: backend\nspec:\n  registry:\n    reference: {reference}\n    insecure: true\n---\n{}",
            container("backend")
        ),
    );
    let id1 = running_id(&d, None);
    assert!(d.sh_in(&id1, "grep -qx v1 /etc/which"));
    let old = images(&d.state)[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Re-push the tag, pull it by hand: the next apply recreates the container on it.
    reg.push(&format!("oci:{lp}:v2"), "backend:2", false);
    let state = d.state.to_string_lossy().into_owned();
    agent_ok(&[
        "image",
        "pull",
        "-q",
        "--insecure-registry",
        &reg.host(),
        "--state-dir",
        &state,
        &reference,
    ]);
    let id2 = running_id(&d, Some(&id1));
    assert!(
        d.sh_in(&id2, "grep -qx v2 /etc/which"),
        "recreated on the old digest"
    );
    let imgs = images(&d.state);
    assert_eq!(imgs.len(), 1, "the replaced image stayed: {imgs:?}");
    let new = imgs[0]["id"].as_str().unwrap_or_default().to_string();
    assert_ne!(new, old);
    let reasons = recreate_reasons(&d);
    let want = format!("image {} -> {}", short(&old), short(&new));
    assert!(
        reasons.iter().any(|r| r.contains(&want)),
        "{want} not in {reasons:?}"
    );
    d.stop();
}
