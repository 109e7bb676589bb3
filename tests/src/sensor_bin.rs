//! The binaries the command-line and live tests run.
//!
//! Integration tests of another package do not get `CARGO_BIN_EXE_*`, and a
//! stale binary would test old code, so the first call builds it (a no-op
//! when it is up to date) into the target directory the test binary itself
//! was built in: `smtp-sensor` in the test's profile ([`sensor_bin`];
//! `SMTP_SENSOR_BIN` overrides the path, e.g. a release build installed
//! elsewhere), and the release builds the line-rate test needs
//! ([`release_bins`]: a debug build cannot take a million frames a second).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of an up-to-date `smtp-sensor`; builds it once per test process.
pub fn sensor_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SMTP_SENSOR_BIN") {
            return PathBuf::from(p);
        }
        let (target_dir, profile_dir) = dirs();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        build(&target_dir, release, &[("smtp-sensor", "smtp-sensor")]);
        profile_dir.join("smtp-sensor")
    })
}

/// Release builds of the sensor, the replayer and the capture generator.
#[derive(Debug)]
pub struct ReleaseBins {
    pub sensor: PathBuf,
    pub replay: PathBuf,
    pub synth: PathBuf,
}

/// Up-to-date release builds; built once per test process.
pub fn release_bins() -> &'static ReleaseBins {
    static BINS: OnceLock<ReleaseBins> = OnceLock::new();
    BINS.get_or_init(|| {
        let (target_dir, _) = dirs();
        build(
            &target_dir,
            true,
            &[
                ("smtp-sensor", "smtp-sensor"),
                ("smtp-replay", "smtp-replay"),
                ("sensor-tests", "synth"),
            ],
        );
        let release = target_dir.join("release");
        ReleaseBins {
            sensor: release.join("smtp-sensor"),
            replay: release.join("smtp-replay"),
            synth: release.join("synth"),
        }
    })
}

/// (target directory, profile directory) of the running test binary.
fn dirs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary inside <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("profile directory inside the target directory")
        .to_path_buf();
    (target_dir, profile_dir)
}

/// `cargo build` of `(package, binary)` pairs into `target_dir`.
fn build(target_dir: &Path, release: bool, bins: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the test binaries");
    assert!(status.success(), "building {bins:?} failed");
}
