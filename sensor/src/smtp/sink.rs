//! What the SMTP session tells the rest of the sensor. The session knows
//! nothing of detection or logging; the worker hands it a sink that fans
//! events out to the spam counters, the reply checks and the log writer.

use crate::net::{ConnInfo, Ts};

use super::anomaly::SmtpAnomaly;
use super::record::{List, MessageRecord};

/// A complete server reply. Multi-line replies (`250-…`) are reported once,
/// when their last line arrives, with that line's text.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub ts: Ts,
    pub code: u16,
    /// Text after the code and separator of the last line, without CRLF.
    pub text: &'a str,
    /// RCPT TO addresses of the current transaction so far, in order, no
    /// duplicates (what the spam detector lists for a rejected connection),
    /// read from the record being built.
    pub rcpts: List<'a>,
}

pub trait SmtpSink {
    fn reply(&mut self, conn: &ConnInfo, reply: &Reply<'_>);
    fn record(&mut self, conn: &ConnInfo, record: MessageRecord);
    fn anomaly(&mut self, conn: &ConnInfo, anomaly: SmtpAnomaly);
}
