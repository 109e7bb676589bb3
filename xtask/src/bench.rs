//! `cargo xtask bench [<cargo bench args>] [-- <criterion args>]`: the
//! criterion benches in `bench/` (`cargo bench -p sensor-bench`), with the
//! arguments passed through: `cargo xtask bench --bench session -- --quick`.
//!
//! Benches need no XDP toolchain (they run the pipeline on frames in
//! memory), so there is no setup step; reports land in
//! `target/criterion/`.

use anyhow::Result;

use crate::util::cargo;

pub fn run(args: &[String]) -> Result<()> {
    let mut all = vec!["bench", "-p", "sensor-bench"];
    all.extend(args.iter().map(String::as_str));
    cargo(&all)
}
