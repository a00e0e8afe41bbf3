//! Credential helpers and registry mirrors (issue 18 item 8), against Debian's `docker-registry`
//! on 127.0.0.1 and a fake `docker-credential-test` in a temporary directory put first on the
//! agent's `PATH`. The "upstream" registries that must not be reached are free ports on
//! 127.0.0.1 where nothing listens.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images};
use agent_e2e::graph::{Registry, TestImages, agent_bin, free_port, images, require_root};

const ALICE_BCRYPT: &str = "$2b$04$1LHDosotKalN6Gy8kzysVOVoM/EQxZIlZ/FEC2yqze6U9zJrM4Ouu";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A temporary directory with `docker-credential-test`: it appends the server URL it was given
/// to `asked` and answers alice/s3cret for `host`, "credentials not found" for anything else;
/// and a `config.json` whose `credHelpers` sends `host` to it.
struct Helper {
    dir: tempfile::TempDir,
}

impl Helper {
    fn new(host: &str) -> Helper {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap_or_else(|e| panic!("{e}"));
        let asked = dir.path().join("asked");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\necho \"$server\" >> {}\n\
             if [ \"$server\" = \"{host}\" ]; then\n  \
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}}\\n' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            asked.display()
        );
        let p = bin.join("docker-credential-test");
        std::fs::write(&p, script).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{}},"credHelpers":{{"{host}":"test"}}}}"#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Helper { dir }
    }

    /// `PATH` with the helper's directory first.
    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        )
    }

    /// The server URLs the helper was asked for.
    fn asked(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("asked"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `agent image pull -q --config CONFIG --state-dir STATE [extra..] REFERENCE` with `DOCKER_CONFIG`
/// and `PATH` from `helper` (an empty DOCKER_CONFIG without one).
fn pull(
    config: &Path,
    state: &Path,
    extra: &[&str],
    reference: &str,
    helper: Option<&Helper>,
) -> Output {
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(agent_bin());
    cmd.args(["image", "pull", "-q", "--retries", "0", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .arg(reference)
        .env("RUST_LOG", "warn");
    match helper {
        Some(h) => cmd
            .env("DOCKER_CONFIG", h.dir.path())
            .env("PATH", h.path_env()),
        None => cmd.env("DOCKER_CONFIG", empty.path()),
    };
    cmd.output().unwrap_or_else(|e| panic!("run agent: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, body).unwrap_or_else(|e| panic!("{e}"));
    p
}

#[test]
fn a_credential_helper_runs_only_when_config_toml_allows_it() {
    if !require_root("a_credential_helper_runs_only_when_config_toml_allows_it") {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start_with(Some(("alice", "s3cret", ALICE_BCRYPT)));
    reg.push(&imgs.oci_ref(), "private/busybox:v1", false);
    let host = reg.host();
    let r = format!("{host}/private/busybox:v1");
    let helper = Helper::new(&host);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = work.path().join("state");

    // config.json names the helper, config.toml does not allow it: refused, the helper never
    // ran, and the message says where to allow it.
    let cfg = write_config(work.path(), "");
    let out = pull(
        &cfg,
        &state,
        &["--insecure-registry", &host],
        &r,
        Some(&helper),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("docker-credential-test")
            && err.contains("registries.credential_helpers")
            && err.contains("config.toml")
            && err.contains("config.json"),
        "{}",
        text(&out)
    );
    assert_eq!(
        helper.asked(),
        Vec::<String>::new(),
        "an unlisted helper ran"
    );

    // Allowed: it is asked for the registry's host and its answer logs in.
    let cfg = write_config(
        work.path(),
        "[registries]\ncredential_helpers = [\"pass\", \"test\"]\n",
    );
    let out = pull(
        &cfg,
        &state,
        &["--insecure-registry", &host],
        &r,
        Some(&helper),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(helper.asked(), vec![host.clone()]);
    assert_eq!(images(&state)[0]["id"], imgs.var("CONFIG_DIGEST"));

    // A helper that is allowed but missing from PATH is an error naming the program.
    let cfg = write_config(
        work.path(),
        "[registries]\ncredential_helpers = [\"nothere\"]\n",
    );
    let h2 = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(h2.path().join("config.json"), r#"{"credsStore":"nothere"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(agent_bin())
        .args(["image", "pull", "-q", "--retries", "0", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(work.path().join("state2"))
        .args(["--insecure-registry", &host, &r])
        .env("DOCKER_CONFIG", h2.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("docker-credential-nothere")
            && err.contains("credsStore"),
        "{}",
        text(&out)
    );
}

#[test]
fn mirrors_are_tried_in_order_before_the_registry_and_the_image_keeps_its_name() {
    if !require_root("mirrors_are_tried_in_order_before_the_registry_and_the_image_keeps_its_name")
    {
        return;
    }
    let imgs = TestImages::get();
    let reg = Registry::start();
    reg.push(&imgs.oci_ref(), "test/busybox:v1", false);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Nothing listens on these: an upstream that cannot be reached and a mirror that is down.
    let (upstream, down) = (free_port(), free_port());
    let r = format!("127.0.0.1:{upstream}/test/busybox:v1");

    // The first mirror is down, the second serves: pulled, named as the reference says.
    let cfg = write_config(
        work.path(),
        &format!(
            "[registries.mirrors]\n\"127.0.0.1:{upstream}\" = [\"http://127.0.0.1:{down}\", \"http://{}/\"]\n",
            reg.host()
        ),
    );
    let state = work.path().join("state");
    let out = pull(&cfg, &state, &[], &r, None);
    assert!(out.status.success(), "{}", text(&out));
    let imgs_now = images(&state);
    assert_eq!(imgs_now[0]["id"], imgs.var("CONFIG_DIGEST"));
    let names = imgs_now[0]["names"].to_string();
    assert!(names.contains(&r), "{names}");
    assert!(!names.contains(&reg.host()), "{names}");

    // Without mirrors the same reference cannot be pulled (the upstream is not there).
    let cfg = write_config(work.path(), "");
    let out = pull(&cfg, &work.path().join("state2"), &[], &r, None);
    assert!(!out.status.success(), "{}", text(&out));

    // Every mirror down: the registry itself serves (it is listed as insecure).
    let cfg = write_config(
        work.path(),
        &format!(
            "[registries]\ninsecure = [\"{}\"]\n[registries.mirrors]\n\"{}\" = [\"http://127.0.0.1:{down}\"]\n",
            reg.host(),
            reg.host()
        ),
    );
    let state3 = work.path().join("state3");
    let direct = format!("{}/test/busybox:v1", reg.host());
    let out = pull(&cfg, &state3, &[], &direct, None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(images(&state3)[0]["id"], imgs.var("CONFIG_DIGEST"));

    // A mirror written without a scheme is refused with the key and the form to use.
    let cfg = write_config(
        work.path(),
        "[registries.mirrors]\n\"docker.io\" = [\"127.0.0.1:5000\"]\n",
    );
    let out = pull(&cfg, &work.path().join("state4"), &[], "busybox", None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("registries.mirrors")
            && err.contains("http://host[:port]"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_daemon_pulls_through_a_mirror_with_an_allowed_helper() {
    if !require_root("the_daemon_pulls_through_a_mirror_with_an_allowed_helper") {
        return;
    }
    require_images();
    let imgs = TestImages::get();
    let reg = Registry::start_with(Some(("alice", "s3cret", ALICE_BCRYPT)));
    reg.push(&imgs.oci_ref(), "private/busybox:v1", false);
    // The reference names a registry that is not there; its mirror needs the helper's login.
    let upstream = free_port();
    let r = format!("127.0.0.1:{upstream}/private/busybox:v1");
    let helper = Helper::new(&reg.host());
    let mut d = Daemon::prepare(
        "mirror",
        &format!(
            "\n[registries]\ncredential_helpers = [\"test\"]\n[registries.mirrors]\n\"127.0.0.1:{upstream}\" = [\"http://{}\"]\n",
            reg.host()
        ),
    );
    d.env("PATH", &helper.path_env());
    d.env("DOCKER_CONFIG", &s(helper.dir.path()));
    d.start();
    d.write(
        "img.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: bb\nspec:\n  registry:\n    reference: {r}\n"
        ),
    );
    let state = d.state.clone();
    let got = d.wait_for(
        "the image pulled through the mirror",
        Duration::from_secs(60),
        || {
            images(&state)
                .into_iter()
                .find(|i| i["id"] == imgs.var("CONFIG_DIGEST"))
        },
    );
    assert!(got["names"].to_string().contains(&r), "{got}");
    assert!(helper.asked().contains(&reg.host()), "{:?}", helper.asked());
    d.stop();
}
