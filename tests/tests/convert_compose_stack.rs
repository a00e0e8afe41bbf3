//! A typical Compose project moved over as it is: `agent convert compose` run in the project's
//! directory (the file found as `docker compose` finds it), the result written into the agent's
//! manifest directory unchanged, and the stack checked to behave as under Compose.
//!
//! The project (written by the test) is a reverse proxy in front of an app, a database, a cache,
//! a worker and a one-shot migration job, in the shape real compose files have: an `x-` block
//! merged into three services (`<<: *app`), `.env` variables (`${VAR:?msg}`, `${VAR:-default}`,
//! `$$`), an `env_file`, `environment` in both forms, commands as strings and lists, health
//! checks (CMD-SHELL, CMD, a string), `depends_on` with `service_healthy`,
//! `service_completed_successfully` and the short form, a published port on 127.0.0.1, a bind of
//! a relative directory, a named volume, a named volume the local driver binds to a directory
//! (`driver_opts: {type: none, o: bind, device: ./data}`), a file secret, `extra_hosts` with
//! `host-gateway`, `security_opt: [no-new-privileges:true]`, `stop_grace_period`. The images are
//! the busybox test image pushed to a `docker-registry` on 127.0.0.1 under the names the file
//! gives (`${REGISTRY}/shop/app:${TAG}`), so nothing is substituted: busybox `httpd` (with a CGI
//! script as the proxy), `wget` and shell loops stand in for nginx, the app, Postgres and Redis.
//!
//! A second test converts two projects with the same service names into one directory with the
//! default subnet pool and has `agent validate` accept them together.
//!
//! Traffic goes to 127.0.0.1, to the test's containers, and from the containers to the host's
//! address on the test's own network (`host-gateway`), where the test listens.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::graph::{Registry, free_port};
use agent_e2e::layout::BUSYBOX_LAYOUT;
use agent_e2e::network::TestNet;
use serde_json::Value;

const COMPOSE: &str = r#"x-app: &app
  image: ${REGISTRY}/shop/app:${TAG}
  restart: unless-stopped
  env_file: [app.env]
  environment: &appenv
    DB_HOST: db
    DB_USER: ${DB_USER:?set DB_USER in .env}
    GREETING: ${GREETING:-hello}
    PRICE: $$5
  extra_hosts:
    - "host.docker.internal:host-gateway"
  security_opt: [no-new-privileges:true]
  stop_grace_period: 2s

services:
  proxy:
    image: ${REGISTRY}/library/busybox
    command: httpd -f -p 80 -h /www
    ports:
      - "127.0.0.1:${WEB_PORT}:80"
    volumes:
      - ./html:/www:ro
    depends_on:
      app:
        condition: service_healthy
    restart: always
    stop_grace_period: 2s
  app:
    <<: *app
    command: >
      sh -c 'mkdir -p /www && env | sort > /www/env.txt && exec httpd -f -p 8000 -h /www'
    healthcheck:
      test: ["CMD-SHELL", "wget -q --spider http://localhost:8000/env.txt || exit 1"]
      interval: 1s
      timeout: 3s
      retries: 3
    depends_on:
      db:
        condition: service_healthy
      cache:
        condition: service_started
      migrate:
        condition: service_completed_successfully
  worker:
    <<: *app
    command: ["sh", "-c", "while true; do date >> /data/worker.log; sleep 1; done"]
    volumes:
      - uploads:/data
    depends_on: [db, cache]
  migrate:
    image: ${REGISTRY}/shop/app:${TAG}
    command: sh -c 'wget -q -O- http://db:5432/user && echo migrated >> /var/lib/db/migrations'
    volumes:
      - db-data:/var/lib/db
    depends_on:
      db:
        condition: service_healthy
  db:
    image: ${REGISTRY}/library/busybox:latest
    command: ["sh", "-c", "echo $$POSTGRES_USER > /var/lib/db/user && cat /run/secrets/db_password > /var/lib/db/pw && touch /var/lib/db/ready && exec httpd -f -p 5432 -h /var/lib/db"]
    environment:
      - POSTGRES_USER=${DB_USER}
    secrets: [db_password]
    volumes:
      - db-data:/var/lib/db
    healthcheck:
      test: test -f /var/lib/db/ready
      interval: 1s
    stop_grace_period: 2s
  cache:
    image: ${REGISTRY}/library/busybox
    command: sh -c 'mkdir /c && echo PONG > /c/ping && exec httpd -f -p 6379 -h /c'
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:6379/ping"]
      interval: 1s
    stop_grace_period: 2s
  debug:
    image: ${REGISTRY}/library/busybox
    profiles: [debug]
    command: sleep 3600

volumes:
  db-data:
  uploads:
    driver: local
    driver_opts:
      type: none
      o: bind
      device: ./data

secrets:
  db_password:
    file: ./db_password.txt
"#;

/// Another project on the same host, with the same service names.
const OTHER: &str = r#"services:
  db:
    image: ${REGISTRY}/library/busybox
    command: sh -c 'mkdir /w && echo other-db > /w/who && exec httpd -f -p 5432 -h /w'
    stop_grace_period: 1s
  app:
    image: ${REGISTRY}/library/busybox
    command: sleep 3600
    stop_grace_period: 1s
"#;

const PROXY_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nwget -q -O- http://app:8000/env.txt\n";

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(path: &Path, content: &str, mode: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
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

/// `agent exec NAME -- sh -c SCRIPT` in the fixture's state: its output, stdout then stderr.
fn sh(d: &Daemon, name: &str, script: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&d.state)
        .args([name, "--", "sh", "-c", script])
        .output()
        .expect("agent exec");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The id of the first event of `kind` about `name` (with `status` when given).
fn first_event(d: &Daemon, name: &str, kind: &str, status: Option<&str>) -> i64 {
    d.events_of(name, kind)
        .iter()
        .filter(|e| status.is_none_or(|s| e["message"]["status"] == s))
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .next()
        .unwrap_or_else(|| panic!("no {kind} event of {name}:\n{}", d.log_tail()))
}

#[test]
fn a_typical_compose_stack_runs_as_converted() {
    let name = "a_typical_compose_stack_runs_as_converted";
    if !require_root(name) {
        return;
    }
    require_images();
    let reg = Registry::start();
    let src = format!("oci:{BUSYBOX_LAYOUT}:latest");
    reg.push(&src, "shop/app:1.0", false);
    reg.push(&src, "library/busybox:latest", false);

    let mut d = Daemon::prepare(
        "stack",
        &format!("[registries]\ninsecure = [\"{}\"]\n", reg.host()),
    );
    // The project, in a directory of the test's own; a unique project name keeps the
    // Network's name (and so its bridge) the test's own.
    let project = format!("shop{}", std::process::id());
    let dir = d.dir.path().join(&project);
    // Containers are named as Compose names them, `<project>-<service>`.
    let c = |service: &str| format!("{project}-{service}");
    let web_port = free_port();
    let (_, net) = TestNet::names(d.net.firewall, true);
    write(&dir.join("compose.yaml"), COMPOSE, 0o644);
    write(
        &dir.join(".env"),
        &format!(
            "REGISTRY={}\nTAG=${{APP_TAG:-1.0}}\nWEB_PORT={web_port}\nDB_USER=shop\n",
            reg.host()
        ),
        0o644,
    );
    write(
        &dir.join("app.env"),
        "APP_MODE=prod\nAPP_WORKERS=4\n",
        0o600,
    );
    write(&dir.join("db_password.txt"), "pw-123\n", 0o600);
    write(&dir.join("html/index.html"), "static\n", 0o644);
    write(&dir.join("html/cgi-bin/app"), PROXY_CGI, 0o755);
    std::fs::create_dir_all(dir.join("data")).expect("mkdir data");
    for sub in ["", "html", "html/cgi-bin"] {
        std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    // Run as a Compose user would: in the project's directory, no file named.
    let out = Command::new(agent_e2e::agent_bin())
        .args(["convert", "compose", "-p", &project, "--report", "json"])
        .arg("--subnet-pool")
        .arg(net.subnet.to_string())
        .arg("-o")
        .arg(&d.manifests)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("agent convert compose");
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("report not JSON: {e}: {}", text(&out)));
    // Only the service of the inactive profile is left out.
    let left: Vec<&str> = report["notCarried"]
        .as_array()
        .expect("notCarried")
        .iter()
        .filter_map(|n| n["key"].as_str())
        .collect();
    assert_eq!(left, ["services.debug"], "{:#}", report["notCarried"]);
    let network =
        std::fs::read_to_string(d.manifests.join(format!("network-{project}-default.yaml")))
            .expect("network manifest");
    let bridge = network
        .lines()
        .find_map(|l| l.trim().strip_prefix("bridge: "))
        .expect("a bridge name")
        .to_string();
    d.extra_bridges.push(bridge);
    let v = Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(&d.manifests)
        .output()
        .expect("agent validate");
    assert!(v.status.success(), "agent validate: {}", text(&v));

    d.start();
    d.wait_for(
        "proxy, app, db and cache up, migrate done",
        Duration::from_secs(180),
        || {
            let ok = ["app", "db", "cache"].iter().all(|n| {
                d.try_ps_row(&c(n))
                    .is_some_and(|r| r["health"] == "healthy")
            }) && d
                .try_ps_row(&c("proxy"))
                .is_some_and(|r| r["state"] == "running")
                && d.try_ps_row(&c("worker"))
                    .is_some_and(|r| r["state"] == "running")
                && d.try_ps_row(&c("migrate"))
                    .is_some_and(|r| r["state"] == "exited" && r["exit_code"] == 0);
            ok.then_some(())
        },
    );

    // The published port: the proxy's static file from the relative bind, and the app behind
    // it by service name (the CGI script asks http://app:8000).
    assert_eq!(
        d.wait_for("proxy answers", Duration::from_secs(30), || http_get(
            web_port,
            "/index.html"
        )),
        "static\n"
    );
    let env = d.wait_for("the app through the proxy", Duration::from_secs(30), || {
        http_get(web_port, "/cgi-bin/app")
    });
    for want in [
        "APP_MODE=prod\n",
        "DB_HOST=db\n",
        "DB_USER=shop\n",
        "GREETING=hello\n",
        "PRICE=$5\n",
    ] {
        assert!(env.contains(want), "{want:?} not in the app's env:\n{env}");
    }

    // Start order: migrate after db was healthy, app after migrate completed, proxy after app
    // was healthy.
    let db_healthy = first_event(&d, &c("db"), "container.health", Some("healthy"));
    let migrate_created = first_event(&d, &c("migrate"), "container.create", None);
    let migrate_exit = first_event(&d, &c("migrate"), "container.exit", None);
    let app_created = first_event(&d, &c("app"), "container.create", None);
    let app_healthy = first_event(&d, &c("app"), "container.health", Some("healthy"));
    let proxy_created = first_event(&d, &c("proxy"), "container.create", None);
    assert!(
        db_healthy < migrate_created,
        "{db_healthy} {migrate_created}"
    );
    assert!(migrate_exit < app_created, "{migrate_exit} {app_created}");
    assert!(app_healthy < proxy_created, "{app_healthy} {proxy_created}");

    // The secret, the interpolated variable and the migration's mark in the named volume.
    assert_eq!(
        sh(
            &d,
            &c("db"),
            "cat /var/lib/db/pw /var/lib/db/user /var/lib/db/migrations"
        ),
        "pw-123\nshop\nmigrated\n"
    );
    // The worker writes into ./data through the volume the local driver binds.
    let log = dir.join("data/worker.log");
    d.wait_for("worker.log in ./data", Duration::from_secs(30), || {
        std::fs::metadata(&log).ok().filter(|m| m.len() > 0)
    });
    // Service names resolve on the project's network; an unknown one does not.
    assert_eq!(
        sh(&d, &c("worker"), "wget -q -O- http://cache:6379/ping"),
        "PONG\n"
    );
    let unknown = sh(
        &d,
        &c("worker"),
        "wget -q -O- http://nosuch:80/ 2>&1; echo rc=$?",
    );
    assert!(unknown.contains("bad address"), "{unknown}");

    // host.docker.internal is the host's address on the project's network: a server the test
    // runs there answers the app.
    let gateway = Ipv4Addr::from(u32::from(net.subnet.network()) + 1);
    let listener = TcpListener::bind((gateway, 0)).expect("listen on the gateway");
    let host_port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let server = std::thread::spawn(move || {
        // One answer, or none after 30 s (the thread never outlives a failed check for long).
        for _ in 0..300 {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nfrom-host");
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    let from_host = sh(
        &d,
        &c("app"),
        &format!("wget -q -O- http://host.docker.internal:{host_port}/ 2>&1"),
    );
    let _ = server.join();
    assert_eq!(from_host, "from-host", "{from_host}");

    // A second project with the same service names runs beside it, as with Compose: its
    // files do not replace the first one's, and `db` means each project's own db.
    let other = format!("other{}", std::process::id());
    let odir = d.dir.path().join(&other);
    write(&odir.join("compose.yaml"), OTHER, 0o644);
    let (_, onet) = TestNet::names(d.net.firewall, true);
    let out = Command::new(agent_e2e::agent_bin())
        .args(["convert", "compose", "-f", "compose.yaml", "-p", &other])
        .arg("--subnet-pool")
        .arg(onet.subnet.to_string())
        .arg("-o")
        .arg(&d.manifests)
        .current_dir(&odir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("REGISTRY", reg.host())
        .output()
        .expect("agent convert compose");
    assert!(out.status.success(), "{}", text(&out));
    let onetwork =
        std::fs::read_to_string(d.manifests.join(format!("network-{other}-default.yaml")))
            .expect("network manifest");
    if let Some(b) = onetwork
        .lines()
        .find_map(|l| l.trim().strip_prefix("bridge: "))
    {
        d.extra_bridges.push(b.to_string());
    }
    let o = |service: &str| format!("{other}-{service}");
    d.wait_for("the other project up", Duration::from_secs(60), || {
        ["db", "app"]
            .iter()
            .all(|n| d.try_ps_row(&o(n)).is_some_and(|r| r["state"] == "running"))
            .then_some(())
    });
    assert_eq!(
        sh(&d, &o("app"), "wget -q -O- http://db:5432/who"),
        "other-db\n"
    );
    assert_eq!(
        sh(&d, &c("app"), "wget -q -O- http://db:5432/user"),
        "shop\n"
    );

    // The named volume outlives its container: db recreated (its manifest changed), the
    // migration's mark is still there.
    let db_file = d.manifests.join(format!("container-{project}-db.yaml"));
    let db_manifest = std::fs::read_to_string(&db_file).expect("db manifest");
    let edited = db_manifest.replace(
        "POSTGRES_USER: shop",
        "POSTGRES_USER: shop\n    RECREATED: \"1\"",
    );
    assert_ne!(edited, db_manifest, "{db_manifest}");
    d.write(&format!("container-{project}-db.yaml"), &edited);
    // A changed env is a new container (it cannot change in place).
    d.wait_for("db recreated", Duration::from_secs(60), || {
        (d.try_ps_row(&c("db"))
            .is_some_and(|r| r["health"] == "healthy")
            && sh(&d, &c("db"), "echo $RECREATED") == "1\n")
            .then_some(())
    });
    assert_eq!(
        sh(&d, &c("db"), "echo $RECREATED; cat /var/lib/db/migrations"),
        "1\nmigrated\n"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}

/// Two projects converted one after the other with the default subnet pool, into one
/// directory, as one host's manifests: no file replaces another, and the agent's validation
/// accepts them together (no duplicate container, no overlapping networks); nothing is left out.
#[test]
fn two_projects_convert_into_one_directory_and_validate_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = tmp.path().join("agent.d");
    for project in ["shop", "blog"] {
        let dir = tmp.path().join(project);
        write(
            &dir.join("compose.yaml"),
            "services:\n  web:\n    image: web:1\n    networks: [front, default]\n    cpus: 0\n    mem_limit: 0\n  db:\n    image: db:1\nnetworks:\n  front:\n",
            0o644,
        );
        let o = Command::new(agent_e2e::agent_bin())
            // --strict: everything is carried over (Docker's `cpus: 0`, `mem_limit: 0` are no
            // limits, not values the agent refuses).
            .args(["convert", "compose", "--strict", "-o"])
            .arg(&out)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("agent convert compose");
        assert!(o.status.success(), "{project}: {}", text(&o));
    }
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "container-blog-db.yaml",
            "container-blog-web.yaml",
            "container-shop-db.yaml",
            "container-shop-web.yaml",
            "network-blog-default.yaml",
            "network-blog-front.yaml",
            "network-shop-default.yaml",
            "network-shop-front.yaml",
        ]
    );
    let v = Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(&out)
        .output()
        .expect("agent validate");
    assert!(v.status.success(), "agent validate: {}", text(&v));
}
