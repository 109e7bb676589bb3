//! The `smtp-sensor` binary the command-line and live tests run.
//!
//! Integration tests of another package do not get `CARGO_BIN_EXE_*`, and a
//! stale binary would test old code, so the first call builds it (a no-op
//! when it is up to date) into the target directory and profile the test
//! binary itself was built in. `SMTP_SENSOR_BIN` overrides the path (e.g. a
//! release build installed elsewhere).

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
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "smtp-sensor",
            "--bin",
            "smtp-sensor",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cannot run cargo to build smtp-sensor");
        assert!(status.success(), "building smtp-sensor failed");
        profile_dir.join("smtp-sensor")
    })
}
