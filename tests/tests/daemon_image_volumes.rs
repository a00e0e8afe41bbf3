//! Issue 16 item 4 and issue 19 item 1: image volumes and copy-up.
//! - A new named volume mounted over an image directory starts with that directory's content,
//!   owner, mode and extended attributes (once: what the application deletes stays deleted
//!   across a recreate); `nocopy: true` leaves it empty.
//! - An image `Volumes` path no mount covers gets an anonymous volume that survives a recreate
//!   (an env edit) and goes with the container when its manifest is removed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_images, require_root};
use agent_e2e::layout::{Entry, Layout};

fn container(name: &str, env: &str, volumes: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: app\n  \
         command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n  \
         env: {{FOO: \"{env}\"}}\n{volumes}"
    )
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

fn running_id(d: &Daemon, name: &str, not: Option<&str>) -> String {
    d.wait_for(&format!("{name} running"), Duration::from_secs(60), || {
        let r = d.ps_row(name);
        let id = r["id"].as_str().unwrap_or_default().to_string();
        (r["state"] == "running" && Some(id.as_str()) != not).then_some(id)
    })
}

#[test]
fn image_volumes_and_copy_up() {
    if !require_root("image_volumes_and_copy_up") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("imagevol", "");
    let mut layout = Layout::new(&d.dir.path().join("app"));
    layout.add(
        "1",
        &[
            Entry::dir("data", 1000, 1000, 0o750),
            Entry::file("data/seed.txt", b"from-image\n", 1000, 1000, 0o640)
                .xattr("user.origin", b"image"),
        ],
        serde_json::json!({"Volumes": {"/data": {}}}),
    );
    d.start();
    d.write(
        "app.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: app\nspec:\n  ociLayout:\n    path: {}\n    tag: \"1\"\n---\n\
             apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: vol\n---\n\
             apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: bare\n",
            layout.dir.display()
        ),
    );
    d.write(
        "named.yaml",
        &container("named", "1", "  volumes: [{volume: vol, target: /data}]\n"),
    );
    d.write("anon.yaml", &container("anon", "1", ""));
    d.write(
        "bare.yaml",
        &container(
            "bare",
            "1",
            "  volumes: [{volume: bare, target: /data, nocopy: true}]\n",
        ),
    );
    let named = running_id(&d, "named", None);
    let anon = running_id(&d, "anon", None);
    let bare = running_id(&d, "bare", None);

    // The named volume starts with the image's /data: owner, mode, content, xattr.
    let data = d.state.join("volumes/vol/_data");
    let m = std::fs::metadata(&data).expect("volume dir");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o750));
    let seed = data.join("seed.txt");
    assert_eq!(
        std::fs::read_to_string(&seed).unwrap_or_default(),
        "from-image\n"
    );
    let sm = std::fs::metadata(&seed).expect("seed");
    assert_eq!((sm.uid(), sm.mode() & 0o7777), (1000, 0o640));
    assert_eq!(xattr(&seed, "user.origin").as_deref(), Some(&b"image"[..]));
    assert!(d.sh_in(
        &named,
        "test \"$(stat -c '%u %a' /data)\" = '1000 750' && grep -qx from-image /data/seed.txt"
    ));
    // nocopy: empty.
    assert!(
        d.sh_in(&bare, "test -z \"$(ls -A /data)\""),
        "nocopy volume not empty"
    );
    // The anonymous volume at the image's /data: filled the same way, writable.
    assert!(d.sh_in(
        &anon,
        "test \"$(stat -c '%u %a' /data)\" = '1000 750' && grep -qx from-image /data/seed.txt"
    ));
    assert!(d.sh_in(&anon, "echo kept > /data/written && rm /data/seed.txt"));
    assert!(d.sh_in(&named, "rm /data/seed.txt && echo mine > /data/mine"));

    // An env edit recreates both; the anonymous volume's data survives, the named volume is not
    // filled again (once, when new).
    d.write("anon.yaml", &container("anon", "2", ""));
    d.write(
        "named.yaml",
        &container("named", "2", "  volumes: [{volume: vol, target: /data}]\n"),
    );
    let anon2 = running_id(&d, "anon", Some(&anon));
    let named2 = running_id(&d, "named", Some(&named));
    assert!(
        d.sh_in(
            &anon2,
            "grep -qx kept /data/written && test ! -e /data/seed.txt"
        ),
        "anonymous volume data lost on recreate"
    );
    assert!(
        d.sh_in(
            &named2,
            "grep -qx mine /data/mine && test ! -e /data/seed.txt"
        ),
        "named volume filled again"
    );
    let anon_dir = d.state.join("anonymous-volumes/anon");
    assert!(anon_dir.join("data/_data/written").is_file());

    // The container's manifest goes: its anonymous volume goes with it; named volumes stay.
    d.remove("anon.yaml");
    d.wait_for("anon removed", Duration::from_secs(60), || {
        d.try_ps_row("anon").is_none().then_some(())
    });
    assert!(!anon_dir.exists(), "anonymous volume left behind");
    assert!(data.join("mine").is_file());
    d.stop();
}

#[test]
fn anonymous_volume_of_a_removal_cut_by_kill_9_goes_at_recovery() {
    if !require_root("anonymous_volume_of_a_removal_cut_by_kill_9_goes_at_recovery") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("anoncrash", "workers = 1\n", false);
    let mut layout = Layout::new(&d.dir.path().join("app"));
    layout.add(
        "1",
        &[Entry::file("data/seed.txt", b"s\n", 0, 0, 0o644)],
        serde_json::json!({"Volumes": {"/data": {}}}),
    );
    d.start();
    d.write(
        "app.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: app\nspec:\n  ociLayout:\n    path: {}\n    tag: \"1\"\n",
            layout.dir.display()
        ),
    );
    d.write("anon.yaml", &container("anon", "1", ""));
    running_id(&d, "anon", None);
    let anon_dir = d.state.join("anonymous-volumes/anon");
    assert!(anon_dir.join("data/_data/seed.txt").is_file());

    // The removal pauses half-way (runtime gone, row not yet): kill -9 there.
    d.stop();
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "5000");
    d.start();
    d.remove("anon.yaml");
    d.wait_for("the removal paused", Duration::from_secs(60), || {
        d.log_text()
            .lines()
            .any(|l| l.contains("pausing half-way") && l.contains("\"step\":\"remove\""))
            .then_some(())
    });
    d.stop_with(libc::SIGKILL);
    assert!(
        anon_dir.exists(),
        "removed before the pause: the test cuts nothing"
    );
    d.clear_env();
    d.start();
    d.wait_for(
        "recovery removed the anonymous volume",
        Duration::from_secs(60),
        || (!anon_dir.exists() && d.try_ps_row("anon").is_none()).then_some(()),
    );
    d.stop();
}
