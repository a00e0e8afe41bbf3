//! Editor-style saves and a GitOps-style `..data` symlink swap, end to end: the running agent
//! must see each as exactly one change of content and run exactly one reconcile pass for it,
//! never load a half-written file. Volume manifests keep the test cheap (no containers).
//! Driven through files and the CLI; passes are counted in the agent's debug log.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_root};

fn volume(name: &str, generation: u32) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: {name}\n  labels: {{gen: \"{generation}\"}}\nspec: {{}}\n"
    )
}

/// Passes whose triggers include a manifest file change.
fn file_passes(d: &Daemon) -> usize {
    d.log_text()
        .lines()
        .filter(|l| l.contains("\"pass starts\"") && l.contains("manifest files changed"))
        .count()
}

fn newest_event_id(d: &Daemon) -> i64 {
    d.events()
        .last()
        .and_then(|e| e["id"].as_i64())
        .unwrap_or(0)
}

/// Events of `kind` after event `after`.
fn events_after(d: &Daemon, after: i64, kind: &str) -> Vec<serde_json::Value> {
    d.events()
        .into_iter()
        .filter(|e| e["id"].as_i64().unwrap_or(0) > after && e["kind"] == kind)
        .collect()
}

fn write_mode(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// Waits until the file passes stop changing (no pass for 1.5 s), returns their count.
fn settled_passes(d: &Daemon) -> usize {
    let mut last = file_passes(d);
    let mut quiet = 0;
    while quiet < 15 {
        std::thread::sleep(Duration::from_millis(100));
        let n = file_passes(d);
        if n == last {
            quiet += 1;
        } else {
            last = n;
            quiet = 0;
        }
    }
    last
}

#[test]
fn editor_saves_end_in_one_reconcile_each() {
    if !require_root("editor_saves_end_in_one_reconcile_each") {
        return;
    }
    let mut d = Daemon::prepare("editor", "");
    d.start();
    d.write("v.yaml", &volume("ed-v", 1));
    d.wait_for("v.yaml applied", Duration::from_secs(30), || {
        d.file_status("v.yaml")
            .filter(|s| s["status"] == "ok" && s["applied_at"].is_i64())
    });
    let dir = d.manifests.clone();

    // vim (backupcopy=no/auto): swap file, `4913` probe, rename to a backup, write the new file
    // in two chunks (the first one alone is not valid), delete the backup and the swap file.
    let passes = settled_passes(&d);
    let mark = newest_event_id(&d);
    write_mode(&dir.join(".v.yaml.swp"), "b0VIM 9.0 swap");
    write_mode(&dir.join("4913"), "");
    std::fs::remove_file(dir.join("4913")).expect("rm 4913");
    std::fs::rename(dir.join("v.yaml"), dir.join("v.yaml~")).expect("backup");
    let text = volume("ed-v", 2);
    let (a, b) = text.split_at(text.len() / 2);
    write_mode(&dir.join("v.yaml"), a);
    std::thread::sleep(Duration::from_millis(60));
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("v.yaml"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b.as_bytes()))
        .expect("append");
    std::fs::remove_file(dir.join("v.yaml~")).expect("rm backup");
    std::fs::remove_file(dir.join(".v.yaml.swp")).expect("rm swap");
    d.wait_for("gen 2 loaded", Duration::from_secs(30), || {
        (!events_after(&d, mark, "manifest.loaded").is_empty()).then_some(())
    });
    assert_eq!(settled_passes(&d), passes + 1, "vim save: one pass");
    assert_eq!(events_after(&d, mark, "manifest.loaded").len(), 1);
    assert!(events_after(&d, mark, "manifest.error").is_empty());
    assert_eq!(events_after(&d, mark, "volume.update").len(), 1);

    // Atomic save (temp file + rename, as emacs, VS Code and `sed -i` do).
    let passes = settled_passes(&d);
    let mark = newest_event_id(&d);
    write_mode(&dir.join(".v.yaml.tmp123"), &volume("ed-v", 3));
    std::fs::rename(dir.join(".v.yaml.tmp123"), dir.join("v.yaml")).expect("rename");
    d.wait_for("gen 3 loaded", Duration::from_secs(30), || {
        (!events_after(&d, mark, "manifest.loaded").is_empty()).then_some(())
    });
    assert_eq!(settled_passes(&d), passes + 1, "atomic rename: one pass");
    assert_eq!(events_after(&d, mark, "volume.update").len(), 1);

    // Saving the same content again (touch, rewrite) changes nothing: no pass.
    let passes = settled_passes(&d);
    write_mode(&dir.join("v.yaml"), &volume("ed-v", 3));
    assert_eq!(settled_passes(&d), passes, "same content: no pass");
    d.stop();
}

#[test]
fn gitops_data_symlink_swap_of_200_files_is_one_reconcile() {
    if !require_root("gitops_data_symlink_swap_of_200_files_is_one_reconcile") {
        return;
    }
    const N: usize = 200;
    let mut d = Daemon::prepare("gitops", "");
    let dir = d.manifests.clone();
    // What Kubernetes' atomic writer (ConfigMap volumes, git-sync) lays out.
    let generation = |g: u32| {
        let gen_dir = dir.join(format!("..2024_0{g}"));
        std::fs::create_dir(&gen_dir).expect("mkdir generation");
        std::fs::set_permissions(&gen_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for i in 0..N {
            write_mode(
                &gen_dir.join(format!("v{i:03}.yaml")),
                &volume(&format!("go-v{i:03}"), g),
            );
        }
    };
    generation(1);
    symlink("..2024_01", dir.join("..data")).expect("..data");
    for i in 0..N {
        symlink(
            format!("..data/v{i:03}.yaml"),
            dir.join(format!("v{i:03}.yaml")),
        )
        .expect("link");
    }
    d.start();
    d.wait_for("200 volumes", Duration::from_secs(60), || {
        (d.events()
            .iter()
            .filter(|e| e["kind"] == "volume.create")
            .count()
            == N)
            .then_some(())
    });
    let passes = settled_passes(&d);
    let mark = newest_event_id(&d);

    // The swap: a new generation directory, `..data_tmp` pointing at it renamed over `..data`,
    // the old generation removed.
    generation(2);
    symlink("..2024_02", dir.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    std::fs::remove_dir_all(dir.join("..2024_01")).expect("rm old generation");
    d.wait_for("200 updates", Duration::from_secs(60), || {
        (events_after(&d, mark, "volume.update").len() == N).then_some(())
    });
    assert_eq!(settled_passes(&d), passes + 1, "the swap is one pass");
    assert_eq!(events_after(&d, mark, "manifest.loaded").len(), N);
    assert!(events_after(&d, mark, "manifest.error").is_empty());
    assert!(events_after(&d, mark, "volume.remove").is_empty());
    let status = d.cli_json(&["status"]);
    let files = status["files"].as_array().expect("files");
    assert_eq!(files.len(), N);
    assert!(files.iter().all(|f| f["status"] == "ok"));
    d.stop();
}
