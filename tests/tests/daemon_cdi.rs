//! End-to-end: CDI devices (issue 17 item 3). The test writes CDI spec files into its own CDI
//! directory (config `cdi_spec_dirs`): a JSON spec whose device `example.com/fake=null0` names
//! a device node (the host's `/dev/null` at `/dev/fakenull`), an env variable, a read-only bind
//! of a directory the test made and a `createRuntime` hook; the spec's own edits add another
//! variable. A YAML spec of another kind adds a variable. The container sees the node, both
//! variables, the file under the mount; the hook ran on the host. A name no spec defines fails
//! the create naming it. On the old code the field was unknown (validate refused the manifest).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cdi_devices_are_resolved_and_applied() {
    if !require_root("cdi_devices_are_resolved_and_applied") {
        return;
    }
    require_images();
    let base = tempfile::Builder::new()
        .prefix("agent-cdi-")
        .tempdir()
        .expect("tempdir");
    let cdi = base.path().join("cdi");
    let data = base.path().join("data");
    for dir in [base.path(), &cdi, &data] {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(data.join("hello"), "from-cdi-mount\n").expect("write");
    let hook_mark = base.path().join("hook-ran");
    let json = format!(
        r#"{{"cdiVersion":"0.6.0","kind":"example.com/fake",
  "containerEdits":{{"env":["FAKE_VENDOR=example"]}},
  "devices":[{{"name":"null0","containerEdits":{{
    "deviceNodes":[{{"path":"/dev/fakenull","hostPath":"/dev/null","permissions":"rw"}}],
    "env":["FAKE_DEVICE=null0"],
    "mounts":[{{"hostPath":"{}","containerPath":"/opt/fake","options":["ro","rbind"]}}],
    "hooks":[{{"hookName":"createRuntime","path":"/bin/sh","args":["sh","-c","echo ran > {}"]}}]
  }}}}]}}"#,
        data.display(),
        hook_mark.display()
    );
    std::fs::write(cdi.join("fake.json"), json).expect("write spec");
    std::fs::write(
        cdi.join("other.yaml"),
        "cdiVersion: 0.6.0\nkind: example.com/yaml\ndevices:\n  - name: one\n    containerEdits:\n      env: [YAML_DEVICE=one]\n",
    )
    .expect("write spec");
    for f in ["fake.json", "other.yaml"] {
        std::fs::set_permissions(cdi.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    let mut d = Daemon::prepare("cdi", &format!("cdi_spec_dirs = [\"{}\"]\n", cdi.display()));
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "gpu.yaml",
        &container_manifest(
            "gpu",
            "echo hi > /dev/fakenull && stat -c node=%t:%T /dev/fakenull; \
             echo env=$FAKE_DEVICE/$FAKE_VENDOR/$YAML_DEVICE; cat /opt/fake/hello; \
             (echo x > /opt/fake/w) 2>/dev/null || echo mount-ro; echo done; exec sleep 1000",
            "  devices: [example.com/fake=null0, example.com/yaml=one]\n",
        ),
    );
    d.write(
        "none.yaml",
        &container_manifest(
            "none",
            "exec sleep 1000",
            "  devices: [example.com/fake=missing]\n",
        ),
    );
    d.start();
    let text = d.wait_for("gpu's output", Duration::from_secs(60), || {
        let t = logs(&d, "gpu");
        t.contains("done").then_some(t)
    });
    assert!(text.contains("node=1:3"), "{text}");
    assert!(text.contains("env=null0/example/one"), "{text}");
    assert!(text.contains("from-cdi-mount"), "{text}");
    assert!(text.contains("mount-ro"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&hook_mark).unwrap_or_default(),
        "ran\n"
    );
    let failed = d.wait_for("none refused", Duration::from_secs(60), || {
        d.events_of("none", "change.failed").into_iter().next()
    });
    let text = failed.to_string();
    assert!(
        text.contains("CDI device example.com/fake=missing is not defined"),
        "{text}"
    );
}
