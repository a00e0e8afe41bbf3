//! End-to-end: `agent inspect` shows the effective stop signal and where it comes from (issue
//! 19 item 9): the manifest's `stopSignal`, else the image's, else SIGTERM.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

#[test]
fn inspect_shows_the_effective_stop_signal() {
    if !require_root("inspect_shows_the_effective_stop_signal") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("inspectsig", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("plain.yaml", &container_manifest("plain", "sleep 1000", ""));
    d.write(
        "quits.yaml",
        &container_manifest("quits", "sleep 1000", "  stopSignal: SIGQUIT\n"),
    );
    d.start();
    for (name, want) in [
        (
            "plain",
            serde_json::json!({"signal": "SIGTERM", "from": "default"}),
        ),
        (
            "quits",
            serde_json::json!({"signal": "SIGQUIT", "from": "manifest"}),
        ),
    ] {
        d.wait_for(&format!("{name} running"), Duration::from_secs(60), || {
            (d.try_ps_row(name)?["state"] == "running").then_some(())
        });
        let out = d.cli_ok(&["inspect", name]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["stopSignal"], want, "{name}: {out}");
    }
}
