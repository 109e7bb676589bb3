//! For build scripts: builds the XDP programs of `sensor-ebpf` with the
//! nightly toolchain for `bpfel-unknown-none` and puts the objects a crate
//! embeds into its `$OUT_DIR` (`sensor/build.rs`: `sensor-xdp`;
//! `bench/replay/build.rs`: `replay-xdp`). Cargo reruns the calling build
//! script whenever a file of the eBPF crate (or the shared `sensor-common`)
//! changes, so an embedded program is never stale.
//!
//! When the eBPF toolchain is missing (no nightly, no rust-src, no
//! bpf-linker) the build still succeeds, with a warning, and embeds an empty
//! object: offline mode (`-r`) works everywhere, and live mode (`-i`) stops
//! with an error that says to run `cargo xtask setup`. Set
//! `SMTP_SENSOR_REQUIRE_EBPF=1` (as `cargo xtask build/test` do) to turn a
//! missing toolchain into a build error instead.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Toolchain the eBPF crate is built with.
const TOOLCHAIN: &str = "nightly";
/// Target triple of the XDP program (little-endian BPF).
const TARGET: &str = "bpfel-unknown-none";
/// This crate's directory, inside the eBPF crate's.
const BUILDER_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Builds the eBPF crate and copies the program `bin` (a binary target of
/// sensor-ebpf/Cargo.toml) to `$OUT_DIR/<bin>`, where the calling crate
/// embeds it with `include_bytes_aligned!`. Call from a build script.
pub fn embed(bin: &str) {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let ebpf_dir = Path::new(BUILDER_DIR)
        .parent()
        .expect("sensor-ebpf/builder has a parent")
        .to_path_buf();
    let dst = out_dir.join(bin);

    for p in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "common/src",
        "common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    for v in ["SMTP_SENSOR_REQUIRE_EBPF", "SMTP_SENSOR_SKIP_EBPF"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let require = env::var_os("SMTP_SENSOR_REQUIRE_EBPF").is_some_and(|v| v == "1");

    if env::var_os("SMTP_SENSOR_SKIP_EBPF").is_some_and(|v| v == "1") {
        return missing(&dst, require, "SMTP_SENSOR_SKIP_EBPF=1");
    }
    let Some(linker_dir) = find_bpf_linker() else {
        // Watching a file that does not exist makes cargo rerun this script
        // on every build, so the program is built as soon as setup has run.
        if let Some(cached) = cached_linker_dir() {
            println!(
                "cargo:rerun-if-changed={}",
                cached.join("bpf-linker").display()
            );
        }
        return missing(
            &dst,
            require,
            "bpf-linker not found (PATH or ~/.cache/smtp-sensor/bpf-linker/bin)",
        );
    };
    println!(
        "cargo:rerun-if-changed={}",
        linker_dir.join("bpf-linker").display()
    );
    if let Err(why) = check_nightly() {
        return missing(&dst, require, &why);
    }

    let target_dir = out_dir.join("ebpf-target");
    let mut rustflags = OsString::new();
    for (i, flag) in [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    let mut path = OsString::from(linker_dir.as_os_str());
    if let Some(p) = env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--release", "--bins"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf_dir)
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // Variables the outer (stable) cargo set for this build script must not
    // leak into the nested nightly build.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(key);
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => return missing(&dst, require, &format!("cannot run rustup ({e})")),
    };
    if !status.success() {
        // The toolchain is there, so this is a real compile error in the
        // XDP program: always fatal.
        panic!("building the XDP program (sensor-ebpf) failed: {status}; see the errors above");
    }
    let built = target_dir.join(TARGET).join("release").join(bin);
    if let Err(e) = fs::copy(&built, &dst) {
        panic!("cannot copy {} to {}: {e}", built.display(), dst.display());
    }
}

/// Directory holding `bpf-linker`: from PATH, else where `cargo xtask setup`
/// installs it.
fn find_bpf_linker() -> Option<PathBuf> {
    let from_path = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(cached_linker_dir())
        .find(|d| d.join("bpf-linker").is_file())
}

/// Where `cargo xtask setup` installs bpf-linker.
fn cached_linker_dir() -> Option<PathBuf> {
    env::var_os("HOME").map(|h| Path::new(&h).join(".cache/smtp-sensor/bpf-linker/bin"))
}

/// The nightly toolchain with `rust-src` (for `-Z build-std=core`).
fn check_nightly() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .output()
        .map_err(|e| format!("cannot run rustup ({e})"))?;
    if !out.status.success() {
        return Err(format!("the {TOOLCHAIN} toolchain is not installed"));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Err(format!("rust-src is not installed for {TOOLCHAIN}"));
    }
    Ok(())
}

/// Embeds an empty object (live mode will refuse to start) or fails.
fn missing(dst: &Path, require: bool, why: &str) {
    if require {
        panic!("the XDP program cannot be built: {why}; run `cargo xtask setup`");
    }
    println!(
        "cargo:warning=XDP program {} not built ({why}); it stays unusable (live capture: -i) until `cargo xtask setup` has run",
        dst.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    if let Err(e) = fs::write(dst, b"") {
        panic!("cannot write {}: {e}", dst.display());
    }
}
