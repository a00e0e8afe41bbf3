//! Builds `agent-init` (`init/main.rs`, the init of containers with `init: true`) as a static
//! executable and leaves it in `OUT_DIR` for `include_bytes!` (`src/driver/exec/init.rs`).
//!
//! Static because it runs inside the container, whose root filesystem may have no C library.
//! A separate `rustc` call because cargo cannot give one binary `-C target-feature=+crt-static`
//! (glibc's `libc.a`, Debian's `libc6-dev`, which `build-essential` pulls in) and another not,
//! and `-C panic=abort` (profiles set the panic strategy for the whole workspace). Always
//! optimised for size and stripped: ~1.3 MiB, whatever the profile of the agent.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "init/main.rs";
    println!("cargo::rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let bin = out.join("agent-init");
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2024",
        "--crate-name",
        "agent_init",
        "--target",
    ])
    .arg(&target)
    .args([
        "-C",
        "opt-level=s",
        "-C",
        "panic=abort",
        "-C",
        "codegen-units=1",
        "-C",
        "debuginfo=0",
        "-C",
        "strip=symbols",
        "-C",
        "target-feature=+crt-static",
    ]);
    // The linker cargo would use for this target, if one is configured.
    let key = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    if let Some(linker) = std::env::var_os(&key) {
        cmd.arg("-C")
            .arg(format!("linker={}", linker.to_string_lossy()));
    }
    cmd.arg("-o").arg(&bin).arg(src);
    let status = cmd.status().expect("run rustc for agent-init");
    if !status.success() {
        panic!(
            "building {src} as a static executable failed ({status}); it needs the static C \
             library of the target (glibc's libc.a: Debian's libc6-dev)"
        );
    }
}
