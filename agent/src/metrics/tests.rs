use std::collections::BTreeMap;
use std::time::Duration;

use super::sample::{ContainerSample, NetUsage, Scrape};
use super::*;
use crate::driver::exec::cgroups::Usage;

fn sample(name: &str, state: &str) -> ContainerSample {
    ContainerSample {
        name: name.into(),
        id: format!("{name}-1"),
        image: "busybox".into(),
        state: state.into(),
        labels: BTreeMap::from([
            ("app".to_string(), "shop".to_string()),
            ("com.example/tier".to_string(), "front \"end\"".to_string()),
        ]),
        started_at: Some(1_700_000_000_000),
        restarts: 0,
        usage: Some(Usage {
            cpu_nanos: Some(1_500_000_000),
            memory_bytes: Some(4096),
            working_set_bytes: Some(1024),
            memory_limit: None,
            pids: Some(2),
            ..Usage::default()
        }),
        net: Some(NetUsage {
            rx_bytes: 10,
            tx_bytes: 20,
            ..NetUsage::default()
        }),
        veths: Vec::new(),
    }
}

#[test]
fn label_names_are_sanitized_like_cadvisor() {
    assert_eq!(label_name("app"), "container_label_app");
    assert_eq!(
        label_name("com.example/tier-1"),
        "container_label_com_example_tier_1"
    );
}

#[test]
fn container_series_carry_name_image_and_labels() {
    let m = Metrics::new();
    m.pass_done(Duration::from_millis(20));
    m.change("create", "container", true);
    m.change("pull", "image", false);
    m.on_event("container.restart", "container/web", &serde_json::json!({}));
    m.on_event(
        "container.health",
        "container/web",
        &serde_json::json!({"status": "unhealthy"}),
    );
    m.pull(true, 1234, Duration::from_secs(1));
    let scrape = Scrape {
        containers: vec![sample("web", "running"), sample("old", "exited")],
        files_ok: 2,
        files_error: 1,
        store_bytes: 8192,
        process: process::read(),
    };
    let text = m.render(&scrape);
    let labels = r#"name="web",image="busybox",container_label_app="shop",container_label_com_example_tier="front \"end\"""#;
    for want in [
        format!("container_cpu_usage_seconds_total{{{labels},cpu=\"total\"}} 1.5\n"),
        format!("container_memory_usage_bytes{{{labels}}} 4096\n"),
        format!("container_memory_working_set_bytes{{{labels}}} 1024\n"),
        format!("container_spec_memory_limit_bytes{{{labels}}} 0\n"),
        format!("container_threads{{{labels}}} 2\n"),
        format!("container_network_receive_bytes_total{{{labels},interface=\"eth0\"}} 10.0\n"),
        "agent_passes_total 1\n".to_string(),
        "agent_changes_applied_total{action=\"create\",kind=\"container\"} 1\n".to_string(),
        "agent_changes_failed_total{action=\"pull\",kind=\"image\"} 1\n".to_string(),
        "agent_container_restarts_total{name=\"web\"} 1\n".to_string(),
        "agent_health_transitions_total{name=\"web\",status=\"unhealthy\"} 1\n".to_string(),
        "agent_image_pull_bytes_total 1234\n".to_string(),
        "agent_manifest_files{status=\"error\"} 1\n".to_string(),
        "agent_store_size_bytes 8192\n".to_string(),
        "# TYPE agent_pass_duration_seconds histogram\n".to_string(),
        "# TYPE process_cpu_seconds_total counter\n".to_string(),
        "# TYPE process_resident_memory_bytes gauge\n".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    // An exited container has its state but no usage series.
    assert!(text.contains("agent_containers{name=\"old\""), "{text}");
    assert!(
        !text.contains("container_memory_usage_bytes{name=\"old\""),
        "{text}"
    );
}
