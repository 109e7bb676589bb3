//! `cargo xtask fuzz [--seconds N] [--target NAME]`: runs the cargo-fuzz
//! targets of `fuzz/` (libFuzzer, nightly), each for N seconds, one after
//! the other; fails on the first crash, panic or timeout, and says where
//! libFuzzer saved the input. `cargo xtask test` runs every target briefly
//! ([`smoke`]).
//!
//! The targets are built with debug assertions (integer overflow is a
//! panic) and without a sanitizer: the code they reach has no `unsafe`, so
//! AddressSanitizer would only halve the executions per second.
//!
//! Each target starts from the committed seeds (`fuzz/seeds/<target>`) and
//! the corpus earlier runs grew, kept in the target directory
//! (`<target dir>/fuzz-corpus/<target>`), so the repository never changes
//! under a run. Crashing inputs land in `fuzz/artifacts/<target>/`;
//! reproduce one with `cargo +nightly fuzz run --fuzz-dir fuzz <target>
//! <file>`, print it with `cargo +nightly fuzz fmt --fuzz-dir fuzz <target>
//! <file>`.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{root_dir, show, target_dir};

/// The targets, in the order they run (fuzz/Cargo.toml's binaries).
pub const TARGETS: &[&str] = &["decode", "reassembly", "session", "mime", "config"];
/// Seconds per target of `cargo xtask fuzz` without `--seconds`.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target in `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 15;
/// An input taking longer than this (seconds) is reported as a hang.
const TIMEOUT_SECONDS: u64 = 10;
/// Largest input libFuzzer makes, per target: SMTP conversations and
/// bodies need room for a message; frames and config files do not.
fn max_len(target: &str) -> usize {
    match target {
        "session" | "mime" => 16 * 1024,
        _ => 4096,
    }
}

/// `cargo fuzz build` and `run` options; both must agree, or `run`
/// rebuilds.
const BUILD_FLAGS: &[&str] = &[
    "--fuzz-dir",
    "fuzz",
    "--sanitizer",
    "none",
    "--debug-assertions",
];

/// What one target's run did.
struct Outcome {
    target: String,
    runs: u64,
    per_second: u64,
    corpus: usize,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&s| s > 0)
                    .context("--seconds needs a positive number")?;
            }
            "--target" => only = Some(it.next().context("--target needs a name")?.clone()),
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask fuzz [--seconds N] [--target NAME]\n\
                     runs each fuzz target for N seconds (default {DEFAULT_SECONDS}); targets: {}",
                    TARGETS.join(" ")
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; see cargo xtask fuzz --help"),
        }
    }
    let targets: Vec<&str> = match &only {
        Some(name) if TARGETS.contains(&name.as_str()) => vec![name.as_str()],
        Some(name) => bail!("no fuzz target {name:?}; targets: {}", TARGETS.join(" ")),
        None => TARGETS.to_vec(),
    };
    crate::setup::cargo_fuzz()?;
    fuzz(&targets, seconds)
}

/// Every target for [`SMOKE_SECONDS`] (what `cargo xtask test` runs).
pub fn smoke() -> Result<()> {
    fuzz(TARGETS, SMOKE_SECONDS)
}

fn fuzz(targets: &[&str], seconds: u64) -> Result<()> {
    build()?;
    let mut outcomes = Vec::new();
    for t in targets {
        outcomes.push(run_target(t, seconds)?);
    }
    println!("xtask: fuzz summary ({seconds} s per target):");
    println!(
        "  {:<12} {:>12} {:>10} {:>8}",
        "target", "executions", "exec/s", "corpus"
    );
    for o in &outcomes {
        println!(
            "  {:<12} {:>12} {:>10} {:>8}",
            o.target, o.runs, o.per_second, o.corpus
        );
    }
    println!("xtask: no crash, panic or timeout");
    Ok(())
}

/// `cargo fuzz` with the environment every call needs.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz"])
        .args(args)
        .current_dir(root_dir())
        // The XDP program is not needed to fuzz the parsers; building it
        // with the sanitizer flags would only cost time.
        .env("SMTP_SENSOR_SKIP_EBPF", "1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("SMTP_SENSOR_REQUIRE_EBPF");
    c
}

/// Builds every target once (the runs then start at once).
fn build() -> Result<()> {
    let mut args = vec!["build"];
    args.extend(BUILD_FLAGS);
    crate::util::status(&mut cargo_fuzz(&args))
}

fn run_target(target: &str, seconds: u64) -> Result<Outcome> {
    let root = root_dir();
    let work = target_dir().join("fuzz-corpus");
    let corpus = work.join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let log_path = work.join(format!("{target}.log"));
    let log_file =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let seeds = root.join("fuzz/seeds").join(target);
    let corpus_s = corpus.to_string_lossy().into_owned();
    let seeds_s = seeds.to_string_lossy().into_owned();
    let time = format!("-max_total_time={seconds}");
    let timeout = format!("-timeout={TIMEOUT_SECONDS}");
    let len = format!("-max_len={}", max_len(target));
    let mut args = vec!["run"];
    args.extend(BUILD_FLAGS);
    args.extend([
        target,
        &corpus_s,
        &seeds_s,
        "--",
        &time,
        &timeout,
        &len,
        "-print_final_stats=1",
    ]);
    let mut cmd = cargo_fuzz(&args);
    println!("xtask: $ {} 2> {}", show(&cmd), log_path.display());
    let st = cmd
        .stdout(Stdio::null())
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot run `{}`", show(&cmd)))?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !st.success() && !stalled(target, &log)? {
        // libFuzzer's report: the panic message, the stack, the file.
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        bail!(
            "fuzz target {target} failed ({st}); the input is in {} (log: {})",
            root.join("fuzz/artifacts").join(target).display(),
            log_path.display()
        );
    }
    let outcome = Outcome {
        target: target.to_owned(),
        runs: stat(&log, "stat::number_of_executed_units:").unwrap_or(0),
        per_second: stat(&log, "stat::average_exec_per_sec:").unwrap_or(0),
        corpus: count_files(&corpus),
    };
    println!(
        "xtask: fuzz {target}: {} executions in {seconds} s ({}/s), corpus {} inputs",
        outcome.runs, outcome.per_second, outcome.corpus
    );
    Ok(outcome)
}

/// Whether a failed run was a timeout that does not reproduce: libFuzzer
/// reports a timeout when one input has run for [`TIMEOUT_SECONDS`] by the
/// clock, and on a shared machine the whole process is sometimes held up
/// that long (runs here saw 20-200 s stalls of inputs that take
/// milliseconds). The input is run again alone, with the same limit: a
/// real hang hangs again and fails the run; otherwise it is reported and
/// the run counts as passed.
fn stalled(target: &str, log: &str) -> Result<bool> {
    let Some(file) = log
        .lines()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .filter(|f| f.contains("/timeout-"))
        .map(str::trim)
    else {
        return Ok(false);
    };
    let timeout = format!("-timeout={TIMEOUT_SECONDS}");
    let mut args = vec!["run"];
    args.extend(BUILD_FLAGS);
    args.extend([target, file, "--", &timeout]);
    let mut cmd = cargo_fuzz(&args);
    let again = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run `{}`", show(&cmd)))?;
    if again.success() {
        println!(
            "xtask: fuzz {target}: a timeout did not reproduce ({file} runs in time alone): \
             the machine stalled, not the target"
        );
    }
    Ok(again.success())
}

/// A `-print_final_stats` value.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter(|e| e.is_ok()).count())
}
