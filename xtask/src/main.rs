//! `cargo xtask <task>`: the project's build and test entry points.
//!
//! - `setup`: everything a fresh machine needs (Debian packages, nightly
//!   `rust-src`, bpf-linker); idempotent, seconds when nothing is missing.
//! - `build`: the XDP program and the release `smtp-sensor`.
//! - `test`: setup, build, every unit and integration test of the
//!   workspace (the live XDP tests included: needs root), the Debian
//!   package check (`deb --check`), the Zeek corpus comparison, and each
//!   fuzz target for a few seconds.
//! - `deb [--check]`: the Debian package (`target/deb/*.deb`); `--check`
//!   installs it, checks `--version`, the man page and `systemd-analyze
//!   verify` of the installed unit, and purges it (see `deb.rs`).
//! - `fuzz [--seconds N] [--target NAME]`: the cargo-fuzz targets of
//!   `fuzz/`, each for N seconds (see `fuzz.rs`).
//! - `run -- <args>`: build, then run `smtp-sensor <args>`.
//! - `replay [--netns NS] <pcap> -i <iface> [options]`: build, then run
//!   the project's replayer (`smtp-replay`, see `bench/replay`) to send a
//!   capture into a veth at millions of frames a second, in network
//!   namespace NS when given (`smtp-replay --help` for its options).
//! - `demo`: setup, build, then the sensor live on a veth pair in network
//!   namespaces, fed with generated SMTP traffic; prints what it captured.
//! - `compare-zeek [<dir>]`: smtp.log field by field against Zeek's.
//! - `bench [-- <criterion args>]`: the criterion benches in `bench/`.
//! - `loadtest [options] [-- <sensor args>]`: the sensor live on a veth
//!   pair under load (smtp-replay, or tcpreplay) in one or more thread
//!   configurations, at several rates or up to the highest without loss;
//!   tables (and a plot) of what it took, dropped and logged, beside the
//!   offline cost of the same capture (see `loadtest.rs`).
//! - `soak [--scale small|full] [--attack NAME]…`: attack captures
//!   interleaved with ordinary mail, offline with 1 and 2 workers: cost per
//!   packet and byte against a clean capture, peak RSS, and whether every
//!   ordinary session was logged exactly (see `soak.rs`).

mod bench;
mod compare_zeek;
mod deb;
mod demo;
mod fuzz;
mod loadtest;
mod netns;
mod pcap;
mod setup;
mod soak;
mod table;
mod util;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use util::{cargo, root_dir};

const USAGE: &str =
    "usage: cargo xtask <setup | build | test | run -- <args> | demo | compare-zeek [<dir>]
                    | deb [--check]
                    | fuzz [--seconds N] [--target NAME]
                    | bench [-- <criterion args>] | loadtest [options] [-- <sensor args>]
                    | replay [--netns NS] <pcap> -i <iface> [smtp-replay options]
                    | soak [--scale small|full] [--attack NAME]...>
       cargo xtask loadtest --help
       cargo xtask replay --help
       cargo xtask soak --help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("build") => setup::run().and_then(|()| build()),
        Some("test") => test(),
        Some("run") => run(&args[1..]),
        Some("demo") => demo::run(),
        Some("deb") => setup::run().and_then(|()| deb::run(&args[1..])),
        Some("compare-zeek") => compare_zeek::run(&args[1..]).map_err(anyhow::Error::msg),
        Some("bench") => bench::run(&args[1..]),
        Some("loadtest") => loadtest::run(&args[1..]),
        Some("replay") => replay(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Release build of the sensor; its build script builds and embeds the
/// XDP program.
fn build() -> Result<()> {
    cargo(&["build", "--release", "-p", "smtp-sensor", "--bins"])?;
    let bin = util::target_dir().join("release/smtp-sensor");
    println!("xtask: built {}", bin.display());
    Ok(())
}

/// Everything: setup, then all workspace tests (unit, integration, live),
/// the Zeek corpus comparison, then each fuzz target briefly.
fn test() -> Result<()> {
    setup::run()?;
    // The live tests start the debug binary; build it (and the XDP
    // program it embeds) before the test binaries run.
    cargo(&["build", "-p", "smtp-sensor", "--bins"])?;
    cargo(&["test", "--workspace", "--no-fail-fast"])?;
    deb::run(&["--check".to_owned()])?;
    compare_zeek::run(&[]).map_err(anyhow::Error::msg)?;
    fuzz::smoke()?;
    println!("xtask: all tests passed");
    Ok(())
}

/// `cargo xtask run -- <args>`.
fn run(args: &[String]) -> Result<()> {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    setup::run()?;
    build()?;
    run_release("smtp-sensor", args, None)
}

/// `cargo xtask replay [--netns NS] <smtp-replay args>`.
fn replay(args: &[String]) -> Result<()> {
    let (netns, args) = match args {
        [flag, ns, rest @ ..] if flag == "--netns" => (Some(ns.as_str()), rest),
        _ => (None, args),
    };
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    setup::run()?;
    cargo(&["build", "--release", "-p", "smtp-replay", "--bins"])?;
    run_release("smtp-replay", args, netns)
}

/// Runs the release build of `name` with `args` (in network namespace
/// `netns` when given), failing when it does.
fn run_release(name: &str, args: &[String], netns: Option<&str>) -> Result<()> {
    let bin = util::target_dir().join("release").join(name);
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => std::process::Command::new(&bin),
    };
    let status = cmd
        .args(args)
        .current_dir(root_dir())
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !status.success() {
        bail!("{name} exited with {status}");
    }
    Ok(())
}
