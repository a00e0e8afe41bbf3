//! Crash consistency: a writer process is killed with SIGKILL at random moments while it commits
//! large transactions, several rounds in a row, and after every kill the store opens consistent.
//!
//! Each transaction `k` writes batch `k`: `ROWS` containers named `bNNNNNN-III` (each with a 2 KiB
//! config), one address and one published port per container, a chain of links inside the
//! batch, one event, and deletes batch `k - KEEP` (users before targets, so the cascades run).
//! After a kill the parent reopens the store and checks: `PRAGMA integrity_check` and
//! `foreign_key_check` are clean, every batch is complete in every table or absent, the batches
//! present are consecutive, and every batch the writer reported committed is still there.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use agent::store::{
    ContainerRecord, Error, LinkRecord, NetworkRecord, NewEvent, PortBinding, Protocol, Store,
};
use agent_e2e::store::{ChildProc, Rng, after, role, state_dir};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TEST: &str = "sigkill_mid_transaction_leaves_a_consistent_store";
/// Rows per table per transaction.
const ROWS: u32 = 100;
/// Batches kept; older ones are deleted by the transaction that writes a new one.
const KEEP: u32 = 3;
/// Kill rounds at least.
const MIN_ROUNDS: u32 = 8;
/// Kills that must land between "BEGIN k" and "COMMITTED k".
const MID_TRANSACTION_KILLS: u32 = 3;
const MAX_ROUNDS: u32 = 25;

fn name(batch: u32, i: u32) -> String {
    format!("b{batch:06}-{i:03}")
}

fn ip(batch: u32, i: u32) -> IpAddr {
    // KEEP consecutive batches never share an address.
    IpAddr::from([
        10,
        (batch % 200) as u8,
        (i / 200) as u8,
        (i % 200 + 1) as u8,
    ])
}

fn host_port(batch: u32, i: u32) -> u16 {
    (20_000 + (batch % (KEEP + 1)) * ROWS + i) as u16
}

/// The writer: commits batches until killed (or for at most two minutes, should the parent die).
fn writer(dir: &Path) -> TestResult {
    let mut s = Store::open(dir)?;
    let next = s.transaction(|tx| {
        if tx.network("net")?.is_none() {
            tx.upsert_network(&NetworkRecord {
                name: "net".into(),
                bridge: "br-crash".into(),
                subnet: "10.0.0.0/8".into(),
                gateway: None,
                config: json!({}),
                created_at: 0,
            })?;
        }
        let last = tx
            .containers()?
            .last()
            .and_then(|c| c.name[1..7].parse::<u32>().ok());
        Ok::<_, Error>(last.map_or(1, |b| b + 1))
    })?;
    let filler = "x".repeat(2048);
    let started = Instant::now();
    let mut out = std::io::stdout();
    for batch in next.. {
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        writeln!(out, "BEGIN {batch}")?;
        out.flush()?;
        s.transaction(|tx| {
            for i in 0..ROWS {
                let n = name(batch, i);
                tx.upsert_container(&ContainerRecord::new(
                    n.clone(),
                    format!("id-{n}"),
                    json!({"batch": batch, "i": i, "filler": filler}),
                    format!("hash-{batch}"),
                    "sha256:feed",
                    i64::from(batch),
                ))?;
                tx.reserve_ip("net", &n, ip(batch, i), i64::from(batch))?;
                tx.bind_port(&PortBinding {
                    container: n.clone(),
                    host_ip: IpAddr::from([127, 0, 0, 1]),
                    host_port: host_port(batch, i),
                    proto: Protocol::Tcp,
                    container_port: 80,
                })?;
                if i > 0 {
                    tx.add_link(&LinkRecord {
                        parent: n,
                        child: name(batch, i - 1),
                        alias: "prev".into(),
                    })?;
                }
            }
            tx.append_event(&NewEvent {
                time: i64::from(batch),
                kind: "batch".into(),
                object: format!("batch/{batch}"),
                message: json!({"rows": ROWS}),
            })?;
            if let Some(old) = batch.checked_sub(KEEP).filter(|b| *b > 0) {
                for i in (0..ROWS).rev() {
                    tx.delete_container(&name(old, i))?;
                }
            }
            Ok::<_, Error>(())
        })?;
        writeln!(out, "COMMITTED {batch}")?;
        out.flush()?;
    }
    Ok(())
}

/// What the reopened store holds, per batch: (containers, addresses, ports, links, events).
fn census(s: &mut Store) -> Result<BTreeMap<u32, [u32; 5]>, Error> {
    s.transaction(|tx| {
        let mut by_batch: BTreeMap<u32, [u32; 5]> = BTreeMap::new();
        let batch_of = |n: &str| n.get(1..7).and_then(|b| b.parse::<u32>().ok()).unwrap_or(0);
        for c in tx.containers()? {
            by_batch.entry(batch_of(&c.name)).or_default()[0] += 1;
            assert_eq!(c.config["batch"], json!(batch_of(&c.name)));
        }
        for a in tx.ip_allocations("net")? {
            by_batch.entry(batch_of(&a.container)).or_default()[1] += 1;
        }
        for p in tx.port_bindings()? {
            by_batch.entry(batch_of(&p.container)).or_default()[2] += 1;
        }
        for l in tx.links()? {
            by_batch.entry(batch_of(&l.parent)).or_default()[3] += 1;
        }
        for e in tx.events_after(None, 1_000_000)? {
            let b = e
                .object
                .trim_start_matches("batch/")
                .parse::<u32>()
                .unwrap_or(0);
            // Events outlive their batch's rows; count only batches that still have rows.
            by_batch.entry(b).or_default()[4] += 1;
        }
        by_batch.retain(|_, counts| counts[..4].iter().any(|n| *n > 0));
        Ok(by_batch)
    })
}

#[test]
fn sigkill_mid_transaction_leaves_a_consistent_store() -> TestResult {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "writer");
        return writer(&dir);
    }

    let tmp = tempfile::tempdir()?;
    let dir = state_dir(tmp.path());
    let mut rng = Rng::new();
    let mut mid_transaction = 0;
    let mut rounds = 0;
    let mut committed_total = 0;
    while rounds < MIN_ROUNDS || mid_transaction < MID_TRANSACTION_KILLS {
        rounds += 1;
        assert!(
            rounds <= MAX_ROUNDS,
            "only {mid_transaction} of {MAX_ROUNDS} kills landed inside a transaction"
        );
        let mut proc = ChildProc::spawn(TEST, "writer", &dir)?;
        proc.wait_line("COMMITTED ", Duration::from_secs(120), |_| {})
            .ok_or("the writer committed nothing")?;
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        proc.child.kill()?; // SIGKILL
        let status = proc.child.wait()?;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );

        let mut last_begun = None;
        let mut last_committed = None;
        let mut committed = 1;
        for line in proc.drain() {
            if let Some(b) = after(&line, "BEGIN ") {
                last_begun = Some(b.parse::<u32>()?);
            } else if let Some(b) = after(&line, "COMMITTED ") {
                last_committed = Some(b.parse::<u32>()?);
                committed += 1;
            }
        }
        committed_total += committed;
        let in_flight = last_begun.filter(|b| Some(*b) != last_committed);
        if in_flight.is_some() {
            mid_transaction += 1;
        }

        // Reopening also proves the dead writer's lock is gone.
        let mut s = Store::open(&dir)?;
        let problems = s.check_integrity()?;
        assert!(problems.is_empty(), "round {rounds}: {problems:?}");
        let census = census(&mut s)?;
        for (batch, counts) in &census {
            assert_eq!(
                *counts,
                [ROWS, ROWS, ROWS, ROWS - 1, 1],
                "round {rounds}: batch {batch} is incomplete (containers, addresses, ports, links, events)"
            );
        }
        let present: Vec<u32> = census.keys().copied().collect();
        let (first, last) = (present[0], present[present.len() - 1]);
        assert_eq!(
            present,
            (first..=last).collect::<Vec<_>>(),
            "round {rounds}: batches not consecutive"
        );
        assert!(
            present.len() <= KEEP as usize,
            "round {rounds}: {present:?}"
        );
        if let Some(c) = last_committed {
            assert!(
                last >= c,
                "round {rounds}: committed batch {c} lost; store has {present:?}"
            );
        }
        if let Some(b) = in_flight {
            assert!(
                last == b || last + 1 == b,
                "round {rounds}: in flight {b}, store has {present:?}"
            );
        }
        println!(
            "round {rounds}: killed with batch {in_flight:?} in flight after {committed} commits; \
             store holds complete batches {first}..={last}"
        );
    }
    println!(
        "{rounds} rounds, {mid_transaction} kills inside a transaction, {committed_total} commits, \
         store consistent after every kill"
    );
    Ok(())
}
