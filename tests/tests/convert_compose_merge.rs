//! `agent convert compose` on a project of several compose files, through the real binary, as
//! `docker compose` reads them: the override file beside the compose file merged in when no file
//! is named, several `-f` files merged in order, a service `extends` one of another file, and
//! `!reset`/`!override` (the Compose specification's merge rules). The manifests written are
//! read back, `agent validate` accepts them, and the report names each key at its place in the
//! file it is written in. Nothing runs: no root, no network.

use std::path::Path;
use std::process::{Command, Output};

use agent::manifest::Manifest;
use serde_json::{Value, json};

/// A web app with a database (compose.yaml), the developer's override beside it
/// (docker-compose.override.yml: a debug port, an env var, the sources bind-mounted, a worker
/// that extends a service of shared/common.yaml), and a production file for `-f`.
fn project() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("agent-convert-merge-")
        .tempdir()
        .expect("tempdir");
    let d = tmp.path();
    for dir in ["src", "shared/scripts"] {
        std::fs::create_dir_all(d.join(dir)).expect("mkdir");
    }
    let files = [
        (
            "compose.yaml",
            "name: shop\nservices:\n  web:\n    image: busybox:1.36\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    ports: [\"127.0.0.1:8080:8080\"]\n    environment:\n      MODE: production\n      DB_HOST: db\n    depends_on: [db]\n  db:\n    image: postgres:16\n    environment: {POSTGRES_DB: shop}\n    volumes: [\"db-data:/var/lib/postgresql/data\"]\nvolumes:\n  db-data: {}\n",
        ),
        (
            "docker-compose.override.yml",
            "services:\n  web:\n    ports: [\"127.0.0.1:9229:9229\", \"127.0.0.1:8080:8080\"]\n    environment:\n      MODE: development\n      DEBUG: \"1\"\n    volumes: [\"./src:/srv/app\"]\n  worker:\n    extends: {file: shared/common.yaml, service: worker-base}\n    command: [\"sh\", \"-c\", \"work\"]\n",
        ),
        (
            "shared/common.yaml",
            "services:\n  worker-base:\n    image: busybox:1.36\n    environment: [QUEUE=jobs]\n    volumes: [\"./scripts:/scripts:ro\"]\n    restart: unless-stopped\n    tty: true\n",
        ),
        (
            "prod.yaml",
            "services:\n  web:\n    ports: !override [\"127.0.0.1:80:8080\"]\n    environment:\n      DB_HOST: !reset null\n      MODE: prod\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    pid: host\n  db:\n    volumes: [\"./pgdata:/var/lib/postgresql/data\"]\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(d.join(name), text).expect("write");
    }
    tmp
}

/// `agent convert compose <args>` in `dir`, with a clean environment.
fn convert(dir: &Path, args: &[&str]) -> Output {
    Command::new(agent_e2e::agent_bin())
        .args(["convert", "compose"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agent convert")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Converts into `dir/out` with `--report json`; the report.
fn convert_ok(dir: &Path, files: &[&str]) -> Value {
    let mut args = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.extend(["-o", "out", "--report", "json"]);
    let o = convert(dir, &args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stderr).unwrap_or_else(|e| panic!("report: {e}: {}", text(&o)))
}

/// The spec of each Container written into `out`, by name, as JSON.
fn containers(out: &Path) -> std::collections::BTreeMap<String, Value> {
    let mut found = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(out).expect("out").flatten() {
        let bytes = std::fs::read(e.path()).expect("read");
        let file = agent::manifest::parse_bytes(&e.path(), &bytes);
        for o in file
            .outcome
            .unwrap_or_else(|d| panic!("{}: {d:?}", e.path().display()))
        {
            if let Manifest::Container(c) = o.manifest {
                found.insert(
                    c.metadata.name.clone(),
                    serde_json::to_value(&c.spec).expect("json"),
                );
            }
        }
    }
    found
}

fn validate(out: &Path) {
    let o = Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agent validate");
    assert!(o.status.success(), "agent validate: {}", text(&o));
}

fn ports(spec: &Value) -> Vec<(u64, u64)> {
    spec["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    (
                        p["hostPort"].as_u64().unwrap_or(0),
                        p["containerPort"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (file, line) of the key the report lists as not carried over.
fn not_carried_at(report: &Value, key: &str) -> (String, u64) {
    let n = report["notCarried"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["key"] == key))
        .unwrap_or_else(|| panic!("{key} not reported: {report:#}"));
    (
        n["file"].as_str().unwrap_or_default().to_string(),
        n["line"].as_u64().unwrap_or(0),
    )
}

#[test]
fn the_override_file_beside_the_compose_file_is_merged_and_extends_is_resolved() {
    let tmp = project();
    let d = tmp.path();
    let report = convert_ok(d, &[]);
    let out = d.join("out");
    let specs = containers(&out);
    assert_eq!(
        specs.keys().collect::<Vec<_>>(),
        ["shop-db", "shop-web", "shop-worker"]
    );
    let web = &specs["shop-web"];
    // The override's port appended, the one written twice kept once; its env merged by key.
    assert_eq!(ports(web), [(8080, 8080), (9229, 9229)]);
    assert_eq!(
        web["env"],
        json!({"MODE": "development", "DEBUG": "1", "DB_HOST": "db"})
    );
    assert_eq!(
        web["volumes"],
        json!([{"bind": d.join("src"), "target": "/srv/app"}])
    );
    assert_eq!(web["command"], json!(["httpd", "-f", "-p", "8080"]));
    // worker: shared/common.yaml's worker-base, its bind relative to shared/, its own command.
    let worker = &specs["shop-worker"];
    assert_eq!(worker["image"], "busybox:1.36");
    assert_eq!(worker["env"], json!({"QUEUE": "jobs"}));
    assert_eq!(worker["command"], json!(["sh", "-c", "work"]));
    assert_eq!(worker["restart"], "unless-stopped");
    assert_eq!(
        worker["volumes"],
        json!([{"bind": d.join("shared/scripts"), "target": "/scripts", "readOnly": true}])
    );
    // Each key is reported in the file it is written in; the override file is no longer a
    // "not carried over" note, and neither is `extends`.
    assert_eq!(
        not_carried_at(&report, "services.worker.tty"),
        ("./shared/common.yaml".to_string(), 7)
    );
    let keys: Vec<&str> = report["notCarried"]
        .as_array()
        .expect("notCarried")
        .iter()
        .filter_map(|n| n["key"].as_str())
        .collect();
    assert_eq!(keys, ["services.worker.tty"], "{report:#}");
    assert_eq!(
        report["files"],
        json!([
            "./compose.yaml",
            "./docker-compose.override.yml",
            "./shared/common.yaml"
        ])
    );
    let worker_file =
        std::fs::read_to_string(out.join("container-shop-worker.yaml")).expect("read");
    assert!(
        worker_file.starts_with(
            "# Converted by `agent convert compose` from ./docker-compose.override.yml (services.worker, line 8)."
        ),
        "{worker_file}"
    );
    validate(&out);
}

#[test]
fn several_f_files_merge_in_order_with_reset_and_override() {
    let tmp = project();
    let d = tmp.path();
    let report = convert_ok(d, &["compose.yaml", "prod.yaml"]);
    let specs = containers(&d.join("out"));
    // Named files only: the override file beside them is not read, as with `docker compose -f`.
    assert_eq!(specs.keys().collect::<Vec<_>>(), ["shop-db", "shop-web"]);
    let web = &specs["shop-web"];
    assert_eq!(ports(web), [(80, 8080)], "!override replaces the ports");
    assert_eq!(
        web["env"],
        json!({"MODE": "prod"}),
        "!reset takes DB_HOST out"
    );
    assert_eq!(
        web["command"],
        json!(["httpd", "-f", "-p", "8080", "-h", "/www"])
    );
    // The volume of db replaced by the one at the same target.
    assert_eq!(
        specs["shop-db"]["volumes"],
        json!([{"bind": d.join("pgdata"), "target": "/var/lib/postgresql/data"}])
    );
    assert_eq!(
        not_carried_at(&report, "services.web.pid"),
        ("prod.yaml".to_string(), 8)
    );
    validate(&d.join("out"));

    // In the text report too, each key at file:line:col.
    let o = convert(d, &["-f", "compose.yaml", "-f", "prod.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("agent: converted compose.yaml + prod.yaml (project shop)")
            && err.contains("  prod.yaml:8:5: services.web.pid: "),
        "{err}"
    );
}

#[test]
fn an_extends_cycle_or_a_missing_service_is_refused_at_the_extends_key() {
    let tmp = project();
    let d = tmp.path();
    std::fs::write(
        d.join("cycle.yaml"),
        "services:\n  a:\n    image: x:1\n    extends: b\n  b:\n    extends: {file: shared/loop.yaml, service: c}\n",
    )
    .expect("write");
    std::fs::write(
        d.join("shared/loop.yaml"),
        "services:\n  c:\n    extends: {file: ../cycle.yaml, service: a}\n",
    )
    .expect("write");
    let o = convert(d, &["-f", "cycle.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(
            "agent: cycle.yaml:4:5: `extends` goes round in a cycle: a (cycle.yaml) -> b (cycle.yaml) -> c (shared/loop.yaml) -> a (cycle.yaml)"
        ),
        "{err}"
    );
    std::fs::write(
        d.join("missing.yaml"),
        "services:\n  web:\n    extends: {file: shared/common.yaml, service: nope}\n",
    )
    .expect("write");
    let o = convert(d, &["-f", "compose.yaml", "-f", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "missing.yaml:3:5: extends: no service \"nope\" in shared/common.yaml (it has worker-base)"
        ),
        "{err}"
    );
    assert!(!d.join("out").exists());
}
