//! End-to-end: `envFiles` (issue 17 item 2).
//! - A container gets the variables of a file beside its manifest (`./db.env`) and of one outside
//!   the watched directory (absolute path): a later file wins over an earlier one, `env` over
//!   both.
//! - The values never reach `agent plan`, `agent apply`, `agent inspect`, the events or the
//!   agent's log (inspect shows the keys).
//! - Changing the file outside the directory (no watcher event) is noticed at the next
//!   `agent apply` and recreates the container, with the reason `envFile /.../common.env changed`.
//! - A file others may read, or one that is missing, fails `agent validate` at the manifest's
//!   `envFiles` entry (file:line:col) with the fix / the path.
//!
//! Fails on the old code: the field was unknown, validate refused the manifest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const DB_SECRET: &str = "db-s3cret-81f2";
const COMMON_OLD: &str = "common-old-6a0c";
const COMMON_NEW: &str = "common-new-3d9e";

fn write_env(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn validate(d: &Daemon) -> (bool, String) {
    let out = Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(&d.manifests)
        .output()
        .unwrap_or_else(|e| panic!("agent validate: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn no_value(what: &str, text: &str) {
    for v in [DB_SECRET, COMMON_OLD, COMMON_NEW] {
        assert!(!text.contains(v), "{what} shows the value {v}:\n{text}");
    }
}

#[test]
fn env_files_feed_the_container_and_their_changes_recreate_it() {
    if !require_root("env_files_feed_the_container_and_their_changes_recreate_it") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("envfiles", "");
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let common = outside.join("common.env");
    write_env(
        &d.path("db.env"),
        &format!("# the database\nDB_PASSWORD={DB_SECRET}\nLAYER=first\nOVERRIDE=from-file\n"),
    );
    write_env(
        &common,
        &format!("export COMMON='{COMMON_OLD}'\nLAYER=second\n"),
    );
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    let manifest = container_manifest(
        "app",
        "echo \"DB=$DB_PASSWORD C=$COMMON L=$LAYER O=$OVERRIDE\"; exec sleep 1000",
        &format!(
            "  envFiles: [./db.env, {}]\n  env: {{OVERRIDE: from-env}}\n",
            common.display()
        ),
    );
    d.write("app.yaml", &manifest);
    let (ok, text) = validate(&d);
    assert!(ok, "{text}");
    d.start();
    let first = d.wait_for("app's output", Duration::from_secs(60), || {
        let row = d.try_ps_row("app")?;
        let id = row["id"].as_str()?.to_string();
        logs(&d, "app").contains("DB=").then_some(id)
    });
    assert_eq!(
        logs(&d, "app").trim(),
        format!("DB={DB_SECRET} C={COMMON_OLD} L=second O=from-env")
    );
    let inspect = d.cli_ok(&["inspect", "app"]);
    assert!(inspect.contains("DB_PASSWORD"), "{inspect}");
    no_value("agent inspect", &inspect);

    // A change outside the watched directory: no file event; `agent apply` reads it.
    write_env(
        &common,
        &format!("export COMMON='{COMMON_NEW}'\nLAYER=second\n"),
    );
    let plan = Command::new(agent_e2e::agent_bin())
        .arg("plan")
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent plan: {e}"));
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let reason = format!("envFile {} changed", common.display());
    assert!(plan.contains(&reason), "{plan}");
    no_value("agent plan", &plan);
    let apply = d.cli_ok(&["apply"]);
    no_value("agent apply", &apply);
    d.wait_for("app recreated", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let row = d.try_ps_row("app")?;
        (row["state"] == "running" && row["id"].as_str() != Some(first.as_str())).then_some(())
    });
    d.wait_for("app's new output", Duration::from_secs(60), || {
        logs(&d, "app").contains(COMMON_NEW).then_some(())
    });
    let events = d.cli_ok(&["events", "-n", "10000"]);
    assert!(events.contains(&reason), "{events}");
    no_value("agent events", &events);
    no_value("agent inspect", &d.cli_ok(&["inspect", "app"]));

    // Readable by others: refused at the entry, with the fix.
    std::fs::set_permissions(d.path("db.env"), std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let (ok, text) = validate(&d);
    assert!(!ok, "{text}");
    let at = format!("{}:10:14: spec.envFiles[0]", d.path("app.yaml").display());
    assert!(text.contains(&at), "{text}");
    assert!(text.contains("lets others read it"), "{text}");
    assert!(text.contains("chmod o-rwx"), "{text}");
    std::fs::set_permissions(d.path("db.env"), std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    // Missing: the path is named.
    std::fs::remove_file(&common).unwrap_or_else(|e| panic!("{e}"));
    let (ok, text) = validate(&d);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("env file {}: no such file", common.display())),
        "{text}"
    );

    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
    no_value("the agent's log", &d.log_text());
}
