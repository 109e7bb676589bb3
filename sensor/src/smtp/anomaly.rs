//! Named SMTP protocol anomalies (Zeek "weird" names).

/// Something the SMTP parser saw that a well-behaved peer does not send, or
/// a limit that truncated data. Counted and logged, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmtpAnomaly {
    /// More RCPT TO / To / Cc / path entries than the limit.
    TooManyAddresses,
}

impl SmtpAnomaly {
    pub const fn name(self) -> &'static str {
        match self {
            SmtpAnomaly::TooManyAddresses => "smtp_too_many_addresses",
        }
    }
}
