//! End-to-end: cgroup limits (memory with OOM kill, pids), stop with a grace period, pause (root).

use std::time::{Duration, Instant};

use agent::driver::exec::{ContainerStatus, ExecDriver};
use agent_e2e::exec::{Fixture, exited, require_root};

#[test]
fn memory_limit_oom_kill_is_reported() {
    if !require_root("memory_limit_oom_kill_is_reported") {
        return;
    }
    let mut f = Fixture::new("oom");
    let mut s = f.spec("hog");
    s.resources.memory = Some(32 << 20);
    // `tail` keeps the current line in memory; /dev/zero has no newline: it grows until killed.
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "sleep 0.5; exec tail /dev/zero".into(),
    ]);
    let id = f.run(&s);
    let stats = f.driver.stats(&id).unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(stats.memory_limit, Some(32 << 20), "{stats:?}");
    let info = f.wait_exit(&id, Duration::from_secs(60));
    assert_eq!(
        exited(&info.status, "hog"),
        (137, Some(9), true),
        "{info:?}"
    );
    // a container that stays under its limit is not reported as OOM killed
    let mut s = f.spec("modest");
    s.resources.memory = Some(32 << 20);
    let (st, _) = f.run_to_end(s, &["/bin/sh", "-c", "head -c 1000000 /dev/zero | wc -c"]);
    assert_eq!(exited(&st, "modest"), (0, None, false));
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    if !require_root("pids_limit_contains_a_fork_bomb") {
        return;
    }
    let mut f = Fixture::new("pids");
    let mut s = f.spec("bomb");
    s.resources.pids = Some(32);
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "bomb() { bomb | bomb & }; bomb; sleep 1000".into(),
    ]);
    let id = f.run(&s);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut max_seen = 0;
    while Instant::now() < deadline {
        let st = f.driver.stats(&id).unwrap_or_else(|e| panic!("stats: {e}"));
        max_seen = max_seen.max(st.pids.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(max_seen > 1, "the bomb never ran: {max_seen}");
    assert!(max_seen <= 32, "pids above the limit: {max_seen}");
    // the kernel refused forks (pids.events max counter), and the host is fine
    let cg = agent::driver::exec::paths::cgroups_path_of(&f.dir(&id)).unwrap_or_default();
    let events =
        agent::driver::exec::cgroups::dir(agent::driver::exec::cgroups::version(), "pids", &cg)
            .and_then(|d| std::fs::read_to_string(d.join("pids.events")).ok())
            .unwrap_or_default();
    let refused = agent::driver::exec::cgroups::keyed(&events, "max").unwrap_or(0);
    assert!(refused > 0, "pids.events: {events}");
    let info = f
        .driver
        .stop(&id, Some(Duration::from_millis(100)))
        .unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(!info.status.is_running(), "{info:?}");
}

#[test]
fn stop_honours_the_grace_period_then_kills() {
    if !require_root("stop_honours_the_grace_period_then_kills") {
        return;
    }
    let mut f = Fixture::new("stop");
    // traps SIGTERM and carries on: gets its grace time, then SIGKILL
    let mut s = f.spec("stubborn");
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done".into(),
    ]);
    let stubborn = f.run(&s);
    // exits cleanly on SIGTERM
    let mut s = f.spec("polite");
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done".into(),
    ]);
    let polite = f.run(&s);
    // a configured stop signal is used instead of SIGTERM
    let mut s = f.spec("hup");
    s.stop_signal = Some("SIGHUP".into());
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'echo got-hup; exit 3' HUP; echo ready; while true; do sleep 0.1; done".into(),
    ]);
    let hup = f.run(&s);
    for id in [&stubborn, &polite, &hup] {
        f.wait_log(id, "ready");
    }

    let t = Instant::now();
    let out = f.agent(&["stop", "-t", "1.5", "stubborn"]);
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= Duration::from_millis(1500),
        "SIGKILL before the grace ended: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    let info = f.driver.state(&stubborn).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exited(&info.status, "stubborn"), (137, Some(9), false));
    assert!(
        f.log_text(&stubborn).contains("got-term"),
        "{}",
        f.log_text(&stubborn)
    );

    let t = Instant::now();
    let info = f
        .driver
        .stop(&polite, Some(Duration::from_secs(20)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(exited(&info.status, "polite"), (0, None, false));
    assert!(f.log_text(&polite).contains("bye"));

    let info = f
        .driver
        .stop(&hup, Some(Duration::from_secs(20)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exited(&info.status, "hup"), (3, None, false));
    // stopping a stopped container is fine
    let again = f.driver.stop(&hup, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status, info.status);
}

#[test]
fn pause_freezes_and_unpause_resumes() {
    if !require_root("pause_freezes_and_unpause_resumes") {
        return;
    }
    let mut f = Fixture::new("pause");
    let mut s = f.spec("counter");
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.05; done"
            .into(),
    ]);
    let counter = s.rootfs.join("tmp/c");
    let id = f.run(&s);
    let read = || -> u64 {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(read() > 0, "counter never ran");
    f.driver.pause(&id).unwrap_or_else(|e| panic!("pause: {e}"));
    let info = f.driver.state(&id).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(info.status, ContainerStatus::Paused { .. }),
        "{info:?}"
    );
    std::thread::sleep(Duration::from_millis(150));
    let frozen = read();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(), frozen, "counter moved while paused");
    f.driver
        .unpause(&id)
        .unwrap_or_else(|e| panic!("unpause: {e}"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(read() > frozen, "counter did not resume");
    assert!(matches!(
        f.driver.state(&id).map(|i| i.status),
        Ok(ContainerStatus::Running {
            monitored: true,
            ..
        })
    ));
    // stopping a paused container thaws it so that the signal lands
    f.driver.pause(&id).unwrap_or_else(|e| panic!("pause: {e}"));
    let info = f
        .driver
        .stop(&id, Some(Duration::from_millis(300)))
        .unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(!info.status.is_running(), "{info:?}");
}
