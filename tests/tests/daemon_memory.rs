//! The agent's memory stays bounded (issue 20 item 3): glibc may keep at most two malloc arenas in
//! `agent run`, however many changes ran at once (docs/daemon.md, "Memory"). Before, every
//! blocking-pool thread that applied a change got an arena of its own (up to 8 per core), and
//! each kept the freed memory of its busiest moment: 15 arenas and 26 MiB of malloc'd memory
//! holding 4 MiB in use after 30 containers were created.
//!
//! Counted structurally from `/proc/<pid>/maps`, never by timing or size: every arena besides the
//! main one is a heap mapped at a 64 MiB boundary (HEAP_MAX_SIZE on 64-bit).

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// glibc malloc arenas besides the main one in process `pid`.
fn extra_arenas(pid: u32) -> usize {
    const HEAP: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mut n = 0;
    let mut open_heap_end: Option<u64> = None;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let anon = f.len() == 5;
        let range = f.first().and_then(|r| r.split_once('-'));
        let (Some((lo, hi)), true) = (range, anon) else {
            open_heap_end = None;
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            open_heap_end = None;
            continue;
        };
        if f[1].starts_with("rw") && lo % HEAP == 0 && hi - lo <= HEAP {
            // a heap's used part; a full 64 MiB heap ends on the boundary itself
            if hi % HEAP == 0 {
                n += 1;
                open_heap_end = None;
            } else {
                open_heap_end = Some(hi);
            }
        } else if open_heap_end == Some(lo) && f[1].starts_with("---") && hi % HEAP == 0 {
            // its reserved rest
            n += 1;
            open_heap_end = None;
        } else {
            open_heap_end = None;
        }
    }
    n
}

#[test]
fn many_changes_at_once_leave_at_most_two_malloc_arenas() {
    if !require_root("many_changes_at_once_leave_at_most_two_malloc_arenas") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("memory", "");
    // An operator's MALLOC_ARENA_MAX would win over the agent's own setting.
    assert!(
        std::env::var_os("MALLOC_ARENA_MAX").is_none(),
        "unset MALLOC_ARENA_MAX to run this test"
    );
    d.start();
    let pid = d.pid().expect("agent pid");
    d.write("image.yaml", BUSYBOX_IMAGE);
    let names: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    for n in &names {
        d.write(
            &format!("{n}.yaml"),
            &container_manifest(n, "sleep 1000000", "  restart: always\n"),
        );
    }
    d.wait_for("16 containers running", Duration::from_secs(180), || {
        names
            .iter()
            .all(|n| d.try_ps_row(n).is_some_and(|r| r["state"] == "running"))
            .then_some(())
    });
    // A second wave: every container recreated at once (a new env), then all removed.
    for n in &names {
        d.write(
            &format!("{n}.yaml"),
            &container_manifest(n, "sleep 1000000", "  restart: always\n  env: {V: \"2\"}\n"),
        );
    }
    d.cli_ok(&["apply"]);
    let arenas = extra_arenas(pid);
    d.remove_all_and_wait(Duration::from_secs(120));
    assert!(
        arenas <= 1,
        "the agent has {arenas} malloc arenas besides the main one after 16 changes at once; \
         it sets M_ARENA_MAX=2 at start (agent/src/daemon/alloc.rs)"
    );
    let after = extra_arenas(pid);
    assert!(after <= 1, "{after} extra arenas after the removals");
    d.stop();
}
