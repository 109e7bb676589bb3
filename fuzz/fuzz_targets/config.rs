//! The config loader: arbitrary TOML text as a configuration file, and each
//! of its lines as a `--set key=value`.
//!
//! Checks beyond "no panic": a configuration that loads is printed by
//! `to_toml` (what `check-config` shows) as a document that loads back to
//! the same configuration; an error has a one-line message.
//!
//! Compiling block-list patterns dominates the time of an input that sets
//! them (a pattern is checked by building its DFA).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use smtp_sensor::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let mut cfg = Config::default();
    match cfg.apply_toml(text, path) {
        Ok(()) => round_trip(&cfg),
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
    let mut cfg = Config::default();
    for line in text.lines().take(16) {
        if let Err(e) = cfg.apply_set(line) {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
        }
    }
    round_trip(&cfg);
});

fn round_trip(cfg: &Config) {
    let default = Config::default();
    if *cfg == default {
        return;
    }
    let mut text = cfg.to_toml();
    if cfg.blocklist_patterns == default.blocklist_patterns {
        // Loading checks every pattern by compiling it (milliseconds each):
        // leave out the line when it would only give the default back.
        text = text
            .lines()
            .filter(|l| !l.starts_with("blocklist_patterns ="))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let mut back = Config::default();
    if let Err(e) = back.apply_toml(&text, Path::new("effective.toml")) {
        panic!("the effective config does not load: {e}\n{text}");
    }
    assert_eq!(
        &back, cfg,
        "the effective config loads differently:\n{text}"
    );
}
