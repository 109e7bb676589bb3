//! Builds the XDP program and embeds it (see `ebpf_builder`), and tells the
//! crate what `--version` prints: the git revision it was built from and
//! whether the XDP program made it in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    ebpf_builder::embed("sensor-xdp");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // An empty object means the eBPF toolchain was missing: offline only.
    let xdp = std::fs::metadata(out_dir.join("sensor-xdp")).is_ok_and(|m| m.len() > 0);
    println!(
        "cargo:rustc-env=SMTP_SENSOR_XDP={}",
        if xdp { "built in" } else { "missing" }
    );
    println!("cargo:rustc-env=SMTP_SENSOR_GIT_REV={}", git_revision());
}

/// `SMTP_SENSOR_GIT_REV` when set (a build from a tarball), else the
/// commit `git` reports, else `unknown`. Reruns when HEAD moves (a commit,
/// a checkout), not on every edit: a dirty marker would rebuild the crate
/// at each `git add`, so there is none.
fn git_revision() -> String {
    println!("cargo:rerun-if-env-changed=SMTP_SENSOR_GIT_REV");
    if let Some(rev) = std::env::var_os("SMTP_SENSOR_GIT_REV") {
        return rev.to_string_lossy().into_owned();
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&manifest)
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !s.trim().is_empty()).then(|| s.trim().to_owned())
    };
    // HEAD, and the branch file it points to (a worktree's HEAD lives in
    // its own git dir): either changes with each commit.
    for p in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch])
        && Path::new(&path).exists()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}
