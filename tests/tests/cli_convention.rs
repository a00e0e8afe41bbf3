//! End-to-end: one CLI convention (issue 18 item 5), with the real binary.
//!
//! - Settings: every command finds the agent's state, socket and manifests through the same
//!   resolution (flag, `AGENT_*` environment, config.toml, default). Here the config file names
//!   them and the commands get only `--config` or `AGENT_CONFIG` (or only `AGENT_STATE_DIR`):
//!   `logs`, `plan` (no DIR), `export` and `image ls` used to read /var/lib/agent whatever the
//!   config said, and nothing read `AGENT_CONFIG`.
//! - `-o json`, `-q`, `ps --filter name=|state=|label=`, `events`/`logs --since/--until`, `events -n 0`,
//!   `export NAME`, `top -o json`.
//! - Exit codes: 64 for usage errors (clap's included; they were 2, like `plan`'s "changes
//!   pending"), 2 only for `plan` with changes pending, 1 for errors, 125/126/127 and the
//!   command's own code for `agent exec` (a broken config file was 1).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const ENV: [&str; 5] = [
    "AGENT_CONFIG",
    "AGENT_SOCKET",
    "AGENT_STATE_DIR",
    "AGENT_MANIFESTS_DIR",
    "AGENT_GRAPH_DRIVER",
];

/// `agent <args>` with exactly the `AGENT_*` variables in `env` and no other settings.
fn bare(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(agent_e2e::agent_bin());
    cmd.args(args).env("RUST_LOG", "warn").stdin(Stdio::null());
    for k in ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run agent {args:?}: {e}"))
}

/// A spawned `agent` killed when dropped, also when an assertion fails first.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(args: &[&str], env: &[(&str, &Path)]) -> String {
    let o = bare(args, env);
    assert!(
        o.status.success(),
        "agent {args:?} ({}):\nstdout: {}\nstderr: {}",
        o.status,
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    text(&o)
}

fn code(args: &[&str], env: &[(&str, &Path)]) -> Option<i32> {
    bare(args, env).status.code()
}

fn lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

/// A daemon whose config file names its state directory, socket and manifest directory, with
/// `web` running and `done` exited.
fn configured(tag: &str) -> Daemon {
    require_images();
    let mut d = Daemon::prepare(tag, "");
    let own = format!(
        "state_dir = {:?}\nsocket = {:?}\nmanifests_dir = {:?}\n",
        d.state, d.socket, d.manifests
    );
    let rest = std::fs::read_to_string(&d.config).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&d.config, own + &rest).unwrap_or_else(|e| panic!("{e}"));
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "web.yaml",
        &container_manifest("web", "echo hello-web; exec sleep 1000", "")
            .replace("  name: web\n", "  name: web\n  labels: {app: shop}\n"),
    );
    d.write(
        "done.yaml",
        &container_manifest("done", "echo bye; exit 0", "  restart: {policy: \"no\"}\n"),
    );
    d.start();
    d.wait_for("web running, done exited", Duration::from_secs(60), || {
        (d.try_ps_row("web")?["state"] == "running" && d.try_ps_row("done")?["state"] == "exited")
            .then_some(())
    });
    d
}

#[test]
fn settings_come_from_flag_env_and_config_for_every_command() {
    if !require_root("settings_come_from_flag_env_and_config_for_every_command") {
        return;
    }
    let d = configured("cli-settings");
    let c = d.config.to_string_lossy().into_owned();
    let conf: &[(&str, &Path)] = &[("AGENT_CONFIG", d.config.as_path())];
    let state_only: &[(&str, &Path)] = &[("AGENT_STATE_DIR", d.state.as_path())];

    // logs: --config, AGENT_CONFIG, AGENT_STATE_DIR (it read /var/lib/agent: "no such container").
    d.wait_for("web's output", Duration::from_secs(20), || {
        ok(&["logs", "web", "--config", &c], &[])
            .contains("hello-web")
            .then_some(())
    });
    assert!(ok(&["logs", "web"], conf).contains("hello-web"));
    assert!(ok(&["logs", "web"], state_only).contains("hello-web"));
    // ps, inspect, status, stats, top, kill, exec: through the socket the config names.
    let ps = ok(&["ps", "-o", "json"], conf);
    assert!(ps.contains("\"web\"") && ps.contains("\"done\""), "{ps}");
    assert!(ok(&["inspect", "web"], conf).contains("\"web\""));
    ok(&["status"], conf);
    assert!(ok(&["stats", "--no-stream", "-o", "json"], conf).contains("\"web\""));
    let top: serde_json::Value =
        serde_json::from_str(&ok(&["top", "web", "-o", "json"], conf)).unwrap_or_default();
    assert!(
        top["Titles"].as_array().is_some_and(|t| !t.is_empty()),
        "{top}"
    );
    assert_eq!(ok(&["kill", "-s", "WINCH", "web"], conf).trim(), "web");
    assert_eq!(
        ok(&["exec", "web", "--", "echo", "in-web"], conf).trim(),
        "in-web"
    );
    // plan without DIR: the manifest directory of the config; nothing pending.
    let o = bare(&["plan", "--config", &c], &[]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let plan: serde_json::Value =
        serde_json::from_str(&ok(&["plan", "-o", "json"], conf)).unwrap_or_default();
    assert!(plan.is_object(), "{plan}");
    // image ls and export: the graph under the config's state directory.
    let ids = ok(&["image", "ls", "-q"], conf);
    assert_eq!(ids.lines().count(), 1, "{ids}");
    assert!(ids.trim().len() == 12 && ids.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["image", "ls", "-o", "json"], conf)).unwrap_or_default();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // The old spelling stays, hidden.
    let old: serde_json::Value =
        serde_json::from_str(&ok(&["image", "ls", "--format", "json"], conf)).unwrap_or_default();
    assert_eq!(old, listed);
    ok(&["volume", "ls", "-q"], conf);
    ok(&["system", "df", "-o", "json"], conf);

    // export by name (it wanted the runtime id), and by id still.
    let tar_has_busybox = |file: &Path| {
        let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{e}"));
        let mut a = tar::Archive::new(f);
        let names: Vec<String> = a
            .entries()
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| Some(e.ok()?.path().ok()?.to_string_lossy().into_owned()))
            .collect();
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/busybox")
    };
    let by_name = d.dir.path().join("web.tar");
    ok(&["export", "web", "-o", &by_name.to_string_lossy()], conf);
    assert!(tar_has_busybox(&by_name));
    let id = d.ps_row("web")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let by_id = d.dir.path().join("web-id.tar");
    ok(
        &[
            "export",
            &id,
            "-o",
            &by_id.to_string_lossy(),
            "--config",
            &c,
        ],
        &[],
    );
    assert!(tar_has_busybox(&by_id));

    // A flag wins over the environment: a state directory without the container.
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let o = bare(
        &[
            "logs",
            "web",
            "--state-dir",
            &empty.path().to_string_lossy(),
        ],
        conf,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such container"));
}

/// flag > `AGENT_*` environment > config.toml, setting by setting: the config file names the
/// real state directory, socket and manifest directory; the environment names wrong ones and
/// wins over the file; the flags name the real ones again and win over the environment.
#[test]
fn flag_beats_environment_beats_config() {
    if !require_root("flag_beats_environment_beats_config") {
        return;
    }
    let d = configured("cli-precedence");
    let s = d.state.to_string_lossy().into_owned();
    let sock = d.socket.to_string_lossy().into_owned();
    let elsewhere = tempfile::Builder::new()
        .prefix("agent-cli-elsewhere-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    let empty_state = elsewhere.path().join("state");
    let no_socket = elsewhere.path().join("agent.sock");
    let more = elsewhere.path().join("manifests");
    std::fs::create_dir(&more).unwrap_or_else(|e| panic!("{e}"));
    for f in ["busybox.yaml", "web.yaml", "done.yaml"] {
        std::fs::copy(d.manifests.join(f), more.join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(
        more.join("more.yaml"),
        container_manifest("more", "exec sleep 1000", ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = d.manifests.to_string_lossy().into_owned();

    // State directory.
    let conf_env: &[(&str, &Path)] = &[
        ("AGENT_CONFIG", d.config.as_path()),
        ("AGENT_STATE_DIR", empty_state.as_path()),
    ];
    let o = bare(&["logs", "web"], conf_env);
    assert_eq!(o.status.code(), Some(1), "env over config: {o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no such container"),
        "{o:?}"
    );
    assert!(ok(&["logs", "web", "--state-dir", &s], conf_env).contains("hello-web"));

    // Socket: `apply` needs the running agent.
    let conf_env: &[(&str, &Path)] = &[
        ("AGENT_CONFIG", d.config.as_path()),
        ("AGENT_SOCKET", no_socket.as_path()),
    ];
    let o = bare(&["apply"], conf_env);
    assert_eq!(o.status.code(), Some(1), "env over config: {o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&*no_socket.to_string_lossy()),
        "{o:?}"
    );
    ok(&["apply", "--socket", &sock], conf_env);

    // Manifest directory: `plan` without DIR.
    let conf_env: &[(&str, &Path)] = &[
        ("AGENT_CONFIG", d.config.as_path()),
        ("AGENT_MANIFESTS_DIR", more.as_path()),
    ];
    let o = bare(&["plan"], conf_env);
    assert_eq!(o.status.code(), Some(2), "env over config: {o:?}");
    assert!(text(&o).contains("more"), "{o:?}");
    assert_eq!(code(&["plan", &m], conf_env), Some(0));
    assert_eq!(
        code(&["plan"], &[("AGENT_CONFIG", d.config.as_path())]),
        Some(0)
    );

    // The config file itself: --config over AGENT_CONFIG (a missing one is an error).
    let missing = elsewhere.path().join("missing.toml");
    let c = d.config.to_string_lossy().into_owned();
    let env: &[(&str, &Path)] = &[("AGENT_CONFIG", missing.as_path())];
    let o = bare(&["ps", "-q"], env);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing.toml"),
        "{o:?}"
    );
    assert_eq!(
        lines(&ok(&["ps", "-q", "--config", &c], env)),
        ["done", "web"]
    );
}

/// One duration grammar (Go's, Docker's) for manifests and config.toml: what one takes the other
/// takes, what one refuses the other refuses, each naming file, line, column and field. (Before,
/// config.toml took humantime's `5min`, `1h 30m`, `2days`, which manifests refused.)
#[test]
fn durations_have_one_grammar_in_manifests_and_config() {
    if !require_root("durations_have_one_grammar_in_manifests_and_config") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("agent-cli-durations-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap_or_else(|e| panic!("{e}"));
    let state = tmp.path().join("state");
    let (file, config) = (manifests.join("a.yaml"), tmp.path().join("config.toml"));
    let check = |value: &str| {
        std::fs::write(
            &file,
            format!(
                "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: a\nspec:\n  \
                 image: 127.0.0.1:5000/busybox:1\n  stopGracePeriod: {value}\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            &config,
            format!("[restart]\nstart = \"{value}\"\ncap = \"24h\"\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let manifest = bare(&["validate", &file.to_string_lossy()], &[]);
        // plan reads the config, then the manifests (valid ones: plan exits 2, changes pending).
        let plan = bare(
            &[
                "plan",
                &tmp.path().join("empty").to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--config",
                &config.to_string_lossy(),
            ],
            &[],
        );
        (manifest, plan)
    };
    std::fs::create_dir(tmp.path().join("empty")).unwrap_or_else(|e| panic!("{e}"));
    for good in ["1m30s", "1.5h", "500ms", "10s", "2h45m"] {
        let (manifest, plan) = check(good);
        assert_eq!(manifest.status.code(), Some(0), "{good}: {manifest:?}");
        assert_eq!(plan.status.code(), Some(0), "{good}: {plan:?}");
    }
    for bad in ["5min", "1h 30m", "2days", "10sec", "1d", "90"] {
        let (manifest, plan) = check(bad);
        assert_eq!(manifest.status.code(), Some(1), "{bad}: {manifest:?}");
        let out = text(&manifest);
        assert!(
            out.contains(":7:20: spec.stopGracePeriod: invalid duration"),
            "{bad}: {out}"
        );
        assert_eq!(plan.status.code(), Some(1), "{bad}: {plan:?}");
        let err = String::from_utf8_lossy(&plan.stderr);
        assert!(
            err.contains("config.toml:2:9: restart.start: invalid duration")
                && err.contains("1m30s"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn listings_filter_quiet_and_events_window() {
    if !require_root("listings_filter_quiet_and_events_window") {
        return;
    }
    let d = configured("cli-listings");
    let conf: &[(&str, &Path)] = &[("AGENT_CONFIG", d.config.as_path())];
    let ps = |filters: &[&str]| {
        let mut args = vec!["ps", "-q"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        ok(&args, conf)
    };
    assert_eq!(lines(&ps(&[])), ["done", "web"]);
    assert_eq!(lines(&ps(&["name=we"])), ["web"]);
    assert_eq!(lines(&ps(&["name=web", "name=done"])), ["done", "web"]);
    assert_eq!(lines(&ps(&["state=exited"])), ["done"]);
    assert_eq!(
        lines(&ps(&["state=running", "state=exited"])),
        ["done", "web"]
    );
    assert!(ps(&["name=web", "state=exited"]).is_empty());
    assert_eq!(lines(&ps(&["label=app=shop", "state=running"])), ["web"]);
    assert_eq!(code(&["ps", "--filter", "color=red"], conf), Some(64));

    // events: -n 0 prints none (it printed one); the window.
    assert_eq!(ok(&["events", "-n", "0"], conf), "");
    assert_eq!(ok(&["events", "-n", "0", "-o", "json"], conf), "");
    let all = ok(&["events", "--since", "1h", "-o", "json"], conf);
    assert!(all.lines().count() >= 2, "{all}");
    for l in all.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        assert!(e["kind"].is_string(), "{l}");
    }
    assert_eq!(
        ok(&["events", "--since", "1h", "-n", "2"], conf)
            .lines()
            .count(),
        2
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let later = (now + 3600).to_string();
    assert_eq!(ok(&["events", "--since", &later], conf), "");
    assert_eq!(ok(&["events", "--until", "1970-01-02T00:00:00Z"], conf), "");
    // Unix seconds with a fraction (Docker's form too): the events above may all fall in the
    // current second, after its whole-second mark.
    let now_exact = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let until_now = ok(
        &[
            "events",
            "--until",
            &format!("{now_exact:.3}"),
            "-o",
            "json",
        ],
        conf,
    );
    assert!(until_now.lines().count() >= 2, "{until_now}");
    assert_eq!(code(&["events", "--since", "soon"], conf), Some(64));
    assert_eq!(code(&["events", "--since", "2days"], conf), Some(64));

    // logs: the same window flags.
    let hour_ago = (now - 3600).to_string();
    assert!(ok(&["logs", "web", "--since", "1h"], conf).contains("hello-web"));
    assert!(ok(&["logs", "web", "--until", &later], conf).contains("hello-web"));
    assert_eq!(ok(&["logs", "web", "--until", &hour_ago], conf), "");
    assert_eq!(ok(&["logs", "web", "--since", &later], conf), "");
    assert_eq!(code(&["logs", "web", "--until", "soon"], conf), Some(64));
    // -f --until: following a running container ends at that time (without --until it would
    // follow as long as web runs).
    let soon = (now + 3).to_string();
    let mut follow = Spawned(
        Command::new(agent_e2e::agent_bin())
            .args(["logs", "-f", "--until", &soon, "web"])
            .env("AGENT_CONFIG", &d.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let status = d.wait_for("logs -f --until to end", Duration::from_secs(60), || {
        follow.0.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status}");

    // events -f -n 0: only what happens from now on.
    let mut follow = Spawned(
        Command::new(agent_e2e::agent_bin())
            .args(["events", "-f", "-n", "0", "-o", "json"])
            .env("AGENT_CONFIG", &d.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let stdout = follow
        .0
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Until the follower is connected, a kill may come before it: send until one is seen.
    let first = d.wait_for("a followed event", Duration::from_secs(20), || {
        ok(&["kill", "-s", "WINCH", "web"], conf);
        rx.recv_timeout(Duration::from_millis(500)).ok()
    });
    drop(follow);
    let e: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
    assert_eq!(e["kind"], "container.kill", "{first}");
}

#[test]
fn exit_codes_follow_the_table() {
    if !require_root("exit_codes_follow_the_table") {
        return;
    }
    let d = configured("cli-codes");
    let c = d.config.to_string_lossy().into_owned();
    let conf: &[(&str, &Path)] = &[("AGENT_CONFIG", d.config.as_path())];

    // 64: usage errors, clap's and the commands' own.
    assert_eq!(code(&["ps", "--bogus"], conf), Some(64));
    assert_eq!(code(&["no-such-command"], conf), Some(64));
    assert_eq!(code(&["plan", "--bogus"], conf), Some(64));
    assert_eq!(code(&["logs", "--tail", "many", "web"], conf), Some(64));
    assert_eq!(
        code(&["exec", "--bogus", "web", "--", "true"], conf),
        Some(64)
    );
    assert_eq!(code(&["exec", "-t", "web", "--", "true"], conf), Some(64));
    // 0 for --help and --version.
    assert_eq!(code(&["--version"], &[]), Some(0));

    // plan: 0 nothing pending, 2 changes pending, 1 an invalid manifest.
    assert_eq!(code(&["plan"], conf), Some(0));
    let other = tempfile::Builder::new()
        .prefix("agent-cli-plan-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"));
    for f in ["busybox.yaml", "web.yaml", "done.yaml"] {
        std::fs::copy(d.manifests.join(f), other.path().join(f)).unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = other.path().to_string_lossy().into_owned();
    assert_eq!(code(&["plan", &dir, "--config", &c], &[]), Some(0));
    std::fs::write(
        other.path().join("more.yaml"),
        container_manifest("more", "exec sleep 1000", ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let o = bare(&["plan", &dir, "--config", &c], &[]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(text(&o).contains("more"), "{o:?}");
    std::fs::write(other.path().join("bad.yaml"), "kind: Nope\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code(&["plan", &dir, "--config", &c], &[]), Some(1));

    // 1: errors.
    assert_eq!(code(&["logs", "nosuch"], conf), Some(1));
    assert_eq!(code(&["inspect", "nosuch"], conf), Some(1));
    assert_eq!(
        code(&["ps", "--config", "/nonexistent/agent.toml"], &[]),
        Some(1)
    );

    // agent exec: the command's own code, else 125 / 126 / 127.
    assert_eq!(
        code(&["exec", "web", "--", "sh", "-c", "exit 3"], conf),
        Some(3)
    );
    assert_eq!(code(&["exec", "web", "--", "true"], conf), Some(0));
    assert_eq!(code(&["exec", "nosuch", "--", "true"], conf), Some(125));
    assert_eq!(code(&["exec", "done", "--", "true"], conf), Some(125));
    assert_eq!(
        code(
            &[
                "exec",
                "web",
                "--config",
                "/nonexistent/agent.toml",
                "--",
                "true"
            ],
            &[]
        ),
        Some(125)
    );
    assert_eq!(code(&["exec", "web", "--", "/etc/passwd"], conf), Some(126));
    assert_eq!(
        code(&["exec", "web", "--", "/no/such/command"], conf),
        Some(127)
    );
    assert_eq!(
        code(&["exec", "web", "--", "no-such-command"], conf),
        Some(127)
    );
}
