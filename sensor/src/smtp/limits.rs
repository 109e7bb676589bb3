//! Named limits of the SMTP analysis. Every buffer and list the session keeps
//! is bounded by one of these; hitting one truncates, counts an anomaly and
//! goes on, so hostile input can never make a session grow without bound.

/// Upper bounds for one SMTP session. `Default` gives the documented values
/// (Zeek's where Zeek has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpLimits {
    /// Longest command, reply or message line kept, in bytes (without the
    /// line end). Longer lines are cut here and the rest is skipped.
    pub max_line_len: usize,
    /// Longest unfolded header kept (name and value), in bytes.
    pub max_header_len: usize,
    /// Headers read per MIME entity; later ones are ignored.
    pub max_headers: usize,
    /// `rcptto` entries per transaction (Zeek `max_rcptto_addresses`).
    pub max_rcptto: usize,
    /// `to` entries per transaction (Zeek `max_to_addresses`).
    pub max_to: usize,
    /// `cc` entries per transaction (Zeek `max_cc_addresses`).
    pub max_cc: usize,
    /// `path` entries per transaction (Zeek `max_path_length`).
    pub max_path: usize,
    /// Attachment file names per transaction.
    pub max_files: usize,
    /// Nesting depth of MIME entities (multipart inside multipart, attached
    /// messages); deeper entities are treated as opaque bodies.
    pub max_mime_depth: usize,
    /// Commands sent ahead of their replies (PIPELINING). Zeek clears its
    /// queue at 1000 and so do we.
    pub max_pending_commands: usize,
    /// Longest server reply text kept for `last_reply`, in bytes.
    pub max_reply_len: usize,
    /// Invalid mail transactions (RCPT without MAIL, DATA without RCPT)
    /// after which the session stops parsing (Zeek
    /// `max_invalid_mail_transactions`).
    pub max_invalid_transactions: u32,
}

impl SmtpLimits {
    /// Limits small enough that a short input reaches every one of them:
    /// for the session's own randomized tests and the fuzz targets.
    pub fn tiny() -> Self {
        SmtpLimits {
            max_line_len: 16,
            max_header_len: 24,
            max_headers: 3,
            max_rcptto: 2,
            max_to: 2,
            max_cc: 2,
            max_path: 2,
            max_files: 1,
            max_mime_depth: 2,
            max_pending_commands: 4,
            max_reply_len: 8,
            max_invalid_transactions: 3,
        }
    }
}

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_line_len: 4096,
            max_header_len: 16 * 1024,
            max_headers: 256,
            max_rcptto: 1000,
            max_to: 1000,
            max_cc: 1000,
            max_path: 1000,
            max_files: 100,
            max_mime_depth: 16,
            max_pending_commands: 1000,
            max_reply_len: 512,
            max_invalid_transactions: 25,
        }
    }
}
