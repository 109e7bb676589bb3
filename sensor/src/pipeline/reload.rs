//! Configuration reload (SIGHUP) without stopping the packet path.
//!
//! The control plane builds a new [`Detection`] (patterns compiled, GeoIP
//! database opened) off the packet path and publishes it here; workers and
//! the collector pick it up at their next tick by comparing a generation
//! number, one relaxed atomic load per tick. Flows, sessions and the
//! running period's counters are kept: nothing captured is lost.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::detect::Detection;

/// The detection configuration in force, replaceable at run time.
#[derive(Debug)]
pub struct SharedDetection {
    current: Mutex<Arc<Detection>>,
    generation: AtomicU64,
}

impl SharedDetection {
    pub fn new(d: Arc<Detection>) -> Arc<SharedDetection> {
        Arc::new(SharedDetection {
            current: Mutex::new(d),
            generation: AtomicU64::new(0),
        })
    }

    /// Bumped by every `replace`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Detection> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, d: Arc<Detection>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = d;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A reader's view: the generation it last saw.
#[derive(Debug)]
pub struct DetectionWatch {
    shared: Arc<SharedDetection>,
    seen: u64,
}

impl DetectionWatch {
    pub fn new(shared: Arc<SharedDetection>) -> Self {
        let seen = shared.generation();
        DetectionWatch { shared, seen }
    }

    /// The new configuration, when it changed since the last call.
    pub fn changed(&mut self) -> Option<Arc<Detection>> {
        let g = self.shared.generation();
        if g == self.seen {
            return None;
        }
        self.seen = g;
        Some(self.shared.current())
    }

    pub fn current(&self) -> Arc<Detection> {
        self.shared.current()
    }
}

/// Where the configuration came from, to load it again on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub sets: Vec<String>,
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("configuration reload refused: {0}")]
    Config(String),
    #[error("configuration reload refused: {0}")]
    Detect(#[from] crate::detect::DetectError),
}

/// Loads the configuration again and builds its detection. Returns the new
/// detection and the keys that changed but only take effect after a
/// restart (they shape capture and flow tables, which live on).
pub fn reload(
    source: &ConfigSource,
    running: &Config,
) -> Result<(Arc<Detection>, Config, Vec<&'static str>), ReloadError> {
    let cfg = Config::load(source.file.as_deref(), &source.sets)
        .map_err(|e| ReloadError::Config(e.to_string()))?;
    let det = Arc::new(Detection::from_config(&cfg)?);
    let restart = restart_only_changes(running, &cfg);
    Ok((det, cfg, restart))
}

/// Keys whose new value a reload cannot apply: they shape the XDP filter,
/// the period clock, the flow tables and the SMTP parsers, which live on.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("smtp_ports", old.smtp_ports != new.smtp_ports);
    check("inspect_period", old.inspect_period != new.inspect_period);
    check(
        "mail_path_capture",
        old.mail_path_capture != new.mail_path_capture,
    );
    check(
        "conn_idle_timeout",
        old.conn_idle_timeout != new.conn_idle_timeout,
    );
    check("sensor_name", old.sensor_name != new.sensor_name);
    // The fleet thread, its membership and the period clock's alignment.
    check("fleet", old.fleet != new.fleet);
    check(
        "max_weirds_per_second",
        old.max_weirds_per_second != new.max_weirds_per_second,
    );
    check(
        "community_id_seed",
        old.community_id_seed != new.community_id_seed,
    );
    check(
        "log_path_fields",
        old.log_path_fields != new.log_path_fields,
    );
    check(
        "max_flows_per_worker",
        old.max_flows_per_worker != new.max_flows_per_worker,
    );
    check(
        "max_silent_flows_per_worker",
        old.max_silent_flows_per_worker != new.max_silent_flows_per_worker,
    );
    check(
        "max_ooo_bytes_per_flow",
        old.max_ooo_bytes_per_flow != new.max_ooo_bytes_per_flow,
    );
    check("max_line_len", old.max_line_len != new.max_line_len);
    check("max_header_len", old.max_header_len != new.max_header_len);
    check("file_hashes", old.file_hashes != new.file_hashes);
    check(
        "file_hash_max_bytes",
        old.file_hash_max_bytes != new.file_hash_max_bytes,
    );
    check("extract_files", old.extract_files != new.extract_files);
    check("extract_dir", old.extract_dir != new.extract_dir);
    check(
        "extract_max_bytes",
        old.extract_max_bytes != new.extract_max_bytes,
    );
    check(
        "extract_total_bytes",
        old.extract_total_bytes != new.extract_total_bytes,
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_each_replacement_once() {
        let cfg = Config::default();
        let shared = SharedDetection::new(Arc::new(Detection::from_config(&cfg).unwrap()));
        let mut w = DetectionWatch::new(shared.clone());
        assert!(w.changed().is_none());
        let cfg2 = Config::load(None, &["spam_threshold=7".to_owned()]).unwrap();
        shared.replace(Arc::new(Detection::from_config(&cfg2).unwrap()));
        let got = w.changed().expect("a new configuration");
        assert!(Arc::ptr_eq(&got, &shared.current()));
        assert!(w.changed().is_none());
    }

    #[test]
    fn reload_reports_restart_only_keys_and_refuses_bad_files() {
        let dir = std::env::temp_dir().join(format!("reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "spam_threshold = 5\nsmtp_ports = [25]\n").unwrap();
        let src = ConfigSource {
            file: Some(file.clone()),
            sets: Vec::new(),
        };
        let (_, cfg, restart) = reload(&src, &Config::default()).unwrap();
        assert_eq!(cfg.spam_threshold, 5);
        assert_eq!(restart, ["smtp_ports"]);
        std::fs::write(&file, "spam_treshold = 5\n").unwrap();
        let e = reload(&src, &cfg).unwrap_err();
        assert!(e.to_string().contains("spam_treshold"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
