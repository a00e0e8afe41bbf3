//! End-to-end: `kind: Secret` (issue 17 item 1). A database password kept in a root-only file
//! reaches the container as `/run/secrets/db-password` (read-only), as a second file with its
//! own owner and mode, and as `DB_PASSWORD` (`secretEnv`); the container prints only SHA-256
//! sums of what it read, which the test compares with the value's. The value never shows in the
//! agent's log (debug level), `agent events` (text and JSON), `agent plan` (text and JSON), the
//! SQLite store files, `agent inspect` or the container's own logs; the bundle's copy is in a
//! root-only directory. A new value recreates the container with `secret db-password changed`.
//! A secret file that others can read is refused (validate and daemon), naming the file and the
//! fix. On the old code the Secret kind was unknown: validate refused the manifests and no
//! container ran.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use sha2::{Digest, Sha256};

const PW1: &str = "pw-one-4f7a2c91e0";
const PW2: &str = "pw-two-8d3e1b5a77";

const SCRIPT: &str = "echo file=$(sha256sum /run/secrets/db-password | cut -d' ' -f1); \
                      echo env=$(printf %s \"$DB_PASSWORD\" | sha256sum | cut -d' ' -f1); \
                      echo other=$(sha256sum /run/secrets/pw2 | cut -d' ' -f1) \
                      $(stat -c %u:%g:%a /run/secrets/pw2); \
                      (echo x > /run/secrets/db-password) 2>/dev/null || echo read-only; \
                      echo done; exec sleep 1000";

fn sha(v: &str) -> String {
    hex(&Sha256::digest(v.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn secret_manifest(file: &Path) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Secret\nmetadata:\n  name: db-password\nspec:\n  file: {}\n",
        file.display()
    )
}

fn db_manifest() -> String {
    container_manifest(
        "db",
        SCRIPT,
        "  secrets:\n    - db-password\n    - {source: db-password, target: pw2, uid: 70, gid: 71, mode: \"0440\"}\n  secretEnv: {DB_PASSWORD: db-password}\n",
    )
}

fn write_secret(path: &Path, value: &str, mode: u32) {
    std::fs::write(path, value).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(args: &[&str]) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap_or_else(|e| panic!("agent {args:?}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn logs(d: &Daemon, name: &str) -> String {
    let state = d.state.to_string_lossy().into_owned();
    run(&["logs", name, "--state-dir", &state])
}

fn no_value(what: &str, text: &[u8]) {
    for v in [PW1, PW2] {
        let found = text.windows(v.len()).any(|w| w == v.as_bytes());
        assert!(!found, "{what} shows the secret value {v}");
    }
}

/// Every `<state>/exec/*/secrets` directory.
fn bundle_secret_dirs(state: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(state.join("exec")) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path().join("secrets"))
        .filter(|p| p.is_dir())
        .collect()
}

#[test]
fn secret_reaches_the_container_and_nothing_else() {
    if !require_root("secret_reaches_the_container_and_nothing_else") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("secret", "", true);
    let sdir = d.dir.path().join("secrets");
    std::fs::create_dir(&sdir).expect("mkdir");
    std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let pw = sdir.join("db.pw");
    write_secret(&pw, PW1, 0o600);
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("secret.yaml", &secret_manifest(&pw));
    d.write("db.yaml", &db_manifest());
    let manifests = d.manifests.to_string_lossy().into_owned();
    let state = d.state.to_string_lossy().into_owned();
    let v = run(&["validate", &manifests]);
    assert!(!v.contains("error"), "{v}");
    d.start();
    let text = d.wait_for("db's output", Duration::from_secs(60), || {
        let t = logs(&d, "db");
        t.contains("done").then_some(t)
    });
    assert!(text.contains(&format!("file={}", sha(PW1))), "{text}");
    assert!(text.contains(&format!("env={}", sha(PW1))), "{text}");
    assert!(
        text.contains(&format!("other={} 70:71:440", sha(PW1))),
        "{text}"
    );
    assert!(text.contains("read-only"), "{text}");
    let first = d.ps_row("db")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dirs = bundle_secret_dirs(&d.state);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    for dir in &dirs {
        let mode = std::fs::metadata(dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    let inspect = d.cli_ok(&["inspect", "db"]);
    assert!(inspect.contains("db-password"), "{inspect}");
    no_value("agent inspect", inspect.as_bytes());

    // A new value: planned as `secret db-password changed`, then the container is recreated.
    d.stop();
    write_secret(&pw, PW2, 0o600);
    let plan = run(&["plan", &manifests, "--state-dir", &state]);
    assert!(plan.contains("secret db-password changed"), "{plan}");
    no_value("agent plan", plan.as_bytes());
    let plan_json = run(&[
        "plan",
        &manifests,
        "--state-dir",
        &state,
        "--output",
        "json",
    ]);
    assert!(
        plan_json.contains("secret db-password changed"),
        "{plan_json}"
    );
    no_value("agent plan -o json", plan_json.as_bytes());
    d.start();
    d.wait_for("db recreated", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let r = d.try_ps_row("db")?;
        (r["state"] == "running" && r["id"].as_str() != Some(first.as_str())).then_some(())
    });
    let text = d.wait_for("db's new output", Duration::from_secs(60), || {
        let t = logs(&d, "db");
        t.contains(&format!("env={}", sha(PW2))).then_some(t)
    });
    assert!(text.contains(&format!("file={}", sha(PW2))), "{text}");
    let reason = d
        .events_of("db", "container.recreate")
        .last()
        .map(|e| e["message"]["reason"].to_string())
        .unwrap_or_default();
    assert!(reason.contains("secret db-password changed"), "{reason}");
    let events = d.cli_ok(&["events", "-n", "10000"]);
    no_value("agent events", events.as_bytes());
    no_value(
        "agent events -o json",
        d.cli_ok(&["events", "-n", "10000", "-o", "json"])
            .as_bytes(),
    );
    no_value("agent logs db", logs(&d, "db").as_bytes());

    // Others may read the file: refused by validate and by the daemon, with the fix; the
    // container keeps running as it was.
    let id = d.ps_row("db")["id"].clone();
    write_secret(&pw, PW2, 0o644);
    let v = run(&["validate", &manifests]);
    assert!(
        v.contains(&pw.display().to_string())
            && v.contains("mode 0644")
            && v.contains(&format!(
                "chown root:root {p} && chmod 600 {p}",
                p = pw.display()
            )),
        "{v}"
    );
    let status = d.wait_for("secret.yaml refused", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        let s = d.file_status("secret.yaml")?;
        s.to_string().contains("chmod 600").then_some(s)
    });
    no_value("agent status", status.to_string().as_bytes());
    assert_eq!(d.ps_row("db")["id"], id);

    d.remove_all_and_wait(Duration::from_secs(60));
    assert!(bundle_secret_dirs(&d.state).is_empty());
    d.stop();
    no_value("the agent's log", d.log_text().as_bytes());
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        if let Ok(bytes) = std::fs::read(d.state.join(f)) {
            no_value(f, &bytes);
        }
    }
}
