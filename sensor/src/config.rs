//! The sensor's configuration: every user-visible key with its default, read
//! from a TOML file (`-c`) and `--set key=value` overrides, validated once at
//! startup so that a bad value is a clear error before any traffic is read.
//!
//! Keys and defaults are those of SEMANTICS.md "Configuration" plus the named
//! limits of DESIGN.md "Principles" (every buffer and table has one). The file
//! is flat: one key per line, no sections, so that every key can also be given
//! with `--set`.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::output::extract::{
    DEFAULT_EXTRACT_DIR, DEFAULT_EXTRACT_MAX_BYTES, DEFAULT_EXTRACT_TOTAL_BYTES, ExtractMode,
};
use crate::smtp::files::{DEFAULT_HASH_MAX_BYTES, HashSet};

/// Where a value came from, for error lines: the config file or `--set`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Set,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Set => f.write_str("--set"),
        }
    }
}

/// Why a configuration was rejected. Each message names the file, key and
/// value and says what is expected, so the one stderr line is enough to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check the path given to -c")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {msg}")]
    Syntax { path: PathBuf, msg: String },
    #[error("{origin}: unknown config key `{key}` (given {value}); known keys: {}", KEYS.join(", "))]
    UnknownKey {
        origin: Origin,
        key: String,
        value: String,
    },
    #[error("{origin}: bad value {value} for `{key}`: {reason}")]
    BadValue {
        origin: Origin,
        key: String,
        value: String,
        reason: String,
    },
    #[error("--set {arg}: expected key=value, e.g. --set spam_threshold=100")]
    BadSet { arg: String },
}

/// Which Received headers are followed when building the relay `path`
/// (`mail_path_capture`); the SMTP analysis owns the type.
pub use crate::smtp::config::PathCapture as MailPathCapture;

/// An ISO 3166-1 alpha-2 country code, two upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// `None` unless `s` is exactly two upper-case ASCII letters.
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                Some(CountryCode([a, b]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters (checked in `parse`).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default block-list patterns (SEMANTICS.md "Configuration").
pub const DEFAULT_BLOCKLIST_PATTERNS: [&str; 13] = [
    r"spamhaus\.org/",
    r"sophos\.com/security/",
    r"spamcop\.net/bl",
    r"cbl\.abuseat\.org/",
    r"sorbs\.net/",
    r"bsn\.borderware\.com/",
    r"mail-abuse\.com/",
    r"bbl\.barracudacentral\.com/",
    r"psbl\.surriel\.com/",
    r"antispam\.imp\.ch/",
    r"dyndns\.com/.*spam",
    r"rbl\.knology\.net/",
    r"intercept\.datapacket\.net/",
];

/// Upper bound on the compiled block-list DFA, so a pathological user pattern
/// is a config error instead of gigabytes of automaton.
pub const BLOCKLIST_DFA_SIZE_LIMIT: usize = 16 << 20;

/// The effective configuration. Built by [`Config::load`] (defaults, then the
/// file, then `--set` in order); every field is already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    // --- SEMANTICS.md keys ---
    /// TCP ports watched (either side).
    pub smtp_ports: Vec<u16>,
    /// Networks that are "local".
    pub local_nets: Vec<IpNet>,
    /// Known local mail-sending hosts.
    pub local_mail: Vec<IpNet>,
    /// Connections a host must reach in one period.
    pub spam_threshold: u64,
    /// Percent of those connections that were rejected (0..=100).
    pub spam_percent: u64,
    /// Length of one inspection period (> 0).
    pub inspect_period: Duration,
    /// Reply codes that mark a connection rejected.
    pub reject_codes: Vec<u16>,
    /// Regular expressions searched in error replies (regex-automata syntax).
    pub blocklist_patterns: Vec<String>,
    pub mail_path_capture: MailPathCapture,
    pub suspicious_countries: Vec<CountryCode>,
    pub suspicious_networks: Vec<IpNet>,
    /// MaxMind Country or City database; opened at startup.
    pub geoip_db: Option<PathBuf>,
    /// A connection with no packet for this long is finished (> 0).
    pub conn_idle_timeout: Duration,
    /// notice.log's `peer_descr`: which sensor wrote the notice (Zeek: the
    /// node's name). Default: the host name.
    pub sensor_name: String,
    /// Seed of the logs' `community_id` (Community ID v1; 0 as Zeek's and
    /// Suricata's default, so the same flow gets the same id in every tool).
    pub community_id_seed: u16,
    /// Write Zeek's log extension fields `_path` (the log's name) and
    /// `_write_ts` (when the line was written) first in every line, as
    /// `Log::default_ext_prefix = "_"` setups and Corelight's streaming logs
    /// do, for shippers that route on them. Always on with `-l -`.
    pub log_path_fields: bool,
    /// Hashes computed over every file of a message (files.log `md5`,
    /// `sha1`, `sha256`); empty: none.
    pub file_hashes: HashSet,
    /// Which files are written to `extract_dir` (Zeek's FileExtract).
    pub extract_files: ExtractMode,
    /// Where extracted files go; a relative path is under the log
    /// directory (Zeek's `FileExtract::prefix`).
    pub extract_dir: PathBuf,

    // --- limits (DESIGN.md: every limit is a named value with a default) ---
    /// Connections one worker tracks at once; more are not analysed (counted).
    pub max_flows_per_worker: usize,
    /// Flows that have not carried a byte (half-open, handshake only) one
    /// worker keeps apart in compact entries; 0 keeps them in the flow
    /// table instead.
    pub max_silent_flows_per_worker: usize,
    /// Out-of-order bytes buffered per flow direction before a gap is declared.
    pub max_ooo_bytes_per_flow: usize,
    /// Originating hosts one worker counts per inspection period; more are
    /// counted as overflow and reported.
    pub max_hosts_per_period: usize,
    /// Bytes of recipient addresses one worker keeps for spam notices per
    /// inspection period; past it, further recipients are not listed.
    pub max_rcpt_bytes_per_period: usize,
    /// Longest command, reply or message line kept, in bytes.
    pub max_line_len: usize,
    /// Longest unfolded header kept (name and value), in bytes.
    pub max_header_len: usize,
    /// Headers read per MIME entity.
    pub max_headers: usize,
    /// `rcptto` entries per transaction (Zeek: 1000).
    pub max_rcptto: usize,
    /// `to` entries per transaction (Zeek: 1000).
    pub max_to: usize,
    /// `cc` entries per transaction (Zeek: 1000).
    pub max_cc: usize,
    /// `path` entries per transaction (Zeek: 1000).
    pub max_path: usize,
    /// Attachment file names per transaction.
    pub max_files: usize,
    /// Nesting depth of MIME entities.
    pub max_mime_depth: usize,
    /// Commands sent ahead of their replies (PIPELINING).
    pub max_pending_commands: usize,
    /// Longest server reply text kept for `last_reply`, in bytes.
    pub max_reply_len: usize,
    /// Invalid transactions after which a session stops parsing.
    pub max_invalid_transactions: usize,
    /// Bytes of one file hashed at most; a longer file gets no hashes.
    pub file_hash_max_bytes: usize,
    /// Bytes of one file extracted at most (Zeek's
    /// `FileExtract::default_limit`); past it the file is cut.
    pub extract_max_bytes: usize,
    /// Bytes extracted at most over a run; past it files are cut.
    pub extract_total_bytes: usize,
    /// weird.log rows written per second of network time; more are
    /// counted (`weird_log_rate_limited`), not written.
    pub max_weirds_per_second: usize,

    // --- fleet mode (docs/FLEET.md) ---
    /// The `[fleet]` table; `None`: one sensor alone, as SEMANTICS says.
    pub fleet: Option<crate::fleet::config::FleetConfig>,
}

impl Default for Config {
    fn default() -> Self {
        // The SMTP limits' defaults live with the SMTP analysis.
        let smtp = crate::smtp::SmtpLimits::default();
        Config {
            smtp_ports: vec![25, 587],
            local_nets: Vec::new(),
            local_mail: Vec::new(),
            spam_threshold: 300,
            spam_percent: 30,
            inspect_period: Duration::from_secs(60 * 60),
            reject_codes: vec![550, 551, 553, 554],
            blocklist_patterns: DEFAULT_BLOCKLIST_PATTERNS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            mail_path_capture: MailPathCapture::Local,
            suspicious_countries: Vec::new(),
            suspicious_networks: Vec::new(),
            geoip_db: None,
            conn_idle_timeout: Duration::from_secs(5 * 60),
            sensor_name: default_sensor_name(),
            community_id_seed: 0,
            log_path_fields: false,
            file_hashes: HashSet::DEFAULT,
            extract_files: ExtractMode::None,
            extract_dir: PathBuf::from(DEFAULT_EXTRACT_DIR),
            max_flows_per_worker: 1 << 20,
            max_silent_flows_per_worker: 1 << 20,
            max_ooo_bytes_per_flow: 64 * 1024,
            max_hosts_per_period: 4 << 20,
            max_rcpt_bytes_per_period: 64 << 20,
            max_line_len: smtp.max_line_len,
            max_header_len: smtp.max_header_len,
            max_headers: smtp.max_headers,
            max_rcptto: smtp.max_rcptto,
            max_to: smtp.max_to,
            max_cc: smtp.max_cc,
            max_path: smtp.max_path,
            max_files: smtp.max_files,
            max_mime_depth: smtp.max_mime_depth,
            max_pending_commands: smtp.max_pending_commands,
            max_reply_len: smtp.max_reply_len,
            max_invalid_transactions: smtp.max_invalid_transactions as usize,
            file_hash_max_bytes: DEFAULT_HASH_MAX_BYTES as usize,
            extract_max_bytes: DEFAULT_EXTRACT_MAX_BYTES as usize,
            extract_total_bytes: DEFAULT_EXTRACT_TOTAL_BYTES as usize,
            max_weirds_per_second: 1000,
            fleet: None,
        }
    }
}

/// Every key, in the order `check-config` prints them.
pub const KEYS: &[&str] = &[
    "smtp_ports",
    "local_nets",
    "local_mail",
    "spam_threshold",
    "spam_percent",
    "inspect_period",
    "reject_codes",
    "blocklist_patterns",
    "mail_path_capture",
    "suspicious_countries",
    "suspicious_networks",
    "geoip_db",
    "conn_idle_timeout",
    "sensor_name",
    "community_id_seed",
    "log_path_fields",
    "file_hashes",
    "extract_files",
    "extract_dir",
    "max_flows_per_worker",
    "max_silent_flows_per_worker",
    "max_ooo_bytes_per_flow",
    "max_hosts_per_period",
    "max_rcpt_bytes_per_period",
    "max_line_len",
    "max_header_len",
    "max_headers",
    "max_rcptto",
    "max_to",
    "max_cc",
    "max_path",
    "max_files",
    "max_mime_depth",
    "max_pending_commands",
    "max_reply_len",
    "max_invalid_transactions",
    "file_hash_max_bytes",
    "max_weirds_per_second",
    "extract_max_bytes",
    "extract_total_bytes",
];

impl Config {
    /// Defaults, then the TOML file `path` (if any), then each `key=value` of
    /// `sets` in order. The result is fully validated.
    pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            cfg.apply_toml(&text, path)?;
        }
        for arg in sets {
            cfg.apply_set(arg)?;
        }
        if let Some(f) = &cfg.fleet
            && f.redis_url.is_empty()
        {
            return Err(ConfigError::BadValue {
                origin: path.map_or(Origin::Set, |p| Origin::File(p.to_owned())),
                key: "fleet.redis_url".into(),
                value: "(unset)".into(),
                reason: "[fleet] needs the URL of its Redis, e.g. \"redis://127.0.0.1:6379\""
                    .into(),
            });
        }
        Ok(cfg)
    }

    /// Applies a whole TOML document (the contents of `path`).
    pub fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // "line 3: expected `=`" rather than toml's multi-line snippet.
            let line = e
                .span()
                .and_then(|sp| text.get(..sp.start))
                .map(|before| before.matches('\n').count() + 1);
            let msg = one_line(e.message());
            ConfigError::Syntax {
                path: path.to_owned(),
                msg: match line {
                    Some(n) => format!("line {n}: {msg}"),
                    None => msg,
                },
            }
        })?;
        let origin = Origin::File(path.to_owned());
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("fleet", toml::Value::Table(t)) => {
                    for (k, v) in t {
                        self.apply(&origin, &format!("fleet.{k}"), v)?;
                    }
                }
                _ => self.apply(&origin, key, value)?,
            }
        }
        Ok(())
    }

    /// Applies one `--set key=value`. Lists are written `a,b,c`; a value that
    /// is itself TOML (`["a,b", "c"]`, `"x"`) is taken as TOML, which is how
    /// a pattern containing a comma is given.
    pub fn apply_set(&mut self, arg: &str) -> Result<(), ConfigError> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(ConfigError::BadSet {
                arg: arg.to_owned(),
            });
        };
        let key = key.trim();
        let raw = raw.trim();
        let kind = key_kind(key).ok_or_else(|| ConfigError::UnknownKey {
            origin: Origin::Set,
            key: key.to_owned(),
            value: raw.to_owned(),
        })?;
        let value = set_value(kind, raw);
        self.apply(&Origin::Set, key, &value)
    }

    /// Sets one key from a TOML value, validating it.
    fn apply(
        &mut self,
        origin: &Origin,
        key: &str,
        value: &toml::Value,
    ) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::BadValue {
            origin: origin.clone(),
            key: key.to_owned(),
            value: show_value(value),
            reason: reason.to_owned(),
        };
        let bad_item = |item: &toml::Value, reason: &str| ConfigError::BadValue {
            origin: origin.clone(),
            key: key.to_owned(),
            value: show_value(item),
            reason: reason.to_owned(),
        };
        match key {
            "smtp_ports" => {
                let ports = list(value, bad_item, |v| {
                    int_in(v, 1, 65535)
                        .map(|n| n as u16)
                        .ok_or("expected a TCP port 1-65535")
                })?;
                if ports.is_empty() {
                    return Err(bad("at least one port is needed (default: [25, 587])"));
                }
                self.smtp_ports = ports;
            }
            "local_nets" => self.local_nets = list(value, bad_item, cidr)?,
            "local_mail" => self.local_mail = list(value, bad_item, cidr)?,
            "suspicious_networks" => self.suspicious_networks = list(value, bad_item, cidr)?,
            "spam_threshold" => {
                self.spam_threshold = int_in(value, 1, i64::MAX)
                    .ok_or_else(|| bad("expected an integer >= 1 (connections per period)"))?
            }
            "spam_percent" => {
                self.spam_percent =
                    int_in(value, 0, 100).ok_or_else(|| bad("expected an integer percent 0-100"))?
            }
            "inspect_period" => self.inspect_period = duration(value).map_err(&bad)?,
            "conn_idle_timeout" => self.conn_idle_timeout = duration(value).map_err(&bad)?,
            "reject_codes" => {
                self.reject_codes = list(value, bad_item, |v| {
                    int_in(v, 100, 599)
                        .map(|n| n as u16)
                        .ok_or("expected an SMTP reply code 100-599")
                })?
            }
            "blocklist_patterns" => {
                let pats: Vec<String> = list(value, bad_item, |v| {
                    v.as_str().map(str::to_owned).ok_or("expected a string")
                })?;
                for p in &pats {
                    if let Err(e) = check_pattern(p) {
                        return Err(ConfigError::BadValue {
                            origin: origin.clone(),
                            key: key.to_owned(),
                            value: show_value(&toml::Value::String(p.clone())),
                            reason: format!("not a valid regular expression: {}", one_line(&e)),
                        });
                    }
                }
                self.blocklist_patterns = pats;
            }
            "mail_path_capture" => {
                self.mail_path_capture = match value.as_str() {
                    Some("local") => MailPathCapture::Local,
                    Some("remote") => MailPathCapture::Remote,
                    Some("all") => MailPathCapture::All,
                    _ => return Err(bad("expected \"local\", \"remote\" or \"all\"")),
                }
            }
            "suspicious_countries" => {
                self.suspicious_countries = list(value, bad_item, |v| {
                    v.as_str().and_then(CountryCode::parse).ok_or(
                        "expected an ISO 3166 two-letter country code in upper case, e.g. \"GB\"",
                    )
                })?
            }
            "file_hashes" => {
                let each = list(value, bad_item, |v| {
                    let mut one = HashSet::NONE;
                    v.as_str()
                        .filter(|name| one.add(name))
                        .map(|_| one)
                        .ok_or("expected a hash name: \"md5\", \"sha1\" or \"sha256\"")
                })?;
                self.file_hashes = each.iter().fold(HashSet::NONE, |a, b| HashSet {
                    md5: a.md5 || b.md5,
                    sha1: a.sha1 || b.sha1,
                    sha256: a.sha256 || b.sha256,
                });
            }
            "extract_files" => {
                self.extract_files = value
                    .as_str()
                    .and_then(ExtractMode::parse)
                    .ok_or_else(|| bad("expected \"none\", \"attachments\" or \"all\""))?;
            }
            "extract_dir" => {
                let s = value
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("expected a directory path"))?;
                self.extract_dir = PathBuf::from(s);
            }
            "geoip_db" => {
                let s = value
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("expected the path of a MaxMind .mmdb file"))?;
                self.geoip_db = Some(PathBuf::from(s));
            }
            "sensor_name" => {
                self.sensor_name = value
                    .as_str()
                    .filter(|s| valid_sensor_name(s))
                    .ok_or_else(|| {
                        bad("expected a name of 1 to 255 characters without control characters")
                    })?
                    .to_owned();
            }
            "community_id_seed" => {
                self.community_id_seed = value
                    .as_integer()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| bad("expected an integer from 0 to 65535"))?;
            }
            "log_path_fields" => {
                self.log_path_fields = value
                    .as_bool()
                    .ok_or_else(|| bad("expected true or false"))?;
            }
            k if k.starts_with("fleet.") => {
                let sub = &k["fleet.".len()..];
                if !crate::fleet::config::KEYS.contains(&k) {
                    return Err(ConfigError::UnknownKey {
                        origin: origin.clone(),
                        key: key.to_owned(),
                        value: show_value(value),
                    });
                }
                self.fleet
                    .get_or_insert_with(Default::default)
                    .apply(sub, value)
                    .map_err(|r| bad(&r))?;
            }
            _ => match self.limit_mut(key) {
                Some(slot) => *slot = limit(value).map_err(&bad)?,
                None => {
                    return Err(ConfigError::UnknownKey {
                        origin: origin.clone(),
                        key: key.to_owned(),
                        value: show_value(value),
                    });
                }
            },
        }
        Ok(())
    }

    /// Every numeric limit with its key, in `KEYS` order.
    pub fn limits(&self) -> [(&'static str, usize); 21] {
        [
            ("max_flows_per_worker", self.max_flows_per_worker),
            (
                "max_silent_flows_per_worker",
                self.max_silent_flows_per_worker,
            ),
            ("max_ooo_bytes_per_flow", self.max_ooo_bytes_per_flow),
            ("max_hosts_per_period", self.max_hosts_per_period),
            ("max_rcpt_bytes_per_period", self.max_rcpt_bytes_per_period),
            ("max_line_len", self.max_line_len),
            ("max_header_len", self.max_header_len),
            ("max_headers", self.max_headers),
            ("max_rcptto", self.max_rcptto),
            ("max_to", self.max_to),
            ("max_cc", self.max_cc),
            ("max_path", self.max_path),
            ("max_files", self.max_files),
            ("max_mime_depth", self.max_mime_depth),
            ("max_pending_commands", self.max_pending_commands),
            ("max_reply_len", self.max_reply_len),
            ("max_invalid_transactions", self.max_invalid_transactions),
            ("file_hash_max_bytes", self.file_hash_max_bytes),
            ("max_weirds_per_second", self.max_weirds_per_second),
            ("extract_max_bytes", self.extract_max_bytes),
            ("extract_total_bytes", self.extract_total_bytes),
        ]
    }

    fn limit_mut(&mut self, key: &str) -> Option<&mut usize> {
        Some(match key {
            "max_flows_per_worker" => &mut self.max_flows_per_worker,
            "max_silent_flows_per_worker" => &mut self.max_silent_flows_per_worker,
            "max_ooo_bytes_per_flow" => &mut self.max_ooo_bytes_per_flow,
            "max_hosts_per_period" => &mut self.max_hosts_per_period,
            "max_rcpt_bytes_per_period" => &mut self.max_rcpt_bytes_per_period,
            "max_line_len" => &mut self.max_line_len,
            "max_header_len" => &mut self.max_header_len,
            "max_headers" => &mut self.max_headers,
            "max_rcptto" => &mut self.max_rcptto,
            "max_to" => &mut self.max_to,
            "max_cc" => &mut self.max_cc,
            "max_path" => &mut self.max_path,
            "max_files" => &mut self.max_files,
            "max_mime_depth" => &mut self.max_mime_depth,
            "max_pending_commands" => &mut self.max_pending_commands,
            "max_reply_len" => &mut self.max_reply_len,
            "max_invalid_transactions" => &mut self.max_invalid_transactions,
            "file_hash_max_bytes" => &mut self.file_hash_max_bytes,
            "max_weirds_per_second" => &mut self.max_weirds_per_second,
            "extract_max_bytes" => &mut self.extract_max_bytes,
            "extract_total_bytes" => &mut self.extract_total_bytes,
            _ => return None,
        })
    }

    /// `inspect_period` in microseconds of network time.
    pub fn inspect_period_us(&self) -> u64 {
        u64::try_from(self.inspect_period.as_micros()).unwrap_or(u64::MAX)
    }

    /// The name this sensor has in its fleet (`fleet.sensor_name`, else
    /// `sensor_name`); `None` when fleet mode is off.
    pub fn fleet_sensor_name(&self) -> Option<&str> {
        let f = self.fleet.as_ref()?;
        Some(f.sensor_name.as_deref().unwrap_or(&self.sensor_name))
    }

    /// `conn_idle_timeout` in microseconds of network time.
    pub fn conn_idle_timeout_us(&self) -> u64 {
        u64::try_from(self.conn_idle_timeout.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether `addr` is in `local_nets` (Zeek's `Site::is_local_addr`).
    pub fn is_local_addr(&self, addr: IpAddr) -> bool {
        self.local_nets.iter().any(|n| n.contains(&addr))
    }

    /// The effective configuration as a TOML document that `load` reads back
    /// to the same value (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        let nets = |n: &[IpNet]| list(n.iter().map(|n| s(&n.to_string())).collect());
        let nums = |n: &[u16]| list(n.iter().map(u16::to_string).collect());
        // Writing to a String cannot fail.
        let _ = writeln!(out, "smtp_ports = {}", nums(&self.smtp_ports));
        let _ = writeln!(out, "local_nets = {}", nets(&self.local_nets));
        let _ = writeln!(out, "local_mail = {}", nets(&self.local_mail));
        let _ = writeln!(out, "spam_threshold = {}", self.spam_threshold);
        let _ = writeln!(out, "spam_percent = {}", self.spam_percent);
        let _ = writeln!(
            out,
            "inspect_period = {}",
            s(&format_duration(self.inspect_period))
        );
        let _ = writeln!(out, "reject_codes = {}", nums(&self.reject_codes));
        let _ = writeln!(
            out,
            "blocklist_patterns = {}",
            list(self.blocklist_patterns.iter().map(|p| s(p)).collect())
        );
        let _ = writeln!(
            out,
            "mail_path_capture = {}",
            s(self.mail_path_capture.as_str())
        );
        let _ = writeln!(
            out,
            "suspicious_countries = {}",
            list(
                self.suspicious_countries
                    .iter()
                    .map(|c| s(c.as_str()))
                    .collect()
            )
        );
        let _ = writeln!(
            out,
            "suspicious_networks = {}",
            nets(&self.suspicious_networks)
        );
        match &self.geoip_db {
            Some(p) => {
                let _ = writeln!(out, "geoip_db = {}", s(&p.to_string_lossy()));
            }
            None => out.push_str("# geoip_db unset: no GeoIP lookups\n"),
        }
        let _ = writeln!(
            out,
            "conn_idle_timeout = {}",
            s(&format_duration(self.conn_idle_timeout))
        );
        let _ = writeln!(out, "sensor_name = {}", s(&self.sensor_name));
        let _ = writeln!(out, "community_id_seed = {}", self.community_id_seed);
        let _ = writeln!(out, "log_path_fields = {}", self.log_path_fields);
        let _ = writeln!(
            out,
            "file_hashes = {}",
            list(self.file_hashes.names().into_iter().map(s).collect())
        );
        let _ = writeln!(out, "extract_files = {}", s(self.extract_files.as_str()));
        let _ = writeln!(
            out,
            "extract_dir = {}",
            s(&self.extract_dir.to_string_lossy())
        );
        for (k, v) in self.limits() {
            let _ = writeln!(out, "{k} = {v}");
        }
        // A TOML table comes after every top-level key.
        if let Some(f) = &self.fleet {
            out.push_str(&f.to_toml());
        }
        out
    }
}

/// The host name (the kernel's), or `smtp-sensor` when it cannot be read.
fn default_sensor_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_sensor_name(h))
        .unwrap_or_else(|| "smtp-sensor".to_owned())
}

/// A name that fits in one log field: 1–255 characters, none a control
/// character (a tab or newline would break the TSV and JSON lines).
pub(crate) fn valid_sensor_name(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 255 && !s.chars().any(char::is_control)
}

/// The value shape a key expects, so `--set` text can be turned into TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Str,
    IntList,
    StrList,
}

fn key_kind(key: &str) -> Option<Kind> {
    Some(match key {
        "smtp_ports" | "reject_codes" => Kind::IntList,
        "log_path_fields" => Kind::Bool,
        "local_nets"
        | "local_mail"
        | "suspicious_networks"
        | "suspicious_countries"
        | "blocklist_patterns"
        | "file_hashes" => Kind::StrList,
        "inspect_period" | "conn_idle_timeout" | "mail_path_capture" | "geoip_db"
        | "sensor_name" | "extract_files" | "extract_dir" => Kind::Str,
        k if crate::fleet::config::KEYS.contains(&k) => Kind::Str,
        k if KEYS.contains(&k) => Kind::Int,
        _ => return None,
    })
}

/// Turns `--set` text into the TOML value `apply` checks. Text that does not
/// parse as the expected shape is passed on as a string, so the error names
/// the value exactly as the user wrote it.
fn set_value(kind: Kind, raw: &str) -> toml::Value {
    if (raw.starts_with('[') || raw.starts_with('"') || raw.starts_with('\''))
        && let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.remove("v")
    {
        return v;
    }
    let scalar = |s: &str, int: bool| {
        if int && let Ok(n) = s.parse::<i64>() {
            return toml::Value::Integer(n);
        }
        toml::Value::String(s.to_owned())
    };
    match kind {
        Kind::Bool => match raw {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => toml::Value::String(raw.to_owned()),
        },
        Kind::Int => scalar(raw, true),
        Kind::Str => scalar(raw, false),
        Kind::IntList | Kind::StrList => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| scalar(s, kind == Kind::IntList))
                .collect(),
        ),
    }
}

/// A value as the user would recognise it in an error line.
fn show_value(v: &toml::Value) -> String {
    one_line(&v.to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks every item of a list value with `item`; a scalar is an error.
fn list<T>(
    value: &toml::Value,
    bad_item: impl Fn(&toml::Value, &str) -> ConfigError,
    item: impl Fn(&toml::Value) -> Result<T, &'static str>,
) -> Result<Vec<T>, ConfigError> {
    let Some(items) = value.as_array() else {
        return Err(bad_item(
            value,
            "expected a list, e.g. [\"a\", \"b\"] (or a,b with --set)",
        ));
    };
    items
        .iter()
        .map(|v| item(v).map_err(|r| bad_item(v, r)))
        .collect()
}

fn int_in(v: &toml::Value, lo: i64, hi: i64) -> Option<u64> {
    v.as_integer()
        .filter(|n| (lo..=hi).contains(n))
        .and_then(|n| u64::try_from(n).ok())
}

fn limit(v: &toml::Value) -> Result<usize, &'static str> {
    int_in(v, 1, i64::MAX)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("expected an integer limit >= 1")
}

fn cidr(v: &toml::Value) -> Result<IpNet, &'static str> {
    const WHAT: &str =
        "expected a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\" (or a single address)";
    let s = v.as_str().ok_or(WHAT)?.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        // 10.1.2.3/8 is accepted as the network 10.0.0.0/8.
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| WHAT)
}

/// Parses `"60m"`, `"5m"`, `"30s"`, `"1h"`, `"1d"`, `"500ms"`; zero is refused
/// (a zero period or timeout would end everything at once).
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    const WHAT: &str =
        "expected a duration such as \"60m\", \"5m\", \"30s\", \"1h\" (units ms, s, m, h, d)";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or(WHAT)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| WHAT)?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(WHAT),
    };
    let ms = n.checked_mul(ms_per).ok_or("duration too large")?;
    if ms == 0 {
        return Err("a duration must be greater than zero");
    }
    Ok(Duration::from_millis(ms))
}

fn duration(v: &toml::Value) -> Result<Duration, &'static str> {
    match v.as_str() {
        Some(s) => parse_duration(s),
        None => Err("expected a duration string such as \"60m\", \"5m\", \"30s\""),
    }
}

/// The shortest exact form in the largest unit: `3600 s` → `"1h"`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Compiles one pattern alone to report a syntax error against it.
fn check_pattern(p: &str) -> Result<(), String> {
    use regex_automata::dfa::dense;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .dfa_size_limit(Some(BLOCKLIST_DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(BLOCKLIST_DFA_SIZE_LIMIT)),
        )
        .build(p)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The body of `smtp-sensor check-config`: loads and validates the config
/// (including opening `geoip_db` and compiling the block-list patterns as a
/// run would), prints the effective config as TOML on stdout and returns the
/// exit code: 0 when valid, 2 with one line on stderr otherwise.
pub fn check_config(path: Option<&Path>, sets: &[String]) -> i32 {
    match Config::load(path, sets) {
        Ok(cfg) => match crate::detect::Detection::from_config(&cfg) {
            Ok(_) => {
                print!("{}", cfg.to_toml());
                0
            }
            Err(e) => {
                eprintln!("smtp-sensor: {e}");
                2
            }
        },
        Err(e) => {
            eprintln!("smtp-sensor: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    fn err_line(sets_: &[&str]) -> String {
        match Config::load(None, &sets(sets_)) {
            Ok(_) => panic!("{sets_:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.apply_toml(text, Path::new("test.toml"))?;
        Ok(c)
    }

    #[test]
    fn defaults_are_the_semantics_table() {
        let c = Config::default();
        assert_eq!(c.smtp_ports, [25, 587]);
        assert!(c.local_nets.is_empty() && c.local_mail.is_empty());
        assert_eq!((c.spam_threshold, c.spam_percent), (300, 30));
        assert_eq!(c.inspect_period, Duration::from_secs(3600));
        assert_eq!(c.reject_codes, [550, 551, 553, 554]);
        assert_eq!(c.blocklist_patterns.len(), 13);
        assert_eq!(c.mail_path_capture, MailPathCapture::Local);
        assert!(c.geoip_db.is_none());
        assert_eq!(c.conn_idle_timeout, Duration::from_secs(300));
        assert_eq!(c.max_rcptto, 1000);
        assert_eq!(c.max_path, 1000);
        // SHA-256 only (Zeek's hash-all-files set costs line rate on one
        // core: smtp::files::HashSet::DEFAULT).
        assert_eq!(c.file_hashes.names(), ["sha256"]);
        assert_eq!(c.file_hash_max_bytes, 64 << 20);
    }

    #[test]
    fn file_hashes_take_names_or_nothing() {
        let c = Config::load(None, &sets(&["file_hashes=sha1"])).unwrap();
        assert_eq!(c.file_hashes.names(), ["sha1"]);
        let c = Config::load(None, &sets(&["file_hashes=[]"])).unwrap();
        assert!(c.file_hashes.names().is_empty());
        let e = err_line(&["file_hashes=md5,crc32"]);
        assert!(e.contains("`file_hashes`") && e.contains("crc32"), "{e}");
        // What check-config prints reads back.
        let c = Config::load(None, &sets(&["file_hashes=sha256,md5"])).unwrap();
        let back = from_toml(&c.to_toml()).unwrap();
        assert_eq!(back.file_hashes, c.file_hashes);
    }

    #[test]
    fn every_key_reads_from_toml() {
        let c = from_toml(
            r#"
            smtp_ports = [25]
            local_nets = ["10.0.0.0/8", "2001:db8::/32"]
            local_mail = ["10.1.1.1"]
            spam_threshold = 100
            spam_percent = 50
            inspect_period = "5m"
            reject_codes = [550]
            blocklist_patterns = ["example\\.net/"]
            mail_path_capture = "all"
            suspicious_countries = ["CN", "SE"]
            suspicious_networks = ["198.18.0.0/15"]
            geoip_db = "/nonexistent/x.mmdb"
            conn_idle_timeout = "30s"
            sensor_name = "mx-uplink-1"
            community_id_seed = 65535
            log_path_fields = true
            file_hashes = ["SHA256", "md5"]
            max_flows_per_worker = 10
            max_silent_flows_per_worker = 11
            max_ooo_bytes_per_flow = 12
            max_hosts_per_period = 13
            max_rcpt_bytes_per_period = 14
            max_line_len = 15
            max_header_len = 16
            max_headers = 17
            max_rcptto = 18
            max_to = 19
            max_cc = 20
            max_path = 21
            max_files = 22
            max_mime_depth = 23
            max_pending_commands = 24
            max_reply_len = 25
            max_invalid_transactions = 26
            file_hash_max_bytes = 27
            max_weirds_per_second = 28
            extract_max_bytes = 29
            extract_total_bytes = 30
            extract_files = "attachments"
            extract_dir = "/var/spool/x"
            "#,
        )
        .unwrap();
        assert_eq!(c.smtp_ports, [25]);
        assert_eq!(c.local_nets.len(), 2);
        assert_eq!(c.local_mail[0].to_string(), "10.1.1.1/32");
        assert_eq!((c.spam_threshold, c.spam_percent), (100, 50));
        assert_eq!(c.inspect_period, Duration::from_secs(300));
        assert_eq!(c.reject_codes, [550]);
        assert_eq!(c.blocklist_patterns, ["example\\.net/"]);
        assert_eq!(c.mail_path_capture, MailPathCapture::All);
        assert_eq!(c.suspicious_countries[1].as_str(), "SE");
        assert_eq!(
            c.geoip_db.as_deref(),
            Some(Path::new("/nonexistent/x.mmdb"))
        );
        assert_eq!(c.conn_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.sensor_name, "mx-uplink-1");
        assert_eq!(c.community_id_seed, 65535);
        assert!(c.log_path_fields);
        let limits: Vec<usize> = c.limits().iter().map(|(_, v)| *v).collect();
        assert_eq!(limits, (10..31).collect::<Vec<usize>>());
        assert_eq!(c.extract_files, ExtractMode::Attachments);
        assert_eq!(c.extract_dir, Path::new("/var/spool/x"));
        assert_eq!(c.file_hashes.names(), ["md5", "sha256"]);
        // Every key in KEYS was exercised above.
        assert_eq!(KEYS.len(), 40);
        for (k, _) in c.limits() {
            assert!(KEYS.contains(&k), "{k}");
        }
    }

    #[test]
    fn set_overrides_with_comma_lists() {
        let c = Config::load(
            None,
            &sets(&[
                "spam_threshold=100",
                "local_nets=10.0.0.0/8,192.168.0.0/16",
                "reject_codes=550, 554",
                "inspect_period=1h",
                "suspicious_countries=GB",
                "blocklist_patterns=[\"a{1,2}b\", \"c\"]",
                "local_mail=",
                "log_path_fields=true",
            ]),
        )
        .unwrap();
        assert!(c.log_path_fields);
        assert_eq!(c.spam_threshold, 100);
        assert_eq!(c.local_nets.len(), 2);
        assert_eq!(c.reject_codes, [550, 554]);
        assert_eq!(c.inspect_period, Duration::from_secs(3600));
        assert_eq!(c.blocklist_patterns, ["a{1,2}b", "c"]);
        assert!(c.local_mail.is_empty());
    }

    #[test]
    fn later_set_wins_over_file() {
        let dir = std::env::temp_dir().join(format!("smtp-sensor-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "spam_threshold = 5\nspam_percent = 7\n").unwrap();
        let c = Config::load(Some(&f), &sets(&["spam_threshold=9"])).unwrap();
        assert_eq!((c.spam_threshold, c.spam_percent), (9, 7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::load(
            None,
            &sets(&[
                "local_nets=10.0.0.0/8",
                "suspicious_countries=CN,SE",
                "geoip_db=/tmp/x y.mmdb",
                "inspect_period=90s",
                "blocklist_patterns=[\"quote\\\"d\", \"back\\\\slash\"]",
            ]),
        )
        .unwrap();
        let text = c.to_toml();
        assert!(text.contains("inspect_period = \"90s\""), "{text}");
        let back = from_toml(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            from_toml(&Config::default().to_toml()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_key_names_key_and_origin() {
        let e = err_line(&["spam_treshold=5"]);
        assert!(
            e.starts_with("--set: unknown config key `spam_treshold`"),
            "{e}"
        );
        let e = from_toml("colour = 1").unwrap_err().to_string();
        assert!(
            e.starts_with("config file test.toml: unknown config key `colour`"),
            "{e}"
        );
        assert!(err_line(&["novalue"]).contains("expected key=value"));
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let cases: &[(&str, &str, &str)] = &[
            ("local_nets=10.0.0.0/33", "`local_nets`", "\"10.0.0.0/33\""),
            (
                "suspicious_networks=bogus",
                "`suspicious_networks`",
                "\"bogus\"",
            ),
            ("inspect_period=60", "`inspect_period`", "\"60\""),
            ("inspect_period=5x", "`inspect_period`", "\"5x\""),
            ("conn_idle_timeout=0s", "`conn_idle_timeout`", "\"0s\""),
            (
                "suspicious_countries=gb",
                "`suspicious_countries`",
                "\"gb\"",
            ),
            (
                "suspicious_countries=GBR",
                "`suspicious_countries`",
                "\"GBR\"",
            ),
            ("spam_percent=101", "`spam_percent`", "101"),
            ("spam_threshold=0", "`spam_threshold`", "0"),
            ("spam_threshold=many", "`spam_threshold`", "\"many\""),
            ("smtp_ports=70000", "`smtp_ports`", "70000"),
            ("reject_codes=55", "`reject_codes`", "55"),
            ("mail_path_capture=some", "`mail_path_capture`", "\"some\""),
            (
                "blocklist_patterns=(unclosed",
                "`blocklist_patterns`",
                "\"(unclosed\"",
            ),
            ("max_line_len=0", "`max_line_len`", "0"),
            ("community_id_seed=65536", "`community_id_seed`", "65536"),
            ("community_id_seed=-1", "`community_id_seed`", "-1"),
            ("log_path_fields=yes", "`log_path_fields`", "\"yes\""),
            ("sensor_name=", "`sensor_name`", "\"\""),
            ("sensor_name=\"a\tb\"", "`sensor_name`", "\"a\\tb\""),
        ];
        for (set, key, value) in cases {
            let e = err_line(&[set]);
            assert!(e.starts_with("--set: bad value "), "{set}: {e}");
            assert!(e.contains(key) && e.contains(value), "{set}: {e}");
            assert!(!e.contains('\n'), "{set}: {e}");
        }
    }

    #[test]
    fn toml_type_errors_are_bad_values() {
        let e = from_toml("local_nets = \"10.0.0.0/8\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`local_nets`") && e.contains("expected a list"),
            "{e}"
        );
        let e = from_toml("spam_threshold = \"300\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`spam_threshold`"), "{e}");
        let e = from_toml("inspect_period = 60").unwrap_err().to_string();
        assert!(e.contains("`inspect_period`") && e.contains("60"), "{e}");
        let e = from_toml("spam_percent = 3\nspam_threshold = ")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file test.toml is not valid TOML: line 2: "),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load(Some(Path::new("/nonexistent/sensor.toml")), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/sensor.toml"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60m"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn cidrs_are_normalised_and_local_addr_works() {
        let c = Config::load(None, &sets(&["local_nets=10.1.2.3/8,2001:db8::1/32"])).unwrap();
        assert_eq!(c.local_nets[0].to_string(), "10.0.0.0/8");
        assert!(c.is_local_addr("10.200.0.1".parse().unwrap()));
        assert!(c.is_local_addr("2001:db8::5".parse().unwrap()));
        assert!(!c.is_local_addr("11.0.0.1".parse().unwrap()));
    }
}
