//! `agent convert compose` through the real binary (issue 18 item 9), on the compose files of
//! well-known sample projects written into tests/compose/ from their public form: a proxy in front
//! of a web app with a database and a secret (awesome-compose nginx-flask-mysql), a web app with a
//! database (wordpress-mysql), a proxy in front of an app (traefik-golang), a queue with a
//! worker (example-voting-app) and a proxy, an app, a database and a message queue
//! (nginx-golang-postgres-rabbitmq). Each converts, every key that is not carried over is reported
//! with its line, and `agent validate` accepts the result. Compose's interpolation is checked on
//! a file of the test's own. nginx-flask-mysql then runs: the converted manifests with the
//! busybox test image and busybox commands substituted, its start conditions, health checks,
//! secret, volume, two networks, service names and published ports at work.
//!
//! Each test copies its project into its own temporary directory (the converter resolves paths
//! against it, and the secret file must be root's with mode 0600 there). Traffic goes to
//! 127.0.0.1 only.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agent::convert::Converted;
use agent::manifest::Manifest;
use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::graph::free_port;
use agent_e2e::network::TestNet;
use serde_json::{Value, json};

/// Copies tests/compose/`project` into a fresh directory; the secret file gets mode 0600.
fn copy_project(project: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("agent-convert-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dst = tmp.path().join(project);
    copy_dir(
        &agent_e2e::workspace_root()
            .join("tests/compose")
            .join(project),
        &dst,
    );
    let secret = dst.join("db/password.txt");
    if secret.exists() {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    (tmp, dst)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for e in std::fs::read_dir(from).expect("read fixture").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// `agent convert compose <args>` with a clean environment (no COMPOSE_* or project variables
/// from the caller) plus `env`.
fn convert(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(agent_e2e::agent_bin());
    c.args(["convert", "compose"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run agent convert")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Converts `file` into `out` with `--report json`; the report.
fn convert_to(file: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        file.to_str().expect("path"),
        "-o",
        out.to_str().expect("path"),
        "--report",
        "json",
    ];
    args.extend(extra);
    let o = convert(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        o.stdout.is_empty(),
        "with -o nothing goes to stdout: {}",
        text(&o)
    );
    serde_json::from_slice(&o.stderr)
        .unwrap_or_else(|e| panic!("report not JSON: {e}: {}", text(&o)))
}

/// `(key, line)` of every key the report lists as not carried over.
fn not_carried(report: &Value) -> Vec<(String, u64)> {
    report["notCarried"]
        .as_array()
        .expect("notCarried")
        .iter()
        .map(|n| {
            (
                n["key"].as_str().unwrap_or_default().to_string(),
                n["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn validate(dir: &Path) -> Output {
    Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agent validate")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn sample_projects_convert_report_what_is_left_and_validate() {
    if !require_root("sample_projects_convert_report_what_is_left_and_validate") {
        return;
    }
    /// Project, the files written (`container-X` is the Container of service X, named
    /// `<project>-X` as Compose names it), the keys not carried over with their lines.
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, u64)]);
    let cases: [Case; 5] = [
        (
            "nginx-golang-postgres-rabbitmq",
            &[
                "secret-db-password.yaml",
                "volume-nginx-golang-postgres-rabbitmq-db-data.yaml",
                "network-nginx-golang-postgres-rabbitmq-default.yaml",
                "container-backend.yaml",
                "container-db.yaml",
                "container-mq.yaml",
                "container-proxy.yaml",
            ],
            &[("services.backend.build", 5)],
        ),
        (
            "nginx-flask-mysql",
            &[
                "secret-db-password.yaml",
                "volume-nginx-flask-mysql-db-data.yaml",
                "network-nginx-flask-mysql-backnet.yaml",
                "network-nginx-flask-mysql-frontnet.yaml",
                "container-db.yaml",
                "container-backend.yaml",
                "container-proxy.yaml",
            ],
            &[
                ("services.db.logging.options.labels", 34),
                ("services.backend.build", 37),
                ("services.backend.logging.options.labels", 62),
                ("services.proxy.build", 65),
                ("services.proxy.logging.options.labels", 85),
            ],
        ),
        (
            "wordpress-mysql",
            &[
                "volume-wordpress-mysql-db-data.yaml",
                "volume-wordpress-mysql-wp-data.yaml",
                "network-wordpress-mysql-default.yaml",
                "container-db.yaml",
                "container-wordpress.yaml",
                "container-phpmyadmin.yaml",
            ],
            &[],
        ),
        (
            "traefik-golang",
            &[
                "network-traefik-golang-default.yaml",
                "container-frontend.yaml",
                "container-backend.yaml",
            ],
            &[("services.backend.build", 16)],
        ),
        (
            "example-voting-app",
            &[
                "volume-example-voting-app-db-data.yaml",
                "network-example-voting-app-front-tier.yaml",
                "network-example-voting-app-back-tier.yaml",
                "container-vote.yaml",
                "container-result.yaml",
                "container-worker.yaml",
                "container-redis.yaml",
                "container-db.yaml",
            ],
            &[
                ("services.vote.build", 8),
                ("services.result.build", 29),
                ("services.worker.build", 45),
                ("services.seed", 82),
            ],
        ),
    ];
    for (project, files, dropped) in cases {
        let (tmp, dir) = copy_project(project);
        let out = tmp.path().join("out");
        let report = convert_to(&dir.join("compose.yaml"), &out, &[]);
        assert_eq!(report["project"], project);
        let mut written: Vec<String> = std::fs::read_dir(&out)
            .expect("out")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        let mut want: Vec<String> = files
            .iter()
            .map(|f| match f.strip_prefix("container-") {
                Some(service) => format!("container-{project}-{service}"),
                None => f.to_string(),
            })
            .collect();
        want.sort();
        assert_eq!(written, want, "{project}");
        let got = not_carried(&report);
        let want: Vec<(String, u64)> = dropped.iter().map(|(k, l)| (k.to_string(), *l)).collect();
        assert_eq!(got, want, "{project}: {:#}", report["notCarried"]);
        let v = validate(&out);
        assert!(
            v.status.success(),
            "{project}: agent validate: {}",
            text(&v)
        );
    }

    // What each project carries over, read in the written manifests.
    let (tmp, dir) = copy_project("nginx-flask-mysql");
    let out = tmp.path().join("out");
    convert_to(&dir.join("compose.yaml"), &out, &[]);
    let proxy = read(&out, "container-nginx-flask-mysql-proxy.yaml");
    assert!(
        proxy.contains("dependsOn:\n    nginx-flask-mysql-backend:\n      condition: healthy\n"),
        "{proxy}"
    );
    assert!(proxy.contains("# Not carried over:\n#   "), "{proxy}");
    assert!(
        proxy.contains("compose.yaml:65:5: services.proxy.build: the agent does not build images"),
        "{proxy}"
    );
    let db = read(&out, "container-nginx-flask-mysql-db.yaml");
    for want in [
        "image: mariadb:10-focal",
        "- --default-authentication-plugin=mysql_native_password",
        "restart: unless-stopped",
        "mysqladmin ping -h 127.0.0.1 --password=\"$(cat /run/secrets/db-password)\"",
        "startPeriod: 30s",
        "- volume: nginx-flask-mysql-db-data\n    target: /var/lib/mysql",
        "secrets:\n  - source: db-password",
        "MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db-password",
        "maxSize: 10Mi",
    ] {
        assert!(db.contains(want), "{want:?} missing in:\n{db}");
    }
    let secret = read(&out, "secret-db-password.yaml");
    assert!(
        secret.contains(&format!("file: {}", dir.join("db/password.txt").display())),
        "{secret}"
    );

    // The queue of nginx-golang-postgres-rabbitmq keeps one volume at two paths; the proxy's
    // configuration is a read-only bind of the project's file.
    let (tmp, dir) = copy_project("nginx-golang-postgres-rabbitmq");
    let out = tmp.path().join("out");
    convert_to(&dir.join("compose.yaml"), &out, &[]);
    let mq = read(&out, "container-nginx-golang-postgres-rabbitmq-mq.yaml");
    for want in [
        "- volume: nginx-golang-postgres-rabbitmq-db-data\n    target: /var/log/rabbitmq",
        "- volume: nginx-golang-postgres-rabbitmq-db-data\n    target: /var/lib/rabbitmq",
        "hostPort: 15672",
        "RABBITMQ_DEFAULT_USER: root",
    ] {
        assert!(mq.contains(want), "{want:?} missing in:\n{mq}");
    }
    let proxy = read(&out, "container-nginx-golang-postgres-rabbitmq-proxy.yaml");
    let conf = dir.join("proxy/nginx.conf");
    assert!(
        proxy.contains(&format!(
            "- bind: {}\n    target: /etc/nginx/conf.d/default.conf\n    readOnly: true",
            conf.display()
        )),
        "{proxy}"
    );
    assert!(proxy.contains("image: nginx:latest"), "{proxy}");
    assert!(
        read(&out, "container-nginx-golang-postgres-rabbitmq-db.yaml").contains("user: postgres")
    );

    // The seed job of the voting app comes with its profile; its `restart: "no"` is the agent's
    // default, so not written.
    let (tmp, dir) = copy_project("example-voting-app");
    let out = tmp.path().join("out");
    let report = convert_to(&dir.join("compose.yaml"), &out, &["--profile", "seed"]);
    assert!(
        !not_carried(&report)
            .iter()
            .any(|(k, _)| k == "services.seed")
    );
    let seed = read(&out, "container-example-voting-app-seed.yaml");
    assert!(!seed.contains("restart:"), "{seed}");
    assert!(
        seed.contains("dependsOn:\n    example-voting-app-vote:\n      condition: healthy\n"),
        "{seed}"
    );
    let worker = read(&out, "container-example-voting-app-worker.yaml");
    assert!(
        worker.contains("    example-voting-app-db:\n      condition: healthy\n"),
        "{worker}"
    );
    assert!(
        worker.contains("    example-voting-app-redis:\n      condition: healthy\n"),
        "{worker}"
    );
    let redis = read(&out, "container-example-voting-app-redis.yaml");
    assert!(
        redis.contains(&format!("bind: {}", dir.join("healthchecks").display())),
        "{redis}"
    );
    assert!(redis.contains("- /healthchecks/redis.sh"), "{redis}");

    // --strict: the files are written, the exit status says something was left behind.
    let o = convert(
        &[
            dir.join("compose.yaml").to_str().expect("path"),
            "-o",
            tmp.path().join("strict").to_str().expect("path"),
            "--strict",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        tmp.path()
            .join("strict/container-example-voting-app-vote.yaml")
            .exists()
    );
    // An existing file is not replaced without --force.
    let again = convert(
        &[
            dir.join("compose.yaml").to_str().expect("path"),
            "-o",
            out.to_str().expect("path"),
        ],
        &[],
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        text(&again)
    );
}

#[test]
fn interpolation_reads_the_environment_then_dotenv_and_stops_on_a_required_variable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("compose.yaml");
    std::fs::write(
        &file,
        "name: shop\nservices:\n  web:\n    image: \"registry.local:5000/web:${TAG:-1.0}\"\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n      PORT: \"${PORT:-8080}\"\n      LITERAL: \"$$HOME\"\n      FROM_SHELL:\n    ports:\n      - \"127.0.0.1:${HOST_PORT}:${PORT:-8080}\"\n",
    )
    .expect("write compose");
    std::fs::write(
        tmp.path().join(".env"),
        "TAG=2.1\nHOST_PORT=18080\nDB_PASSWORD=from-dotenv\n",
    )
    .expect("write .env");
    let o = convert(
        &[file.to_str().expect("path")],
        &[("TAG", "3.0"), ("FROM_SHELL", "yes")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let yaml = String::from_utf8_lossy(&o.stdout);
    for want in [
        "image: registry.local:5000/web:3.0",
        "DB_PASSWORD: from-dotenv",
        "PORT: \"8080\"",
        "LITERAL: $HOME",
        "FROM_SHELL: \"yes\"",
        "hostIp: \"127.0.0.1\"\n    hostPort: 18080\n    containerPort: 8080",
        "shop-default:\n      aliases:\n      - web\n",
    ] {
        assert!(yaml.contains(want), "{want:?} missing in:\n{yaml}");
    }
    let report = String::from_utf8_lossy(&o.stderr);
    for want in [
        "compose.yaml:4:12: TAG: the environment",
        "compose.yaml:6:20: DB_PASSWORD: .env",
        "compose.yaml:7:13: PORT: the default in the file",
        "compose.yaml:11:9: HOST_PORT: .env",
    ] {
        assert!(report.contains(want), "{want:?} missing in:\n{report}");
    }
    assert!(
        !report.contains("from-dotenv"),
        "values never reach the report:\n{report}"
    );

    std::fs::write(
        &file,
        "services:\n  web:\n    image: \"web:${TAG:?set TAG to the release}\"\n",
    )
    .expect("write compose");
    std::fs::remove_file(tmp.path().join(".env")).expect("rm .env");
    let o = convert(&[file.to_str().expect("path")], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("compose.yaml:3:12: required variable TAG is not set: set TAG to the release"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));
}

/// `GET path` on 127.0.0.1:`port`: the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// The converted manifests of `dir` with the test's substitutions, as (file name, text).
/// `edit` changes a Container's or Network's spec (as JSON) by name.
fn substituted(
    dir: &Path,
    compose: &Path,
    mut edit: impl FnMut(&str, &mut Value),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("out").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).expect("read");
        let file = agent::manifest::parse_bytes(&e.path(), &bytes);
        let objects = file.outcome.unwrap_or_else(|d| panic!("{name}: {d:?}"));
        for o in objects {
            let from = o.source.file.display().to_string();
            let manifest = match o.manifest {
                Manifest::Container(mut c) => {
                    let mut spec = serde_json::to_value(&c.spec).expect("spec");
                    edit(&c.metadata.name, &mut spec);
                    c.spec = serde_json::from_value(spec).expect("edited spec");
                    Manifest::Container(c)
                }
                Manifest::Network(mut n) => {
                    let mut spec = serde_json::to_value(&n.spec).expect("spec");
                    edit(&n.metadata.name, &mut spec);
                    n.spec = serde_json::from_value(spec).expect("edited spec");
                    Manifest::Network(n)
                }
                other => other,
            };
            let c = Converted {
                manifest,
                from,
                file: compose.to_path_buf(),
                line: 1,
                col: 1,
            };
            out.push((name.clone(), agent::convert::render::document(&c)));
        }
    }
    out
}

/// `agent exec NAME -- ARGS` in the fixture's state; its standard output.
fn exec(d: &Daemon, name: &str, args: &[&str]) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&d.state)
        .args([name, "--"])
        .args(args)
        .output()
        .expect("agent exec");
    assert!(
        out.status.success(),
        "agent exec {name} {args:?}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nginx_flask_mysql_runs_converted_with_busybox() {
    let name = "nginx_flask_mysql_runs_converted_with_busybox";
    if !require_root(name) {
        return;
    }
    require_images();
    const PROJECT: &str = "nginx-flask-mysql-";
    let c = |service: &str| format!("{PROJECT}{service}");
    let (tmp, dir) = copy_project("nginx-flask-mysql");
    let compose = dir.join("compose.yaml");
    let out = tmp.path().join("out");
    convert_to(&compose, &out, &[]);
    let v = validate(&out);
    assert!(v.status.success(), "agent validate: {}", text(&v));

    let mut d = Daemon::prepare("convert", "");
    let (backend_port, proxy_port) = (free_port(), free_port());
    let mut nets = BTreeMap::new();
    for (i, net) in ["nginx-flask-mysql-backnet", "nginx-flask-mysql-frontnet"]
        .into_iter()
        .enumerate()
    {
        let (_, cfg) = TestNet::names(d.net.firewall, true);
        let bridge = format!("{}{i}", d.bridge);
        d.extra_bridges.push(bridge.clone());
        nets.insert(net.to_string(), (bridge, cfg.subnet.to_string()));
    }
    let sh = |script: &str| json!(["/bin/sh", "-c", script]);
    // What the substitution changes: the images (busybox), the programs (busybox httpd serving
    // /health where mariadb, the Flask app and nginx listen), db's health check (mysqladmin ->
    // wget), faster health intervals, host ports and networks made the test's own. The health
    // checks of backend and proxy run as converted (busybox wget takes their options).
    let files = substituted(&out, &compose, |name, spec| {
        if let Some((bridge, subnet)) = nets.get(name) {
            spec["bridge"] = json!(bridge);
            spec["subnet"] = json!(subnet);
            spec.as_object_mut().map(|m| m.remove("gateway"));
            return;
        }
        spec["image"] = json!("busybox");
        spec["stopGracePeriod"] = json!("1s");
        for f in ["interval", "startPeriod"] {
            if spec["healthcheck"].get(f).is_some() {
                spec["healthcheck"][f] = json!(if f == "interval" { "500ms" } else { "0s" });
            }
        }
        // Containers are named `nginx-flask-mysql-<service>`.
        match name.strip_prefix(PROJECT).unwrap_or(name) {
            "db" => {
                spec["command"] = sh(
                    "mkdir -p /var/lib/mysql/www && cp /run/secrets/db-password /var/lib/mysql/www/health && exec httpd -f -p 3306 -h /var/lib/mysql/www",
                );
                spec["healthcheck"]["command"] =
                    sh("wget -q --spider http://127.0.0.1:3306/health");
            }
            "backend" => {
                spec["command"] = sh(
                    "mkdir -p /www && echo backend > /www/health && exec httpd -f -p 8000 -h /www",
                );
                spec["ports"] = json!([format!("127.0.0.1:{backend_port}:8000/tcp")]);
            }
            "proxy" => {
                spec["command"] =
                    sh("mkdir -p /www && echo proxy > /www/health && exec httpd -f -p 80 -h /www");
                spec["ports"] = json!([format!("127.0.0.1:{proxy_port}:80/tcp")]);
            }
            other => panic!("unexpected object {other}"),
        }
    });
    d.start();
    d.write("image-busybox.yaml", BUSYBOX_IMAGE);
    for (f, text) in &files {
        d.write(f, text);
    }

    d.wait_for(
        "db, backend and proxy healthy",
        Duration::from_secs(120),
        || {
            ["db", "backend", "proxy"]
                .iter()
                .all(|n| {
                    d.try_ps_row(&c(n))
                        .is_some_and(|r| r["health"] == "healthy")
                })
                .then_some(())
        },
    );
    assert_eq!(
        d.wait_for("backend answers", Duration::from_secs(30), || http_get(
            backend_port,
            "/health"
        )),
        "backend\n"
    );
    assert_eq!(
        d.wait_for("proxy answers", Duration::from_secs(30), || http_get(
            proxy_port, "/health"
        )),
        "proxy\n"
    );
    // The secret reached db at /run/secrets/db-password, and its copy lives in the volume.
    let secret = std::fs::read_to_string(dir.join("db/password.txt")).expect("secret");
    let cat = exec(&d, &c("db"), &["cat", "/var/lib/mysql/www/health"]);
    assert_eq!(cat, secret);
    // backend is on both networks: two interfaces besides lo.
    let links = exec(&d, &c("backend"), &["ls", "/sys/class/net"]);
    let mut ifs: Vec<&str> = links.split_whitespace().collect();
    ifs.sort();
    assert_eq!(ifs, ["eth0", "eth1", "lo"], "{links}");

    // Service names, as Compose resolves them: proxy reaches backend on frontnet, backend
    // reaches db on backnet, proxy does not see db (no network in common).
    assert_eq!(
        exec(
            &d,
            &c("proxy"),
            &["wget", "-q", "-O-", "http://backend:8000/health"]
        ),
        "backend\n"
    );
    assert_eq!(
        exec(
            &d,
            &c("backend"),
            &["wget", "-q", "-O-", "http://db:3306/health"]
        ),
        secret
    );
    // (Not `wget -T`: busybox 1.35's wget crashes with it, which would pass for "not found".)
    let o = exec(
        &d,
        &c("proxy"),
        &[
            "sh",
            "-c",
            "wget -q -O- http://db:3306/health 2>&1; echo rc=$?",
        ],
    );
    assert!(
        o.contains("bad address 'db:3306'") && o.ends_with("rc=1\n"),
        "proxy reached db, or failed otherwise: {o}"
    );

    // Start conditions (service_healthy): backend was created only after db was healthy, proxy
    // only after backend was.
    let first = |name: &str, kind: &str, status: Option<&str>| -> i64 {
        d.events_of(name, kind)
            .iter()
            .filter(|e| status.is_none_or(|s| e["message"]["status"] == s))
            .map(|e| e["id"].as_i64().unwrap_or(0))
            .next()
            .unwrap_or_else(|| panic!("no {kind} event of {name}:\n{}", d.log_tail()))
    };
    let db_healthy = first(&c("db"), "container.health", Some("healthy"));
    let backend_created = first(&c("backend"), "container.create", None);
    let backend_healthy = first(&c("backend"), "container.health", Some("healthy"));
    let proxy_created = first(&c("proxy"), "container.create", None);
    assert!(
        db_healthy < backend_created,
        "db healthy {db_healthy}, backend created {backend_created}"
    );
    assert!(
        backend_healthy < proxy_created,
        "backend healthy {backend_healthy}, proxy created {proxy_created}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}

#[test]
fn values_the_agent_refuses_are_left_out_with_the_reason_and_the_rest_validates() {
    if !require_root("values_the_agent_refuses_are_left_out_with_the_reason_and_the_rest_validates")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = tmp.path().join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  app:\n    image: app:1\n    working_dir: src\n    hostname: my_host\n    sysctls:\n      vm.swappiness: 10\n      net.core.somaxconn: 1024\n    mem_limit: 1k\n    cpus: 0.5\n",
    )
    .expect("write compose");
    let out = tmp.path().join("out");
    let report = convert_to(&file, &out, &[]);
    assert_eq!(
        not_carried(&report),
        [
            ("services.app.working_dir".to_string(), 4),
            ("services.app.hostname".to_string(), 5),
            ("services.app.sysctls".to_string(), 6),
            ("services.app.mem_limit".to_string(), 9),
        ],
        "{:#}",
        report["notCarried"]
    );
    let project = report["project"].as_str().expect("project");
    let app = read(&out, &format!("container-{project}-app.yaml"));
    assert!(
        app.contains("net.core.somaxconn: \"1024\"") && app.contains("cpus: 0.5"),
        "{app}"
    );
    let v = validate(&out);
    assert!(v.status.success(), "agent validate: {}", text(&v));
}
