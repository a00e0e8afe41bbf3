//! `agent stats` (live resource use per container, like `docker stats`) and `agent top NAME`
//! (the processes in a container, like `docker top`).
//!
//! Both ask the running agent (`GET /v1/stats`, `GET /v1/containers/{name}/top`); when it is not
//! running they read the store and the cgroups themselves, through the same functions
//! ([`crate::metrics::sample`], [`crate::metrics::top`]), and say so on stderr.
//!
//! CPU % is the CPU time the container used between two readings over the time between them
//! (100% is one CPU, as in `docker stats`); the first table therefore comes after a second.
//! MEM USAGE is the working set (usage less inactive file cache, as `docker stats` shows); an
//! unlimited container's LIMIT is the host's memory. NET I/O is what the container received /
//! sent on its veths (bridge mode only; `--` otherwise).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::daemon::{ClientOpts, print_json, table, url_escape};
use super::{Outcome, OutputFormat};
use crate::api::ClientError;
use crate::metrics::sample::{self, ContainerSample, StatsReport};
use crate::metrics::top::Top;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Containers to show [default: every running container].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Show all containers, also those not running (their usage is empty).
    #[arg(short, long)]
    pub all: bool,
    /// Print one reading and exit instead of refreshing every second.
    #[arg(long)]
    pub no_stream: bool,
    /// Output format: a table, or one JSON array per reading.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The container's name.
    pub name: String,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: a table, or `json` (`{"Titles": [...], "Processes": [[...]]}`, as the
    /// Docker API's).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// One line of `agent stats -o json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatsRow {
    pub name: String,
    pub state: String,
    /// Percent of one CPU over the last interval.
    pub cpu_percent: Option<f64>,
    /// Working set, bytes.
    pub memory_usage_bytes: Option<u64>,
    /// The cgroup's limit; `None`: unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Usage over the limit (or over the host's memory when unlimited), percent.
    pub memory_percent: Option<f64>,
    pub pids: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
}

/// Where readings come from: the agent, or (once it said it is not running) the store.
struct Source {
    opts: ClientOpts,
    offline: bool,
}

impl Source {
    fn reading(&mut self) -> crate::Result<StatsReport> {
        let (client, state) = self.opts.resolve()?;
        if !self.offline {
            match super::daemon::wait_for_starting_agent(&state, || client.call(false, "/v1/stats"))
            {
                Ok(r) => return Ok(r),
                Err(ClientError::NotRunning(socket)) => {
                    eprintln!(
                        "agent: the agent is not running (nothing listens on {}); reading {} and the cgroups directly",
                        socket.display(),
                        state.display()
                    );
                    self.offline = true;
                }
                Err(e) => return Err(crate::api::Error::from(e).into()),
            }
        }
        if !state.join(crate::store::DB_FILE).exists() {
            return Err(crate::Error::Failed(format!(
                "the agent is not running and {} holds no state",
                state.display()
            )));
        }
        let records = Store::open(&state)?.transaction(sample::records)?;
        Ok(sample::stats_report(&state, records.0))
    }
}

/// The rows of reading `now`, CPU % against `before` (the same container's earlier reading).
pub fn rows(before: Option<&StatsReport>, now: &StatsReport) -> Vec<StatsRow> {
    let prev: BTreeMap<&str, &ContainerSample> = before
        .map(|b| b.containers.iter().map(|c| (c.id.as_str(), c)).collect())
        .unwrap_or_default();
    let elapsed = before.map(|b| now.time_ns.saturating_sub(b.time_ns));
    now.containers
        .iter()
        .map(|c| {
            let u = c.usage.as_ref();
            let cpu_percent = (|| {
                let was = prev.get(c.id.as_str())?.usage.as_ref()?.cpu_nanos?;
                let is = u?.cpu_nanos?;
                let dt = elapsed.filter(|&d| d > 0)?;
                Some(is.saturating_sub(was) as f64 / dt as f64 * 100.0)
            })();
            let usage = u.and_then(|u| u.working_set_bytes.or(u.memory_bytes));
            let limit = u.and_then(|u| u.memory_limit);
            let of = limit.or(now.host_memory).filter(|&l| l > 0);
            StatsRow {
                name: c.name.clone(),
                state: c.state.clone(),
                cpu_percent,
                memory_usage_bytes: usage,
                memory_limit_bytes: limit,
                memory_percent: usage.zip(of).map(|(u, l)| u as f64 / l as f64 * 100.0),
                pids: u.and_then(|u| u.pids),
                net_rx_bytes: c.net.as_ref().map(|n| n.rx_bytes),
                net_tx_bytes: c.net.as_ref().map(|n| n.tx_bytes),
            }
        })
        .collect()
}

/// Bytes in binary units as `docker stats` prints memory: `1.5MiB`.
pub fn binary(n: u64) -> String {
    scaled(n, 1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// Bytes in decimal units as `docker stats` prints network I/O: `1.2kB`.
pub fn decimal(n: u64) -> String {
    scaled(n, 1000.0, ["B", "kB", "MB", "GB", "TB", "PB"])
}

/// `n` in the largest unit of `units` (each `base` times the one before) that keeps it >= 1,
/// with up to three decimals and no trailing zeros.
fn scaled(n: u64, base: f64, units: [&str; 6]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

fn text_table(rows: &[StatsRow], host_memory: Option<u64>) -> String {
    let dash = || "--".to_string();
    let mut t = vec![
        [
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "PIDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        let limit = r.memory_limit_bytes.or(host_memory);
        t.push(vec![
            r.name.clone(),
            r.cpu_percent
                .map(|c| format!("{c:.2}%"))
                .unwrap_or_else(dash),
            match (r.memory_usage_bytes, limit) {
                (Some(u), Some(l)) => format!("{} / {}", binary(u), binary(l)),
                (Some(u), None) => binary(u),
                _ => dash(),
            },
            r.memory_percent
                .map(|m| format!("{m:.2}%"))
                .unwrap_or_else(dash),
            match (r.net_rx_bytes, r.net_tx_bytes) {
                (Some(rx), Some(tx)) => format!("{} / {}", decimal(rx), decimal(tx)),
                _ => dash(),
            },
            r.pids.map(|p| p.to_string()).unwrap_or_else(dash),
        ]);
    }
    table(&t)
}

fn select(args: &StatsArgs, report: &mut StatsReport) -> crate::Result<()> {
    if !args.names.is_empty() {
        for n in &args.names {
            if !report.containers.iter().any(|c| &c.name == n) {
                return Err(crate::Error::Failed(format!(
                    "no such container: {n} (see `agent ps`)"
                )));
            }
        }
        report.containers.retain(|c| args.names.contains(&c.name));
    } else if !args.all {
        report.containers.retain(|c| c.state == "running");
    }
    Ok(())
}

pub fn stats(args: StatsArgs) -> crate::Result<Outcome> {
    let mut source = Source {
        opts: args.client.clone(),
        offline: false,
    };
    let interval = Duration::from_secs(1);
    let mut before = source.reading()?;
    select(&args, &mut before)?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let next = Instant::now() + interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let mut now = source.reading()?;
        select(&args, &mut now)?;
        let rows = rows(Some(&before), &now);
        if args.output == OutputFormat::Json {
            print_json(&rows)?;
        } else {
            let mut out = String::new();
            if terminal && !args.no_stream {
                out.push_str("\x1b[2J\x1b[H");
            }
            out.push_str(&text_table(&rows, now.host_memory));
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`agent stats | head`) ends the command quietly.
            if stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush())
                .is_err()
            {
                return Ok(Outcome::OK);
            }
        }
        if args.no_stream {
            return Ok(Outcome::OK);
        }
        before = now;
    }
}

pub fn top(args: TopArgs) -> crate::Result<Outcome> {
    let path = format!("/v1/containers/{}/top", url_escape(&args.name));
    let (_, state) = args.client.resolve()?;
    let name = args.name.clone();
    let top: Top = super::daemon::ask(&args.client, &path, move |store| {
        let record = store
            .transaction(|tx| tx.container(&name))?
            .ok_or_else(|| {
                crate::Error::Failed(format!("no such container: {name} (see `agent ps`)"))
            })?;
        crate::metrics::top::of_container(&state, &record).map_err(crate::Error::Failed)
    })?;
    if args.output == OutputFormat::Json {
        print_json(&top)?;
        return Ok(Outcome::OK);
    }
    let mut t = vec![top.titles];
    t.extend(top.processes);
    let _ = std::io::stdout().lock().write_all(table(&t).as_bytes());
    Ok(Outcome::OK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::exec::cgroups::Usage;

    fn report(t: u128, cpu: u64) -> StatsReport {
        StatsReport {
            time_ns: t,
            cpus: 2,
            host_memory: Some(1 << 30),
            containers: vec![ContainerSample {
                name: "web".into(),
                id: "web-1".into(),
                image: "busybox".into(),
                state: "running".into(),
                labels: BTreeMap::new(),
                started_at: None,
                restarts: 0,
                usage: Some(Usage {
                    cpu_nanos: Some(cpu),
                    memory_bytes: Some(3 << 20),
                    working_set_bytes: Some(2 << 20),
                    memory_limit: Some(8 << 20),
                    pids: Some(1),
                    ..Usage::default()
                }),
                net: None,
                veths: Vec::new(),
            }],
        }
    }

    #[test]
    fn cpu_is_the_share_of_one_cpu_between_readings() {
        let a = report(1_000_000_000, 0);
        let b = report(2_000_000_000, 250_000_000);
        let r = rows(Some(&a), &b);
        assert_eq!(r[0].cpu_percent, Some(25.0));
        assert_eq!(r[0].memory_usage_bytes, Some(2 << 20));
        assert_eq!(r[0].memory_percent, Some(25.0));
        assert_eq!(rows(None, &b)[0].cpu_percent, None);
        let text = text_table(&r, b.host_memory);
        assert!(text.contains("25.00%"), "{text}");
        assert!(text.contains("2MiB / 8MiB"), "{text}");
        assert!(text.contains("--"), "{text}");
    }

    #[test]
    fn units() {
        assert_eq!(binary(512), "512B");
        assert_eq!(binary(1536), "1.5KiB");
        assert_eq!(binary(256 << 20), "256MiB");
        assert_eq!(decimal(1200), "1.2kB");
        assert_eq!(decimal(0), "0B");
    }
}
