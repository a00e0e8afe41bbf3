//! Conversions of whole compose texts: each mapping, and what is reported as not carried over.

use std::path::Path;

use super::*;
use crate::manifest::Manifest;

fn convert(yaml: &str) -> Conversion {
    convert_with(yaml, interpolate::Vars::default())
}

fn convert_with(yaml: &str, vars: interpolate::Vars) -> Conversion {
    convert_text(
        Path::new("compose.yaml"),
        Path::new("/srv/shop"),
        yaml,
        &vars,
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The Container of service `name` (named `<project>-<service>` or its container_name).
fn container<'a>(c: &'a Conversion, name: &str) -> &'a crate::manifest::ContainerSpec {
    c.objects
        .iter()
        .find_map(|o| match &o.manifest {
            Manifest::Container(m) if o.from == format!("services.{name}") => Some(&m.spec),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no container of service {name}"))
}

fn dropped<'a>(c: &'a Conversion, key: &str) -> &'a Note {
    c.not_carried
        .iter()
        .find(|n| n.key == key)
        .unwrap_or_else(|| panic!("{key} not reported; reported: {:#?}", c.not_carried))
}

#[test]
fn minimal_service() {
    let c = convert("services:\n  web:\n    image: nginx\n");
    let web = container(&c, "web");
    assert_eq!(web.image, "nginx:latest");
    assert_eq!(c.project, "shop");
    // Named as Compose names it (`shop-web-1`), found by its service name on its network.
    assert_eq!(
        c.objects.last().map(|o| o.manifest.name()),
        Some("shop-web")
    );
    assert_eq!(web.networks.len(), 1);
    assert_eq!(web.networks[0].name, "shop-default");
    assert_eq!(web.networks[0].aliases, ["web"]);
}

fn changed<'a>(c: &'a Conversion, key: &str) -> &'a Note {
    c.changed
        .iter()
        .find(|n| n.key == key)
        .unwrap_or_else(|| panic!("{key} not in changed; changed: {:#?}", c.changed))
}

fn yaml_of(c: &Conversion, name: &str) -> String {
    let o = c
        .objects
        .iter()
        .find(|o| {
            o.from == format!("services.{name}") && matches!(o.manifest, Manifest::Container(_))
        })
        .unwrap_or_else(|| panic!("no container of service {name}"));
    render::document(o)
}

#[test]
fn command_and_entrypoint_in_string_and_list_forms() {
    let c = convert(
        "services:\n  a:\n    image: x:1\n    command: sh -c 'echo \"hi there\"'\n    entrypoint: [/bin/tini, --]\n  b:\n    image: x:1\n    command: [\"--flag\", \"two words\"]\n    entrypoint: /entry.sh\n",
    );
    let a = container(&c, "a");
    assert_eq!(
        a.command.as_deref(),
        Some(&["sh".to_string(), "-c".into(), "echo \"hi there\"".into()][..])
    );
    assert_eq!(
        a.entrypoint.as_deref(),
        Some(&["/bin/tini".to_string(), "--".into()][..])
    );
    let b = container(&c, "b");
    assert_eq!(
        b.command.as_deref(),
        Some(&["--flag".to_string(), "two words".into()][..])
    );
    assert_eq!(
        b.entrypoint.as_deref(),
        Some(&["/entry.sh".to_string()][..])
    );
    let bad = convert("services:\n  a:\n    image: x:1\n    command: \"echo 'open\"\n");
    assert!(
        dropped(&bad, "services.a.command")
            .message
            .contains("unterminated")
    );
}

#[test]
fn environment_in_both_forms_with_interpolation_and_pass_through() {
    let mut vars = interpolate::Vars::default();
    vars.env.insert("TAG".into(), "1.4".into());
    vars.env.insert("FROM_SHELL".into(), "yes".into());
    vars.dotenv.insert("DB_PASSWORD".into(), "s3cret".into());
    let c = convert_with(
        "services:\n  a:\n    image: \"web:${TAG}\"\n    environment:\n      - A=1\n      - FROM_SHELL\n      - NOT_SET\n      - PW=${DB_PASSWORD}\n      - PORT=${PORT:-8080}\n  b:\n    image: x:1\n    environment:\n      N: 5\n      T: true\n      Y: yes\n      E:\n",
        vars,
    );
    let a = container(&c, "a");
    assert_eq!(a.image, "web:1.4");
    let env: Vec<(&str, &str)> = a
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "1"),
            ("FROM_SHELL", "yes"),
            ("PORT", "8080"),
            ("PW", "s3cret")
        ]
    );
    assert!(
        dropped(&c, "services.a.environment.NOT_SET")
            .message
            .contains("unset")
    );
    let b = container(&c, "b");
    // YAML 1.2 as Compose reads it: `N` and `yes` are strings, not booleans.
    assert_eq!(b.env.get("N").map(String::as_str), Some("5"));
    assert_eq!(b.env.get("T").map(String::as_str), Some("true"));
    assert_eq!(b.env.get("Y").map(String::as_str), Some("yes"));
    assert_eq!(dropped(&c, "services.b.environment.E").line, 16);
    let uses: Vec<(&str, VarFrom, u32)> = c
        .interpolated
        .iter()
        .map(|u| (u.name.as_str(), u.from, u.line))
        .collect();
    assert_eq!(
        uses,
        [
            ("TAG", VarFrom::Environment, 3),
            ("FROM_SHELL", VarFrom::Environment, 6),
            ("DB_PASSWORD", VarFrom::DotEnv, 8),
            ("PORT", VarFrom::Default, 9),
        ]
    );
}

#[test]
fn a_required_variable_stops_the_conversion_where_it_is() {
    let e = convert_text(
        Path::new("compose.yaml"),
        Path::new("/srv"),
        "services:\n  a:\n    image: \"x:${TAG:?set TAG}\"\n",
        &interpolate::Vars::default(),
        &Options::default(),
    )
    .expect_err("TAG unset");
    let text = e.to_string();
    assert!(
        text.starts_with("compose.yaml:3:12: required variable TAG"),
        "{text}"
    );
}

#[test]
fn ports_in_every_short_and_long_form() {
    let c = convert(
        r#"services:
  a:
    image: x:1
    ports:
      - "3000"
      - "3001-3002"
      - "8000:8000"
      - "9090-9091:8080-8081"
      - "127.0.0.1:8001:8001"
      - "127.0.0.1:5000-5001:5000-5001"
      - "6060:6060/udp"
      - "[::1]:6001:6001"
      - 7000
      - "127.0.0.1::7001"
      - "8100-8110:81"
      - target: 82
        published: "8082"
        host_ip: 127.0.0.2
        protocol: udp
        mode: host
      - target: 83
      - target: 84
        name: web
      - "70000:80"
"#,
    );
    let a = container(&c, "a");
    let got: Vec<String> = a.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        got,
        [
            "3000/tcp",
            "3001-3002/tcp",
            "8000:8000/tcp",
            "9090-9091:8080-8081/tcp",
            "127.0.0.1:8001:8001/tcp",
            "127.0.0.1:5000-5001:5000-5001/tcp",
            "6060:6060/udp",
            "[::1]:6001:6001/tcp",
            "7000/tcp",
            "127.0.0.1::7001/tcp",
            "8100:81/tcp",
            "127.0.0.2:8082:82/udp",
            "83/tcp",
            "84/tcp",
        ]
    );
    assert!(
        changed(&c, "services.a.ports[10]")
            .message
            .contains("first port")
    );
    assert_eq!(dropped(&c, "services.a.ports[13].name").line, 23);
    assert!(
        dropped(&c, "services.a.ports[14]")
            .message
            .contains("70000")
    );
}

#[test]
fn runtime_settings_resources_and_security() {
    let c = convert(
        r#"services:
  db:
    image: postgres:16
  app:
    image: registry.example:5000/app:2
    links: [db, "db:database"]
    restart: on-failure
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 256M, pids: 100}
        reservations: {memory: 64m, cpus: "0.1"}
      replicas: 2
    ulimits:
      nproc: 65535
      nofile: {soft: 1024, hard: 4096}
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: 1024}
    devices: ["/dev/null:/dev/fake:rwm"]
    tmpfs: /run:size=16m
    volumes:
      - /data
      - type: tmpfs
        target: /cache
        tmpfs: {size: 1g}
      - ./conf:/etc/app:ro
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"]
      interval: 1m30s
      retries: 2
    stop_grace_period: 1m
    init: true
    security_opt: [no-new-privileges:true, seccomp:unconfined]
"#,
    );
    let text = yaml_of(&c, "app");
    for want in [
        "image: registry.example:5000/app:2",
        "- container: shop-db\n",
        "alias: database",
        "restart: on-failure",
        "cpus: 0.5",
        "memory: 256Mi",
        "pids: 100",
        "memoryReservation: 64Mi",
        "nproc:",
        "hard: 4096",
        "capAdd:\n  - CAP_NET_ADMIN",
        "capDrop:\n  - ALL",
        "net.core.somaxconn: \"1024\"",
        "- /dev/null:/dev/fake",
        "tmpfs: /run",
        "size: 16Mi",
        "volume: shop-app-data",
        "tmpfs: /cache",
        "size: 1Gi",
        "bind: /srv/shop/conf",
        "readOnly: true",
        "- wget -q -O- http://localhost/ || exit 1",
        "interval: 1m30s",
        "onUnhealthy: none",
        "stopGracePeriod: 1m",
        "init: true",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(
        dropped(&c, "services.app.deploy.replicas")
            .message
            .contains("one container")
    );
    assert!(dropped(&c, "services.app.deploy.resources.reservations.cpus").line == 11);
    // no-new-privileges is what the agent does anyway: not reported as left out.
    assert!(
        changed(&c, "services.app.security_opt[0]")
            .message
            .contains("no-new-privileges on every container")
    );
    assert!(
        dropped(&c, "services.app.security_opt[1]")
            .message
            .contains("\"seccomp:unconfined\": the agent applies its own seccomp profile")
    );
    assert!(
        !c.not_carried
            .iter()
            .any(|n| n.key == "services.app.security_opt[0]")
    );
    assert!(
        changed(&c, "services.app.volumes[0]")
            .message
            .contains("anonymous")
    );
}

#[test]
fn depends_on_with_conditions() {
    let c = convert(
        r#"services:
  db:
    image: postgres:16
    healthcheck:
      test: ["CMD", "pg_isready"]
  cache:
    image: redis:7
  migrate:
    image: app:1
    command: migrate
    depends_on: [db]
  web:
    image: app:1
    depends_on:
      db:
        condition: service_healthy
        restart: true
      cache:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
      metrics:
        condition: service_started
        required: false
"#,
    );
    let text = yaml_of(&c, "web");
    for want in [
        "    shop-db:\n      condition: healthy\n      restart: true\n",
        "    shop-cache:\n      condition: started\n",
        "    shop-migrate:\n      condition: completed\n",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(!text.contains("metrics"), "{text}");
    let cache = dropped(&c, "services.web.depends_on.cache.condition");
    assert_eq!(cache.line, 18);
    assert!(
        cache.message.contains("no health check"),
        "{}",
        cache.message
    );
    assert!(
        dropped(&c, "services.web.depends_on.metrics")
            .message
            .contains("not converted")
    );
    assert!(
        yaml_of(&c, "migrate").contains("dependsOn:\n    shop-db:\n      condition: started\n")
    );
}

#[test]
fn project_name_from_dotenv_when_the_file_has_none() {
    let mut vars = interpolate::Vars::default();
    vars.dotenv
        .insert("COMPOSE_PROJECT_NAME".into(), "Other_Shop".into());
    let c = convert_with("services:\n  web:\n    image: nginx:1\n", vars.clone());
    assert_eq!(c.project, "other-shop");
    assert_eq!(container(&c, "web").networks[0].name, "other-shop-default");
    assert_eq!(
        c.objects.last().map(|o| o.manifest.name()),
        Some("other-shop-web")
    );
    let named = convert_with("name: mine\nservices:\n  web:\n    image: nginx:1\n", vars);
    assert_eq!(named.project, "mine");
}

#[test]
fn container_names_are_dns_labels_and_say_when_they_differ() {
    let c = convert(
        "services:\n  web_app:\n    image: x:1\n  cache:\n    image: x:1\n    container_name: redis\n  db:\n    image: x:1\n",
    );
    let names: Vec<&str> = c
        .objects
        .iter()
        .filter(|o| matches!(o.manifest, Manifest::Container(_)))
        .map(|o| o.manifest.name())
        .collect();
    assert_eq!(names, ["shop-web-app", "redis", "shop-db"]);
    let notes = |key: &str| -> String {
        c.changed
            .iter()
            .filter(|n| n.key == key)
            .map(|n| n.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let web = notes("services.web_app");
    assert!(
        web.contains("made a DNS label") && web.contains("not a DNS name"),
        "{web}"
    );
    let cache = notes("services.cache");
    assert!(
        cache.contains("its container_name") && cache.contains("DNS alias"),
        "{cache}"
    );
    // The usual `<project>-<service>` is said once, at `services`.
    assert!(notes("services.db").is_empty());
    assert!(
        notes("services").contains("shop-<service>"),
        "{}",
        notes("services")
    );
    // Compose finds `cache` by its service name: an alias on its network.
    let redis = yaml_of(&c, "cache");
    assert!(
        redis.contains("networks:\n    shop-default:\n      aliases:\n      - cache\n"),
        "{redis}"
    );
    assert!(
        yaml_of(&c, "db").contains("networks:\n    shop-default:\n      aliases:\n      - db\n"),
        "{}",
        yaml_of(&c, "db")
    );
}

#[test]
fn per_network_aliases() {
    let c = convert(
        "services:\n  db:\n    image: postgres:16\n    networks:\n      back:\n        aliases: [database, pg.local, bad_alias]\n      front:\n  web:\n    image: x:1\n    networks: [front]\nnetworks:\n  back:\n  front:\n",
    );
    let db = yaml_of(&c, "db");
    assert!(
        db.contains("networks:\n    shop-back:\n      aliases:\n      - database\n      - pg.local\n      - db\n    shop-front:\n      aliases:\n      - db\n"),
        "{db}"
    );
    let bad = dropped(&c, "services.db.networks.back.aliases");
    assert!(
        bad.message.contains("bad_alias") && bad.line == 6,
        "{bad:?}"
    );
}

#[test]
fn what_the_validation_refuses_is_taken_out_and_reported_where_it_came_from() {
    let c = convert(
        "services:\n  a:\n    image: x:1\n    working_dir: relative/dir\n    sysctls:\n      vm.swappiness: 10\n      net.core.somaxconn: 1024\n    deploy:\n      resources:\n        limits: {cpus: \"0.5\", memory: 1b}\n    tmpfs: /run\n",
    );
    let a = container(&c, "a");
    assert_eq!(a.working_dir, None);
    let text = yaml_of(&c, "a");
    assert!(text.contains("net.core.somaxconn: \"1024\""), "{text}");
    assert!(!text.contains("swappiness"), "{text}");
    assert!(
        text.contains("cpus: 0.5") && !text.contains("memory:"),
        "{text}"
    );
    let wd = dropped(&c, "services.a.working_dir");
    assert_eq!((wd.line, wd.col), (4, 5));
    assert!(wd.message.contains("absolute path"), "{}", wd.message);
    assert!(
        dropped(&c, "services.a.sysctls")
            .message
            .contains("vm.swappiness")
    );
    assert!(
        dropped(&c, "services.a.deploy")
            .message
            .contains("resources.memory")
    );
}

#[test]
fn host_gateway_is_the_gateway_of_the_first_network() {
    let c = convert(
        r#"services:
  a:
    image: x:1
    extra_hosts: ["host.docker.internal:host-gateway", "db=10.1.2.3"]
  b:
    image: x:1
    networks: [back, default]
    extra_hosts: {gw: host-gateway}
  h:
    image: x:1
    network_mode: host
    extra_hosts: ["gw:host-gateway"]
  s:
    image: x:1
    network_mode: service:a
    extra_hosts: ["gw:host-gateway"]
networks:
  back:
    ipam:
      config: [{subnet: 10.77.0.0/24, gateway: 10.77.0.254}]
"#,
    );
    let hosts = |name: &str| -> Vec<(String, String)> {
        container(&c, name)
            .extra_hosts
            .iter()
            .map(|h| (h.host.clone(), h.ip.to_string()))
            .collect()
    };
    // The default network's gateway is the first address of its subnet.
    let gateway = c
        .objects
        .iter()
        .find_map(|o| match &o.manifest {
            Manifest::Network(n) if n.metadata.name == "shop-default" => {
                Some(n.spec.subnet.first_host().to_string())
            }
            _ => None,
        })
        .expect("shop-default");
    assert_eq!(
        hosts("a"),
        [
            ("db".to_string(), "10.1.2.3".to_string()),
            ("host.docker.internal".into(), gateway.clone())
        ]
    );
    assert_eq!(hosts("b"), [("gw".to_string(), "10.77.0.254".to_string())]);
    assert_eq!(hosts("h"), [("gw".to_string(), "127.0.0.1".to_string())]);
    assert!(
        changed(&c, "services.a.extra_hosts")
            .message
            .contains(&format!("written as {gateway}"))
    );
    // A container in another's network namespace has no network of its own.
    assert!(hosts("s").is_empty());
    assert!(
        dropped(&c, "services.s.extra_hosts")
            .message
            .contains("no network of its own")
    );
}

#[test]
fn a_local_volume_that_binds_a_directory_becomes_a_bind() {
    let c = convert(
        r#"services:
  a:
    image: x:1
    volumes:
      - data:/data
      - {type: volume, source: data, target: /ro, read_only: true}
      - plain:/plain
volumes:
  data:
    driver: local
    driver_opts: {type: none, o: bind, device: ./srv/data}
  plain:
  opts:
    driver_opts: {type: none, o: "bind,ro", device: /x}
"#,
    );
    let a = yaml_of(&c, "a");
    for want in [
        "- bind: /srv/shop/srv/data\n    target: /data\n",
        "- bind: /srv/shop/srv/data\n    target: /ro\n    readOnly: true",
        "- volume: shop-plain\n",
    ] {
        assert!(a.contains(want), "{want:?} missing in:\n{a}");
    }
    let volumes: Vec<&str> = c
        .objects
        .iter()
        .filter(|o| matches!(o.manifest, Manifest::Volume(_)))
        .map(|o| o.manifest.name())
        .collect();
    assert_eq!(volumes, ["shop-plain", "shop-opts"]);
    assert!(
        changed(&c, "volumes.data")
            .message
            .contains("bind of /srv/shop/srv/data")
    );
    // Mount options besides `bind` are not a plain bind: reported as before.
    assert!(
        dropped(&c, "volumes.opts.driver_opts")
            .message
            .contains("local directories")
    );
}

#[test]
fn the_default_file_and_an_override_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(find_default(dir.path()), None);
    for f in ["docker-compose.yml", "compose.yml"] {
        std::fs::write(dir.path().join(f), "services:\n  a:\n    image: x:1\n").expect("write");
    }
    // Compose's order: compose.y(a)ml before docker-compose.y(a)ml.
    let found = find_default(dir.path()).expect("found");
    assert_eq!(found, dir.path().join("compose.yml"));
    let c = convert_file(&found, &Options::default()).expect("convert");
    assert!(c.not_carried.is_empty(), "{:#?}", c.not_carried);
    assert_eq!(default_files(dir.path()), Some(vec![found.clone()]));
    // Compose merges the first override file of its list that exists.
    for f in ["docker-compose.override.yml", "compose.override.yaml"] {
        std::fs::write(
            dir.path().join(f),
            "services:\n  a:\n    ports: [\"80:80\"]\n    tty: true\n",
        )
        .expect("write");
    }
    let files = default_files(dir.path()).expect("found");
    assert_eq!(files, [found, dir.path().join("compose.override.yaml")]);
    let c = convert_files(&files, &Options::default()).expect("convert");
    assert_eq!(container(&c, "a").ports.len(), 1);
    let n = dropped(&c, "services.a.tty");
    assert_eq!(
        (n.file.as_path(), n.line, n.col),
        (files[1].as_path(), 4, 5)
    );
}

#[test]
fn zero_limits_are_no_limits_as_in_docker() {
    let c = convert(
        "services:\n  a:\n    image: x:1\n    cpus: 0\n    mem_limit: 0\n    mem_reservation: \"0\"\n    deploy:\n      resources:\n        limits: {cpus: \"0.0\", memory: 0}\n",
    );
    assert!(c.not_carried.is_empty(), "{:#?}", c.not_carried);
    let a = container(&c, "a");
    assert_eq!(a.resources, Default::default());
    for key in [
        "cpus",
        "mem_limit",
        "mem_reservation",
        "deploy.resources.limits.cpus",
    ] {
        assert!(
            changed(&c, &format!("services.a.{key}"))
                .message
                .contains("unlimited"),
            "{key}"
        );
    }
}
