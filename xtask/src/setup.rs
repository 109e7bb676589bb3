//! `cargo xtask setup`: installs what building and testing need, and only
//! what is missing, so a second run takes seconds.
//!
//! 1. Debian packages the tests and the bpf-linker build use (`apt-get
//!    update` once, only when something is missing).
//! 2. The nightly toolchain's `rust-src` (the XDP program is built with
//!    `-Z build-std=core`).
//! 3. bpf-linker, built against the LLVM shared library that ships inside
//!    the nightly toolchain (no system LLVM needed), cached in
//!    `~/.cache/smtp-sensor/bpf-linker`, where `sensor/build.rs` finds it.
//! 4. cargo-fuzz (`cargo install`, into `~/.cargo/bin`), for the fuzz
//!    targets of `fuzz/` (`cargo xtask fuzz`, and briefly `cargo xtask
//!    test`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cache_dir, is_root, output, status};

/// Debian packages: iproute2 (`ip netns`, veth) and tcpreplay for the live
/// tests; ethtool for the load test (the veth's own drop counters);
/// prometheus for `promtool check metrics` (the metrics format test);
/// dpkg-dev and systemd for building and checking the .deb
/// (`dpkg-deb`, `systemd-analyze verify`); a C toolchain and zlib headers
/// to build bpf-linker; redis-server and redis-tools for the fleet-mode
/// tests (each starts its own server; `redis-cli` inspects it).
const PACKAGES: &[&str] = &[
    "iproute2",
    "redis-server",
    "redis-tools",
    "tcpreplay",
    "ethtool",
    "prometheus",
    "dpkg-dev",
    "systemd",
    "gcc",
    "libc6-dev",
    "zlib1g-dev",
];
/// Toolchain the XDP program is built with.
const NIGHTLY: &str = "nightly";
/// bpf-linker release that works with the nightly's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-fuzz release the fuzz targets are run with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    println!("xtask: setup complete");
    Ok(())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo = if is_root() {
        None
    } else if Command::new("sudo")
        .arg("-n")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("sudo")
    } else {
        bail!(
            "missing packages {}; run as root or install them: apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        );
    };
    let apt = |args: &[&str]| {
        let mut cmd = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        status(&mut cmd)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn deb_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

fn rustup(args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.args(args).env_remove("RUSTUP_TOOLCHAIN");
    c
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = output(&mut rustup(&[
        "run", NIGHTLY, "rustc", "--print", "sysroot",
    ]))
    .context("the nightly toolchain is needed to build the XDP program")?;
    Ok(PathBuf::from(out.trim()))
}

fn nightly_rust_src() -> Result<()> {
    let has_nightly = output(&mut rustup(&["toolchain", "list"]))?
        .lines()
        .any(|l| l.starts_with(NIGHTLY));
    if !has_nightly {
        status(&mut rustup(&[
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let sysroot = nightly_sysroot()?;
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        status(&mut rustup(&[
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
    }
    Ok(())
}

/// LLVM major version of the nightly compiler (`rustc -vV`).
fn nightly_llvm_major() -> Result<u32> {
    let vv = output(&mut rustup(&["run", NIGHTLY, "rustc", "-vV"]))?;
    let ver = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` shows no LLVM version")?;
    ver.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot read the LLVM major version from {ver:?}"))
}

/// Points `<cache>/llvm-nightly/lib` at the nightly's libLLVM, with the
/// plain `libLLVM.so` name the linker looks for. Links that are already
/// right are left alone (a build may be using them). Returns the prefix.
fn llvm_prefix(cache: &Path, sysroot: &Path) -> Result<PathBuf> {
    let prefix = cache.join("llvm-nightly");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let src = sysroot.join("lib");
    let mut wanted: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&src).with_context(|| format!("cannot list {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("libLLVM") {
            continue;
        }
        if name.starts_with("libLLVM.so.") {
            wanted.push(("libLLVM.so".into(), entry.path()));
        }
        wanted.push((name, entry.path()));
    }
    if !wanted.iter().any(|(n, _)| n == "libLLVM.so") {
        bail!(
            "no libLLVM.so.* in {}; is the nightly toolchain complete?",
            src.display()
        );
    }
    // Drop links that are not wanted any more (an older nightly's).
    for entry in fs::read_dir(&lib)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.iter().any(|(n, _)| *n == name) {
            fs::remove_file(entry.path())?;
        }
    }
    for (name, target) in wanted {
        let link = lib.join(&name);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))?;
    }
    Ok(prefix)
}

fn bpf_linker() -> Result<()> {
    let cache = cache_dir()?;
    let sysroot = nightly_sysroot()?;
    let major = nightly_llvm_major()?;
    let prefix = llvm_prefix(&cache, &sysroot)?;
    let root = cache.join("bpf-linker");
    let bin = root.join("bin/bpf-linker");
    if bpf_linker_ok(&root, &bin) {
        return Ok(());
    }
    println!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (a few minutes, once)"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--force",
    ])
    .args([
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ])
    .arg("--root")
    .arg(&root)
    .env("LLVM_PREFIX", &prefix)
    .env_remove("CARGO_TARGET_DIR");
    status(&mut cmd)?;
    if !bpf_linker_ok(&root, &bin) {
        bail!("bpf-linker was built but does not run: {}", bin.display());
    }
    Ok(())
}

/// Installed at the right version, and it runs (its libLLVM, through the
/// links just refreshed, resolves to the current nightly's).
fn bpf_linker_ok(root: &Path, bin: &Path) -> bool {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let listed = Command::new(cargo)
        .args(["install", "--list", "--root"])
        .arg(root)
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .contains(&format!("bpf-linker v{BPF_LINKER_VERSION}:"))
        });
    listed
        && Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// cargo-fuzz at [`CARGO_FUZZ_VERSION`] (and the nightly toolchain it
/// builds with), installed when missing.
pub fn cargo_fuzz() -> Result<()> {
    nightly_rust_src()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["install", "--list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .contains(&format!("cargo-fuzz v{CARGO_FUZZ_VERSION}:"))
        });
    if installed {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (a minute or two, once)");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ])
    // Not into the workspace's target directory: its own, dropped after.
    .env_remove("CARGO_TARGET_DIR");
    status(&mut cmd)
}
