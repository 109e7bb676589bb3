//! weird.log: the protocol anomalies of each connection, as Zeek's
//! weird.log writes them (`ts uid id.* name addl notice peer source`).
//!
//! Every anomaly is counted (the summary, the metrics); a row is written
//! for the first of each name on each connection (Zeek's
//! `ACTION_LOG_PER_CONN`), and at most [`WeirdLimiter`]'s budget per
//! second of network time, so a flood of broken connections cannot fill
//! the disk: what is over the budget is counted, not written.

use std::sync::Arc;

use super::{Column, LogRecord, Value, col};
use crate::net::{ConnInfo, Ts};

/// One row of weird.log.
#[derive(Clone, Debug, PartialEq)]
pub struct Weird {
    /// Network time the anomaly was seen.
    pub ts: Ts,
    pub conn: ConnInfo,
    /// The anomaly's name (Zeek's weird name where Zeek has one).
    pub name: &'static str,
    pub addl: Option<&'static str>,
    /// The analyzer that saw it (`SMTP`).
    pub source: &'static str,
    /// The sensor's name (`peer`), set by the log writer.
    pub peer: Option<Arc<str>>,
}

impl Weird {
    /// The order rows are written in within a window, whatever worker saw
    /// them: time, connection, name.
    pub fn order_key(&self) -> (Ts, &str, &'static str) {
        (self.ts, self.conn.uid.as_str(), self.name)
    }
}

impl LogRecord for Weird {
    const PATH: &'static str = "weird";
    /// Zeek's weird.log columns, in Zeek's order.
    const COLUMNS: &'static [Column] = &[
        col("ts", "time"),
        col("uid", "string"),
        col("id.orig_h", "addr"),
        col("id.orig_p", "port"),
        col("id.resp_h", "addr"),
        col("id.resp_p", "port"),
        col("name", "string"),
        col("addl", "string"),
        col("notice", "bool"),
        col("peer", "string"),
        col("source", "string"),
    ];

    fn visit(&self, f: &mut dyn FnMut(Value<'_>)) {
        let id = &self.conn.id;
        f(Value::Time(self.ts));
        f(Value::Str(self.conn.uid.as_str()));
        f(Value::Addr(id.orig_h));
        f(Value::Port(id.orig_p));
        f(Value::Addr(id.resp_h));
        f(Value::Port(id.resp_p));
        f(Value::Str(self.name));
        f(Value::opt_str(self.addl));
        // No weird of this sensor is turned into a notice.
        f(Value::Bool(false));
        f(Value::opt_str(self.peer.as_deref()));
        f(Value::Str(self.source));
    }
}

/// The global budget of weird.log rows: at most `per_second` in each second
/// of network time (rows come to it in time order).
#[derive(Debug)]
pub struct WeirdLimiter {
    per_second: u64,
    second: u64,
    used: u64,
    /// Rows not written because their second's budget was spent.
    pub limited: u64,
}

impl WeirdLimiter {
    pub fn new(per_second: u64) -> Self {
        WeirdLimiter {
            per_second,
            second: 0,
            used: 0,
            limited: 0,
        }
    }

    /// Whether a row at `ts` may be written (and counts it either way).
    pub fn admit(&mut self, ts: Ts) -> bool {
        let second = ts.0 / 1_000_000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.limited += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnId;
    use crate::output::writer::format_tsv;

    fn weird(secs: u64) -> Weird {
        let id = ConnId {
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: 44478,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        Weird {
            ts: Ts(secs * 1_000_000),
            conn: ConnInfo::new(id, Ts(1)),
            name: "smtp_mail_transaction_invalid",
            addl: Some("rcpt to missing mail from"),
            source: "SMTP",
            peer: Some("mx-1".into()),
        }
    }

    #[test]
    fn a_row_has_zeeks_columns() {
        let w = weird(7);
        let mut line = Vec::new();
        format_tsv(&w, &mut line);
        let line = String::from_utf8(line).unwrap();
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields.len(), Weird::COLUMNS.len());
        assert_eq!(
            &fields[2..],
            [
                "198.18.0.9",
                "44478",
                "198.18.0.25",
                "25",
                "smtp_mail_transaction_invalid",
                "rcpt to missing mail from",
                "F",
                "mx-1",
                "SMTP"
            ]
        );
    }

    #[test]
    fn the_budget_is_per_second_of_network_time() {
        let mut l = WeirdLimiter::new(2);
        let admitted: Vec<bool> = [1, 1, 1, 1, 2, 2, 2]
            .iter()
            .map(|&s| l.admit(Ts(s * 1_000_000 + 5)))
            .collect();
        assert_eq!(admitted, [true, true, false, false, true, true, false]);
        assert_eq!(l.limited, 3);
    }
}
