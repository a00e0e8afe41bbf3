//! Prometheus metrics: the agent's own counters and, read at each scrape, every container's
//! cgroup usage under cAdvisor's names, the manifest files by status, the store's size and the
//! agent process's own use.
//!
//! Served as Prometheus text (version 0.0.4, the `prometheus-client` crate's encoder) at
//! `GET /metrics` on the API socket and, when `[metrics] listen` is set in config.toml, on that
//! TCP address (see [`crate::api::server::serve_metrics`]).
//!
//! Decisions:
//! - The agent's counters live in one process-wide [`Metrics`] ([`global`]), as a Prometheus
//!   client library's default registry does: the loop, the applier and the event log add to it
//!   without being handed a registry. They count from the agent's start.
//! - Container metrics are not kept between scrapes: each scrape reads the store and the
//!   cgroup files anew ([`sample`]), so a removed container disappears at once and an idle agent
//!   does no work for metrics nobody reads.
//! - Names and labels follow cAdvisor (`container_cpu_usage_seconds_total{cpu="total"}`,
//!   `container_memory_working_set_bytes`, `container_spec_memory_limit_bytes` 0 when unlimited,
//!   `container_threads` from `pids.current`), so dashboards written for cAdvisor/kubelet work.
//!   Every container series has `name` (the manifest name), `image` (the image key) and the
//!   container's labels as `container_label_<label>`, the label's name with every character
//!   outside `[a-zA-Z0-9_]` turned into `_` (cAdvisor's rule for Docker labels).
//! - Events feed counters through [`Metrics::on_event`] (restarts, health transitions): the
//!   event log is the one place every such fact passes.

pub mod process;
pub mod sample;
pub mod top;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of the change counters: the action (`create`, `start`, `pull`, ...) and the kind of
/// object (`container`, `image`, `volume`, `network`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub action: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    name: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The agent's own counters.
pub struct Metrics {
    registry: Registry,
    passes: Counter,
    pass_duration: Histogram,
    applied: Family<ChangeLabels, Counter>,
    failed: Family<ChangeLabels, Counter>,
    restarts: Family<NameLabels, Counter>,
    health: Family<HealthLabels, Counter>,
    events: Family<KindLabels, Counter>,
    pulls: Family<ResultLabels, Counter>,
    pull_bytes: Counter,
    pull_duration: Histogram,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let passes = Counter::default();
        registry.register("agent_passes", "Reconcile passes run", passes.clone());
        // 1 ms to about 33 s.
        let pass_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "agent_pass_duration",
            "Time from a pass's start until all its changes were applied or failed",
            Unit::Seconds,
            pass_duration.clone(),
        );
        let applied = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "agent_changes_applied",
            "Changes applied, by action and kind of object",
            applied.clone(),
        );
        let failed = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "agent_changes_failed",
            "Changes that failed, by action and kind of object",
            failed.clone(),
        );
        let restarts = Family::<NameLabels, Counter>::default();
        registry.register(
            "agent_container_restarts",
            "Automatic restarts of a container (restart policy or health)",
            restarts.clone(),
        );
        let health = Family::<HealthLabels, Counter>::default();
        registry.register(
            "agent_health_transitions",
            "Health status changes of a container, by the status it changed to",
            health.clone(),
        );
        let events = Family::<KindLabels, Counter>::default();
        registry.register(
            "agent_events",
            "Events recorded in the event log, by kind",
            events.clone(),
        );
        let pulls = Family::<ResultLabels, Counter>::default();
        registry.register(
            "agent_image_pulls",
            "Image pulls from registries, by result (ok, error)",
            pulls.clone(),
        );
        let pull_bytes = Counter::default();
        registry.register_with_unit(
            "agent_image_pull",
            "Bytes downloaded by image pulls",
            Unit::Bytes,
            pull_bytes.clone(),
        );
        // 100 ms to about 27 min.
        let pull_duration = Histogram::new(exponential_buckets(0.1, 2.0, 15));
        registry.register_with_unit(
            "agent_image_pull_duration",
            "Time an image pull took, failed ones included",
            Unit::Seconds,
            pull_duration.clone(),
        );
        Metrics {
            registry,
            passes,
            pass_duration,
            applied,
            failed,
            restarts,
            health,
            events,
            pulls,
            pull_bytes,
            pull_duration,
        }
    }

    /// A pass finished after `took`.
    pub fn pass_done(&self, took: Duration) {
        self.passes.inc();
        self.pass_duration.observe(took.as_secs_f64());
    }

    /// A change was applied (`ok`) or failed.
    pub fn change(&self, action: &str, kind: &str, ok: bool) {
        let labels = ChangeLabels {
            action: action.to_string(),
            kind: kind.to_string(),
        };
        let family = if ok { &self.applied } else { &self.failed };
        family.get_or_create(&labels).inc();
    }

    /// An image pull ended: `bytes` downloaded (0 when it failed), after `took`.
    pub fn pull(&self, ok: bool, bytes: u64, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.pulls
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.pull_bytes.inc_by(bytes);
        self.pull_duration.observe(took.as_secs_f64());
    }

    /// An event was appended to the event log (`kind` like `container.restart`, `object` like
    /// `container/web`).
    pub fn on_event(&self, kind: &str, object: &str, message: &serde_json::Value) {
        self.events
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
        let name = object.strip_prefix("container/").unwrap_or(object);
        match kind {
            "container.restart" => {
                self.restarts
                    .get_or_create(&NameLabels { name: name.into() })
                    .inc();
            }
            "container.health" => {
                let status = message
                    .get("status")
                    .and_then(|s| s.as_str())
                    .unwrap_or("unknown");
                self.health
                    .get_or_create(&HealthLabels {
                        name: name.into(),
                        status: status.into(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    /// The whole exposition: these counters, then what `scrape` read now.
    pub fn render(&self, scrape: &sample::Scrape) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(
            &mut out,
            &scrape_registry(scrape),
        );
        out
    }
}

/// A label name from a container label: cAdvisor's `container_label_` and every character
/// outside `[a-zA-Z0-9_]` as `_`.
pub fn label_name(label: &str) -> String {
    let mut out = String::with_capacity(16 + label.len());
    out.push_str("container_label_");
    out.extend(label.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

type Labels = Vec<(String, String)>;

/// The per-scrape registry: container, file, store and process gauges.
fn scrape_registry(s: &sample::Scrape) -> Registry {
    let mut r = Registry::default();
    let fgauge = || Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let igauge = Family::<Labels, Gauge>::default;
    let fcounter = || Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let cpu = fcounter();
    let cpu_user = fcounter();
    let cpu_system = fcounter();
    let usage = igauge();
    let working_set = igauge();
    let rss = igauge();
    let cache = igauge();
    let limit = igauge();
    let threads = igauge();
    let threads_max = igauge();
    let oom = fcounter();
    let rx = fcounter();
    let tx = fcounter();
    let start = fgauge();
    let up = igauge();
    for c in &s.containers {
        let mut labels: Labels = vec![
            ("name".into(), c.name.clone()),
            ("image".into(), c.image.clone()),
        ];
        // Two labels may sanitize to the same name: the first (in label order) wins.
        for (k, v) in &c.labels {
            let n = label_name(k);
            if !labels.iter().any(|(l, _)| *l == n) {
                labels.push((n, v.clone()));
            }
        }
        let with = |extra: &[(&str, &str)]| {
            let mut l = labels.clone();
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        let running = c.state == "running";
        up.get_or_create(&with(&[("state", &c.state)])).set(1);
        let Some(u) = c.usage.as_ref().filter(|_| running) else {
            continue;
        };
        let secs = |n: u64| n as f64 / 1e9;
        if let Some(n) = u.cpu_nanos {
            cpu.get_or_create(&with(&[("cpu", "total")]))
                .inc_by(secs(n));
        }
        if let Some(n) = u.cpu_user_nanos {
            cpu_user.get_or_create(&labels).inc_by(secs(n));
        }
        if let Some(n) = u.cpu_system_nanos {
            cpu_system.get_or_create(&labels).inc_by(secs(n));
        }
        let set = |f: &Family<Labels, Gauge>, v: Option<u64>| {
            if let Some(v) = v {
                f.get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        };
        set(&usage, u.memory_bytes);
        set(&working_set, u.working_set_bytes);
        set(&rss, u.rss_bytes);
        set(&cache, u.cache_bytes);
        set(&limit, Some(u.memory_limit.unwrap_or(0)));
        set(&threads, u.pids);
        set(&threads_max, Some(u.pids_limit.unwrap_or(0)));
        if let Some(n) = u.oom_kills {
            oom.get_or_create(&labels).inc_by(n as f64);
        }
        if let Some(n) = &c.net {
            let l = with(&[("interface", "eth0")]);
            rx.get_or_create(&l).inc_by(n.rx_bytes as f64);
            tx.get_or_create(&l).inc_by(n.tx_bytes as f64);
        }
        if let Some(ms) = c.started_at {
            start.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
    }
    r.register(
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed in seconds",
        cpu,
    );
    r.register(
        "container_cpu_user_seconds",
        "Cumulative user cpu time consumed in seconds",
        cpu_user,
    );
    r.register(
        "container_cpu_system_seconds",
        "Cumulative system cpu time consumed in seconds",
        cpu_system,
    );
    r.register(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        usage,
    );
    r.register(
        "container_memory_working_set_bytes",
        "Current working set in bytes (usage less inactive file cache)",
        working_set,
    );
    r.register(
        "container_memory_rss",
        "Size of RSS (anonymous memory) in bytes",
        rss,
    );
    r.register(
        "container_memory_cache",
        "Number of bytes of page cache memory",
        cache,
    );
    r.register(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container in bytes (0: unlimited)",
        limit,
    );
    r.register(
        "container_threads",
        "Number of threads (tasks) running inside the container",
        threads,
    );
    r.register(
        "container_threads_max",
        "Maximum number of threads allowed inside the container (0: unlimited)",
        threads_max,
    );
    r.register(
        "container_oom_events",
        "Count of out of memory events observed for the container",
        oom,
    );
    r.register(
        "container_network_receive_bytes",
        "Cumulative count of bytes received",
        rx,
    );
    r.register(
        "container_network_transmit_bytes",
        "Cumulative count of bytes transmitted",
        tx,
    );
    r.register(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        start,
    );
    r.register(
        "agent_containers",
        "Containers the agent records, 1 per container with its state",
        up,
    );
    let files = Family::<Labels, Gauge>::default();
    for (status, n) in [("ok", s.files_ok), ("error", s.files_error)] {
        files
            .get_or_create(&vec![("status".into(), status.into())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(
        "agent_manifest_files",
        "Manifest files by load status",
        files,
    );
    let store = Gauge::<i64>::default();
    store.set(i64::try_from(s.store_bytes).unwrap_or(i64::MAX));
    r.register_with_unit(
        "agent_store_size",
        "Size of the state database (state.db with its write-ahead log)",
        Unit::Bytes,
        store,
    );
    process::register(&mut r, &s.process);
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
