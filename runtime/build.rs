//! Builds rpaas-dmz (runtime/dmz/main.rs), the tiny libc-free program that
//! init exec's in place of the container's program (see that file and
//! src/security/dmz.rs), and leaves it in OUT_DIR for `include_bytes!`.
//!
//! It is compiled with the rustc cargo gives us rather than as a workspace
//! binary: it needs panic=abort and its own link flags (no libc, no start
//! files), which a bin target of the workspace cannot have alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "dmz/main.rs";
    println!("cargo:rerun-if-changed={src}");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.starts_with("x86_64-") || !target.contains("-linux") {
        panic!("rpaas-runtime: rpaas-dmz ({src}) is written for x86_64 Linux; target {target} is not supported");
    }
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("rpaas-dmz");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "rpaas_dmz",
        ])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=s",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
        ])
        .args([
            "-C",
            "relocation-model=static",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        // The workspace's RUSTFLAGS (e.g. the static build's) are not for this program.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("rpaas-runtime: run rustc for {src}: {e}"));
    if !status.success() {
        panic!("rpaas-runtime: rustc failed to build {src}: {status}");
    }
}
