//! The `[fleet]` table of the config: where the shared Redis is, what this
//! sensor is called in it, how often it publishes and how long a period
//! waits for late sensors. Absent table: fleet mode is off and nothing of
//! this module runs.

use std::time::Duration;

use crate::config::parse_duration;

/// Every `[fleet]` key, as `--set` and `check-config` name them.
pub const KEYS: [&str; 4] = [
    "fleet.redis_url",
    "fleet.sensor_name",
    "fleet.flush_interval",
    "fleet.close_grace",
];

/// Fleet mode's settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://host:port/db` or `redis+unix:///path/redis.sock`.
    pub redis_url: String,
    /// This sensor's name in the fleet; `None`: the top-level `sensor_name`.
    pub sensor_name: Option<String>,
    /// How often heartbeats are refreshed and pending periods checked
    /// (wall clock); the heartbeat expires after three of them.
    pub flush_interval: Duration,
    /// How long after its end a period waits for sensors that have not sent
    /// their final snapshot (network time; live also wall clock).
    pub close_grace: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis_url: String::new(),
            sensor_name: None,
            flush_interval: Duration::from_secs(10),
            close_grace: Duration::from_secs(60),
        }
    }
}

impl FleetConfig {
    /// Sets `key` (without the `fleet.` prefix); the reason when refused.
    pub fn apply(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let text = || value.as_str().filter(|s| !s.is_empty());
        match key {
            "redis_url" => {
                let url = text().ok_or("expected a URL such as \"redis://127.0.0.1:6379\"")?;
                // Parsed only (no connection): a typo is a startup error.
                redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
                self.redis_url = url.to_owned();
            }
            "sensor_name" => {
                let name = text()
                    .filter(|s| crate::config::valid_sensor_name(s))
                    .ok_or("expected a name of 1 to 255 characters without control characters")?;
                self.sensor_name = Some(name.to_owned());
            }
            "flush_interval" => self.flush_interval = duration(value)?,
            "close_grace" => self.close_grace = duration(value)?,
            _ => return Err(format!("unknown key; [fleet] keys: {}", KEYS.join(", "))),
        }
        Ok(())
    }

    /// The settings as the `[fleet]` table of `check-config`'s output.
    pub fn to_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let mut out = format!("\n[fleet]\nredis_url = {}\n", s(&self.redis_url));
        if let Some(n) = &self.sensor_name {
            out.push_str(&format!("sensor_name = {}\n", s(n)));
        }
        out.push_str(&format!(
            "flush_interval = {}\nclose_grace = {}\n",
            s(&crate::config::format_duration(self.flush_interval)),
            s(&crate::config::format_duration(self.close_grace))
        ));
        out
    }
}

fn duration(v: &toml::Value) -> Result<Duration, String> {
    v.as_str()
        .ok_or("expected a duration such as \"10s\"")
        .and_then(parse_duration)
        .map_err(str::to_owned)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn fleet_is_off_unless_configured() {
        assert!(Config::default().fleet.is_none());
    }

    #[test]
    fn fleet_table_and_sets_read_back() {
        let dir = std::env::temp_dir().join(format!("fleet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "sensor_name = \"mx1\"\n[fleet]\nredis_url = \"redis://127.0.0.1:6390\"\nclose_grace = \"2m\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &["fleet.flush_interval=3s".to_owned()]).unwrap();
        let f = c.fleet.clone().unwrap();
        assert_eq!(f.redis_url, "redis://127.0.0.1:6390");
        assert_eq!(f.flush_interval.as_secs(), 3);
        assert_eq!(f.close_grace.as_secs(), 120);
        assert_eq!(c.fleet_sensor_name(), Some("mx1"));
        std::fs::write(&path, c.to_toml()).unwrap();
        assert_eq!(Config::load(Some(&path), &[]).unwrap(), c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_fleet_values_name_the_key() {
        for (set, key) in [
            ("fleet.redis_url=http://x", "fleet.redis_url"),
            ("fleet.flush_interval=soon", "fleet.flush_interval"),
            ("fleet.close_grace=0s", "fleet.close_grace"),
        ] {
            let e = Config::load(None, &[set.to_owned()]).unwrap_err();
            assert!(e.to_string().contains(key), "{set}: {e}");
        }
        // A [fleet] table without a Redis URL is an error, not fleet mode.
        let e = Config::load(None, &["fleet.close_grace=1m".to_owned()]).unwrap_err();
        assert!(e.to_string().contains("fleet.redis_url"), "{e}");
    }

    #[test]
    fn config_docs_list_every_fleet_key() {
        let docs = include_str!("../../../docs/CONFIG.md");
        for k in super::KEYS {
            assert!(docs.contains(&format!("`{k}`")), "docs/CONFIG.md lacks {k}");
        }
    }
}
