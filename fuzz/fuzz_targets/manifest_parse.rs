//! Manifest parsing on arbitrary bytes: `parse_bytes` (one file) and `Loaded::from_sources`
//! (checks across files) must return diagnostics, never panic, hang or blow the memory budget
//! the loader promises (depth, node, alias and document limits).
#![no_main]

use std::path::{Path, PathBuf};

use agent::manifest::{Loaded, parse_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
