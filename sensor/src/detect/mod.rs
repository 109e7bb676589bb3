//! Detection on top of the SMTP analysis: spam hosts, block-list replies and
//! suspicious origination (SEMANTICS.md), producing notice.log rows.
//!
//! How the pipeline wires it:
//!
//! 1. At startup: `let det = Arc::new(Detection::from_config(&cfg)?)` (an
//!    error here is a bad `geoip_db` or pattern: exit 2, print the error).
//! 2. Each worker owns a [`Detector`] (`Detector::new(det.clone())`) and
//!    calls it from its `SmtpSink`: `on_reply` for every reply,
//!    `on_record(now, ..)` for every finished transaction, and `on_conn_end`
//!    when it drops a flow. After each batch it moves
//!    `take_notices()` to the merger.
//! 3. Period boundaries come from one [`PeriodClock`] driven by packet time
//!    (the dispatcher's, so every worker sees the same boundaries). At a
//!    boundary `end`, each worker sends `take_period(end)` to the merger, which
//!    merges them with [`spam::merge`] and pushes
//!    `det.evaluate_period(&merged, end)` into its [`NoticeQueue`]. At end of
//!    input the same happens with the last packet's time.
//! 4. The merger pushes every notice into one `NoticeQueue`, calls
//!    `release(watermark, &mut out)` with the oldest time every worker has
//!    passed, `finish` at the end, and writes `out` with the notice.log
//!    `LogWriter<Notice, _>`.

pub mod blocklist;
pub mod geoip;
pub mod host_table;
pub mod notice;
pub mod origination;
pub mod spam;

use std::sync::Arc;

pub use blocklist::Blocklist;
pub use geoip::{GeoIp, GeoIpError};
pub use notice::{Note, Notice, NoticeQueue};
pub use origination::Origination;
pub use spam::{PeriodClock, PeriodCounters, SpamCounters, SpamRules};

use crate::config::Config;
use crate::net::{ConnInfo, Ts};
use crate::smtp::record::MessageRecord;
use crate::smtp::sink::Reply;

/// Why detection could not start. Each names the config key to fix.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
    #[error("blocklist_patterns cannot be compiled together: {0}; simplify or remove a pattern")]
    Blocklist(String),
    #[error(
        "suspicious_countries is set but geoip_db is not: countries cannot be looked up; \
         set geoip_db to a MaxMind Country or City .mmdb"
    )]
    CountriesWithoutGeoIp,
}

/// Everything detection needs that is read-only after startup: compiled
/// patterns, the GeoIP database, the spam rules. Shared by all workers.
#[derive(Debug)]
pub struct Detection {
    pub blocklist: Blocklist,
    pub origination: Origination,
    pub spam: SpamRules,
}

impl Detection {
    /// Compiles the block-list patterns and opens `geoip_db` (when set).
    pub fn from_config(cfg: &Config) -> Result<Detection, DetectError> {
        let blocklist = Blocklist::new(&cfg.blocklist_patterns).map_err(DetectError::Blocklist)?;
        let geoip = match &cfg.geoip_db {
            Some(path) => Some(GeoIp::open(path)?),
            None if !cfg.suspicious_countries.is_empty() => {
                return Err(DetectError::CountriesWithoutGeoIp);
            }
            None => None,
        };
        Ok(Detection {
            blocklist,
            origination: Origination::new(
                cfg.suspicious_countries.clone(),
                cfg.suspicious_networks.clone(),
                geoip,
            ),
            spam: SpamRules::from_config(cfg),
        })
    }

    /// The spam notices of one period, from the merge of every worker's
    /// `take_period` for it, raised at `end`.
    pub fn evaluate_period(&self, merged: &PeriodCounters, end: Ts) -> Vec<Notice> {
        self.spam.evaluate(merged, end)
    }
}

/// One worker's detection state: its spam counters and the notices it has
/// raised since the last `take_notices`. Nothing here is shared, so the
/// worker calls it without locks.
#[derive(Debug)]
pub struct Detector {
    shared: Arc<Detection>,
    spam: SpamCounters,
    notices: Vec<Notice>,
}

impl Detector {
    pub fn new(shared: Arc<Detection>) -> Self {
        Detector {
            shared,
            spam: SpamCounters::new(),
            notices: Vec::new(),
        }
    }

    /// Every complete server reply: spam counting and the block-list check.
    pub fn on_reply(&mut self, conn: &ConnInfo, reply: &Reply<'_>) {
        self.spam.on_reply(&self.shared.spam, conn, reply);
        if let Some(n) = self.shared.blocklist.check(conn, reply) {
            self.notices.push(n);
        }
    }

    /// Every finished transaction (the record smtp.log gets), at network
    /// time `now`: the origination check.
    pub fn on_record(&mut self, now: Ts, conn: &ConnInfo, rec: &MessageRecord) {
        self.shared
            .origination
            .check(now, conn, rec, &mut self.notices);
    }

    /// The flow of `conn` was removed: its spam marks can go.
    pub fn on_conn_end(&mut self, conn: &ConnInfo) {
        self.spam.on_conn_end(conn);
    }

    /// Moves out the notices raised since the last call (block-list and
    /// origination; spam notices come from `Detection::evaluate_period`).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Whether notices are waiting (to skip sending empty batches).
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Ends the current period at `end`; the counters go to the merger.
    pub fn take_period(&mut self, end: Ts) -> PeriodCounters {
        self.spam.take_period(&self.shared.spam, end)
    }

    pub fn shared(&self) -> &Arc<Detection> {
        &self.shared
    }

    /// Switches to a reloaded configuration (SIGHUP). The counters of the
    /// running period are kept: a reload never loses what was counted.
    pub fn set_shared(&mut self, shared: Arc<Detection>) {
        self.shared = shared;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnId;

    #[test]
    fn countries_without_database_is_a_startup_error() {
        let cfg = Config::load(None, &["suspicious_countries=CN".to_owned()]).unwrap();
        let e = Detection::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("geoip_db"), "{e}");
    }

    #[test]
    fn missing_database_is_a_startup_error_naming_it() {
        let cfg = Config::load(None, &["geoip_db=/nonexistent/db.mmdb".to_owned()]).unwrap();
        let e = Detection::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/db.mmdb"), "{e}");
    }

    #[test]
    fn detector_routes_replies_and_periods() {
        let cfg = Config::load(None, &["spam_threshold=1".to_owned()]).unwrap();
        let det = Arc::new(Detection::from_config(&cfg).unwrap());
        let mut workers = [Detector::new(det.clone()), Detector::new(det.clone())];
        let id = ConnId {
            orig_h: "203.0.113.9".parse().unwrap(),
            orig_p: 1,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        let conn = ConnInfo::new(id, Ts(1));
        let r = |code, text| Reply {
            ts: Ts(2),
            code,
            text,
            rcpts: crate::smtp::record::List::EMPTY,
        };
        workers[0].on_reply(&conn, &r(220, "hi"));
        workers[0].on_reply(&conn, &r(554, "203.0.113.9 listed at spamhaus.org/x"));
        assert!(workers[0].has_notices());
        let n = workers[0].take_notices();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].note, Note::BlBlockedHost);
        assert!(!workers[0].has_notices());
        let merged = spam::merge(workers.iter_mut().map(|w| w.take_period(Ts(10))));
        let spam = det.evaluate_period(&merged, Ts(10));
        assert_eq!(spam.len(), 1);
        assert_eq!(spam[0].msg, "203.0.113.9 - sent: 1 rejected: 100 percent");
    }
}
