//! Manifest parsing on arbitrary bytes, both kinds:
//! - the agent's YAML manifests: `parse_bytes` (one file) and `Loaded::from_sources` (checks
//!   across files) must return diagnostics, never panic, hang or blow the memory budget the
//!   loader promises (depth, node, alias and document limits);
//! - a registry's image manifest or index (JSON, what `agent image pull` receives):
//!   `pull::manifest::parse`, then for an index the platform choice (`pick_manifest`) for a few
//!   hosts, and the image config parser (`image_config`) must return errors, never panic; a
//!   chosen manifest is one of the index's entries.
//!
//! One target for both (each input goes through both parsers; JSON is YAML too) keeps the CI
//! smoke run at two targets.
#![no_main]

use std::path::{Path, PathBuf};

use agent::driver::graph::Digest;
use agent::driver::graph::import::platform::Platform;
use agent::driver::graph::pull::{manifest, pick_manifest};
use agent::manifest::{Loaded, parse_bytes};
use libfuzzer_sys::fuzz_target;

fn registry_docs(data: &[u8]) {
    if let Ok((doc, _media_type)) = manifest::parse(data)
        && let Some(entries) = doc.manifests.as_deref()
    {
        let digest = Digest::of(data);
        for (arch, variant) in [("amd64", None), ("arm", Some("v7")), ("arm64", None)] {
            let host = Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            };
            if let Ok(chosen) = pick_manifest(&host, &digest, entries) {
                assert!(
                    entries.iter().any(|e| e.digest == chosen.digest),
                    "chose a manifest that is not in the index"
                );
            }
        }
    }
    let _ = agent::driver::exec::spec::image_config(data);
}

fuzz_target!(|data: &[u8]| {
    registry_docs(data);
    let single = parse_bytes(Path::new("/fuzz/a.yaml"), data);
    // A file that parsed must produce at least one object, and a refused one at least one
    // diagnostic: an empty `Err` would leave the user without a reason.
    match &single.outcome {
        Ok(objects) => assert!(!objects.is_empty(), "Ok with no objects"),
        Err(diags) => assert!(!diags.is_empty(), "Err with no diagnostics"),
    }
    // The same bytes split at the first `\n---\n` into two files, to exercise the
    // cross-file checks (duplicate names, dangling references, link cycles).
    let text = data;
    let split = text
        .windows(5)
        .position(|w| w == b"\n---\n")
        .unwrap_or(text.len());
    let (a, b) = text.split_at(split);
    let _ = Loaded::from_sources(vec![
        (PathBuf::from("/fuzz/a.yaml"), a.to_vec()),
        (PathBuf::from("/fuzz/b.yaml"), b.to_vec()),
    ]);
});
