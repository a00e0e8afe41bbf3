//! End-to-end: the Prometheus endpoint, `agent stats` and `agent top` (issue 18 items 1 and 2).
//! Two containers (one with labels and a memory limit, one on the bridge): a scrape of
//! `GET /metrics` over the API socket and over the `[metrics] listen` TCP listener on 127.0.0.1
//! shows their cgroup series under cAdvisor's names with `name`, `image` and the labels; the
//! agent's counters move after a file adds a container; `agent stats --no-stream` (table and
//! `-o json`) shows the manifest's memory limit; `agent top` lists the container's process.

use std::io::{Read, Write};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// `GET /metrics` over HTTP/1.0 on `stream`; the body.
fn get(mut stream: impl Read + Write) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n")
        .unwrap_or_else(|e| panic!("send: {e}"));
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("read: {e}"));
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or(("", ""));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

fn scrape_socket(d: &Daemon) -> String {
    get(std::os::unix::net::UnixStream::connect(&d.socket).unwrap_or_else(|e| panic!("{e}")))
}

/// The value of the series that starts with `prefix` (metric name and labels, without the
/// `image` label: its value is the image's key, e.g. `docker-archive:/path`).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .map(without_image)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// `line` without its `,image="..."` label.
fn without_image(line: &str) -> String {
    let Some(i) = line.find(",image=\"") else {
        return line.to_string();
    };
    let rest = &line[i + 8..];
    match rest.find('"') {
        Some(j) => format!("{}{}", &line[..i], &rest[j + 1..]),
        None => line.to_string(),
    }
}

const WEB_LABELS: &str =
    r#"name="web",container_label_app="shop",container_label_com_example_tier="front""#;

#[test]
fn metrics_stats_and_top_show_the_containers() {
    if !require_root("metrics_stats_and_top_show_the_containers") {
        return;
    }
    require_images();
    let port = agent_e2e::graph::free_port();
    let mut d = Daemon::prepare(
        "metrics",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    let web = container_manifest(
        "web",
        "exec sleep 1000",
        "  resources: {memory: 64Mi, pids: 50}\n",
    )
    .replace(
        "  name: web\n",
        "  name: web\n  labels: {app: shop, com.example/tier: front}\n",
    );
    d.write("web.yaml", &web);
    // On the bridge: its veth counters are its network series.
    let db = container_manifest("db", "exec sleep 1000", "").replace("  networkMode: none\n", "");
    d.write("db.yaml", &db);
    d.start();
    for n in ["web", "db"] {
        d.wait_for(&format!("{n} running"), Duration::from_secs(60), || {
            (d.try_ps_row(n)?["state"] == "running").then_some(())
        });
    }

    let text = scrape_socket(&d);
    let tcp =
        get(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}")));
    for body in [&text, &tcp] {
        let working = value(
            body,
            &format!("container_memory_working_set_bytes{{{WEB_LABELS}}} "),
        );
        assert!(working.is_some_and(|v| v > 0.0), "{body}");
        assert_eq!(
            value(
                body,
                &format!("container_spec_memory_limit_bytes{{{WEB_LABELS}}} ")
            ),
            Some(67108864.0),
            "{body}"
        );
        assert!(
            value(
                body,
                &format!("container_cpu_usage_seconds_total{{{WEB_LABELS},cpu=\"total\"}} ")
            )
            .is_some(),
            "{body}"
        );
        assert!(
            value(body, "container_memory_usage_bytes{name=\"db\"}").is_some_and(|v| v > 0.0),
            "{body}"
        );
        assert!(
            value(body, "container_threads{name=\"db\"}").is_some_and(|v| v >= 1.0),
            "{body}"
        );
        assert!(
            value(
                body,
                "container_network_receive_bytes_total{name=\"db\",interface=\"eth0\"} "
            )
            .is_some(),
            "{body}"
        );
        assert!(
            value(body, "process_resident_memory_bytes ").is_some_and(|v| v > 0.0),
            "{body}"
        );
        assert!(
            value(body, "agent_store_size_bytes ").is_some_and(|v| v > 0.0),
            "{body}"
        );
        assert_eq!(
            value(body, "agent_manifest_files{status=\"ok\"} "),
            Some(3.0),
            "{body}"
        );
    }
    // The TCP listener serves the metrics only.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /v1/ps HTTP/1.0\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.0 404"), "{answer}");

    // The agent's counters move when a file adds a container.
    let created = r#"agent_changes_applied_total{action="create",kind="container"} "#;
    let passes = value(&text, "agent_passes_total ").unwrap_or_else(|| panic!("{text}"));
    let before = value(&text, created).unwrap_or_else(|| panic!("{text}"));
    d.write(
        "extra.yaml",
        &container_manifest("extra", "exec sleep 1000", ""),
    );
    d.cli_ok(&["apply"]);
    d.wait_for("extra running", Duration::from_secs(60), || {
        (d.try_ps_row("extra")?["state"] == "running").then_some(())
    });
    let after = scrape_socket(&d);
    assert!(
        value(&after, created).is_some_and(|v| v > before),
        "{before} then:\n{after}"
    );
    assert!(
        value(&after, "agent_passes_total ").is_some_and(|v| v > passes),
        "{passes} then:\n{after}"
    );
    assert!(
        value(&after, "agent_pass_duration_seconds_count ").is_some_and(|v| v > passes),
        "{after}"
    );

    // agent stats: the limit of the manifest, as JSON and in the table.
    let rows = d.cli_json(&["stats", "--no-stream"]);
    let row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "web"))
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["memory_limit_bytes"], 67108864, "{row}");
    assert!(
        row["memory_usage_bytes"].as_u64().is_some_and(|m| m > 0),
        "{row}"
    );
    assert!(row["cpu_percent"].as_f64().is_some(), "{row}");
    assert_eq!(row["pids"], 1, "{row}");
    let db_row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "db"))
        .unwrap_or_else(|| panic!("{rows}"));
    assert!(db_row["net_rx_bytes"].as_u64().is_some(), "{db_row}");
    let table = d.cli_ok(&["stats", "--no-stream"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(" / 64MiB"), "{table}");
    assert!(table.starts_with("NAME"), "{table}");

    // agent top: the container's process.
    let top = d.cli_ok(&["top", "web"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(
        top.lines().any(|l| l.trim_end().ends_with("sleep 1000")),
        "{top}"
    );
    let missing = d.cli(&["top", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no such container: nosuch"),
        "{missing:?}"
    );
}
