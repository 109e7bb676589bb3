//! Named SMTP protocol anomalies (Zeek "weird" names).

/// Something the SMTP parser saw that a well-behaved peer does not send, or
/// a limit that truncated data. Counted and logged, never a panic. Names are
/// Zeek's weird names where Zeek has one, so analysts can search for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmtpAnomaly {
    /// More RCPT TO addresses than `max_rcptto`.
    TooManyRcptto,
    /// More To addresses than `max_to`.
    TooManyTo,
    /// More Cc addresses than `max_cc`.
    TooManyCc,
    /// More Received-path addresses than `max_path`.
    MaxPathLength,
    /// More attachment names, or more files (files.log rows), than
    /// `max_files` in one transaction.
    TooManyFiles,
    /// RCPT TO without MAIL FROM.
    MailTransactionInvalid,
    /// DATA/BDAT without RCPT TO (the same weird name as Zeek's, with
    /// another `addl`).
    DataMissingRcptTo,
    /// More invalid transactions than `max_invalid_transactions`; the
    /// session stops parsing.
    ExcessiveInvalidTransactions,
    /// More pipelined commands waiting for replies than
    /// `max_pending_commands`; the queue was cleared.
    ExcessivePendingCommands,
    /// A BDAT command whose argument is not `<size>` or `<size> LAST`.
    InvalidBdatCommand,
    /// A command other than BDAT while BDAT chunks were still expected.
    MissingBdatLastChunk,
    /// DATA/BDAT began while a message body was still open.
    NestedMailTransaction,
    /// A line longer than `max_line_len`; cut there.
    LineTooLong,
    /// An unfolded header longer than `max_header_len`; cut there.
    HeaderTooLong,
    /// More headers in one MIME entity than `max_headers`.
    TooManyHeaders,
    /// MIME entities nested deeper than `max_mime_depth`.
    MimeDepthExceeded,
    /// A client line that is not a known SMTP command.
    UnknownCommand,
    /// A server line that does not start with a reply code 100..599.
    BadReplyLine,
    /// A continuation line of a multi-line reply with another code.
    ReplyCodeMismatch,
    /// Reply text longer than `max_reply_len`; cut there.
    ReplyTooLong,
    /// More repeats of addresses already on a list (rcptto, to, cc) in one
    /// transaction than the list's limit: a flood meant to cost CPU (each
    /// repeat costs one hash lookup; counted once per list).
    DuplicateAddressFlood,
    /// The server refused a BDAT (4xx/5xx) before its chunk was complete:
    /// it did not read the chunk, so the client's next bytes are commands
    /// again (a huge chunk size no longer hides the rest of the connection).
    BdatChunkRefused,
    /// A server line cut at `max_line_len` had not ended when the client
    /// sent its next line: the cut line ends there, and the server's next
    /// bytes start a new reply (a reply glued to an endless greeting is not
    /// lost, so replies stay paired with their commands).
    UnterminatedReplyLine,
    /// DATA ended at a `.` line not framed by CRLF on both sides (`\n.\n`,
    /// `\r\n.\n`, `\n.\r\n`, `.\r\r\n`…): the "SMTP smuggling" ends. A server
    /// that accepts only `\r\n.\r\n` sees the following lines as message
    /// text, the sensor (as Zeek) as commands.
    NonCrlfEndOfData,
    /// A DATA line starting with `.` and a bare CR (`\r\n.\rMAIL…`): Zeek,
    /// and servers that end lines at a bare CR, end the data there; the
    /// sensor (lines end at LF) reads on.
    BareCrEndOfData,
    /// A NUL byte in a command, reply or header line (Zeek's weird name;
    /// once per connection).
    NulInLine,
    /// A header that RFC 5322 allows once (Subject, From, Date, Reply-To,
    /// Message-ID, In-Reply-To) came again; the last one is logged, as Zeek.
    DuplicateHeader,
    /// A header name followed by blanks before its colon (`Subject : x`,
    /// RFC 5322's obsolete syntax): read as that header, as Zeek does.
    HeaderSpaceBeforeColon,
    /// A multipart entity's boundary starts with the boundary of an
    /// enclosing entity, so the enclosing one also matches its delimiters.
    BoundaryReused,
    /// A line matched a boundary only as a prefix (`--b` then more than
    /// `--` and blanks): Zeek takes it for a delimiter and so does the
    /// sensor; a strict RFC 2046 parser does not.
    BoundaryPrefixMatch,
    /// RFC 2231 parameter sections that repeat a number or leave one out
    /// (`filename*0=`, `filename*0=`, `filename*2=`).
    Rfc2231BadContinuation,
    /// The first server lines are not SMTP replies: the flow is not SMTP,
    /// and parsing stops (Zeek: an analyzer violation, after which its
    /// dynamic protocol detection disables the analyzer).
    AnalyzerViolation,
    /// A part's transfer encoding is broken (base64 with bytes outside
    /// its alphabet or an incomplete last group, quoted-printable with `=`
    /// not followed by two hex digits or control bytes): decoded the way
    /// Zeek does; once per file.
    IllegalEncoding,
    /// A file longer than `file_hash_max_bytes`: its hashes are left out.
    FileHashTruncated,
    /// A message body ended inside a multipart entity (no closing
    /// boundary).
    MissingClosingBoundary,
}

impl SmtpAnomaly {
    /// The weird-style name counters and logs use.
    pub const fn name(self) -> &'static str {
        match self {
            SmtpAnomaly::TooManyRcptto => "smtp_too_many_rcptto_addresses",
            SmtpAnomaly::TooManyTo => "smtp_too_many_to_addresses",
            SmtpAnomaly::TooManyCc => "smtp_too_many_cc_addresses",
            SmtpAnomaly::MaxPathLength => "smtp_max_path_length_exceeded",
            SmtpAnomaly::TooManyFiles => "smtp_too_many_files",
            SmtpAnomaly::MailTransactionInvalid | SmtpAnomaly::DataMissingRcptTo => {
                "smtp_mail_transaction_invalid"
            }
            SmtpAnomaly::ExcessiveInvalidTransactions => "smtp_excessive_invalid_mail_transactions",
            SmtpAnomaly::ExcessivePendingCommands => "smtp_excessive_pending_cmds",
            SmtpAnomaly::InvalidBdatCommand => "smtp_invalid_bdat_command",
            SmtpAnomaly::MissingBdatLastChunk => "smtp_missing_bdat_last_chunk",
            SmtpAnomaly::NestedMailTransaction => "smtp_nested_mail_transaction",
            SmtpAnomaly::LineTooLong => "line_too_long",
            SmtpAnomaly::HeaderTooLong => "mime_header_too_long",
            SmtpAnomaly::TooManyHeaders => "mime_too_many_headers",
            SmtpAnomaly::MimeDepthExceeded => "mime_depth_exceeded",
            SmtpAnomaly::UnknownCommand => "smtp_unknown_command",
            SmtpAnomaly::BadReplyLine => "smtp_bad_reply_line",
            SmtpAnomaly::ReplyCodeMismatch => "smtp_reply_code_mismatch",
            SmtpAnomaly::ReplyTooLong => "smtp_reply_too_long",
            SmtpAnomaly::DuplicateAddressFlood => "smtp_duplicate_address_flood",
            SmtpAnomaly::BdatChunkRefused => "smtp_bdat_chunk_refused",
            SmtpAnomaly::UnterminatedReplyLine => "smtp_unterminated_reply_line",
            SmtpAnomaly::NonCrlfEndOfData => "smtp_non_crlf_end_of_data",
            SmtpAnomaly::BareCrEndOfData => "smtp_bare_cr_end_of_data",
            SmtpAnomaly::NulInLine => "NUL_in_line",
            SmtpAnomaly::DuplicateHeader => "mime_duplicate_header",
            SmtpAnomaly::HeaderSpaceBeforeColon => "mime_header_space_before_colon",
            SmtpAnomaly::BoundaryReused => "mime_boundary_reused",
            SmtpAnomaly::BoundaryPrefixMatch => "mime_boundary_prefix_match",
            SmtpAnomaly::Rfc2231BadContinuation => "mime_rfc2231_bad_continuation",
            SmtpAnomaly::AnalyzerViolation => "smtp_analyzer_violation",
            SmtpAnomaly::IllegalEncoding => "mime_illegal_encoding",
            SmtpAnomaly::FileHashTruncated => "mime_file_hash_truncated",
            SmtpAnomaly::MissingClosingBoundary => "mime_missing_closing_boundary",
        }
    }
}

impl SmtpAnomaly {
    /// weird.log's `name`: Zeek's weird name for the same event where
    /// Zeek's source has one for it and the sensor's counter (metrics,
    /// summary) is named otherwise; else [`SmtpAnomaly::name`]. The
    /// counters keep their names (dashboards and alerts use them); the
    /// mapping is docs/ZEEK-DIFFERENCES.md's "weird.log names" table.
    pub const fn weird_name(self) -> &'static str {
        match self {
            // ContentLine_Analyzer: a line longer than its buffer is cut.
            SmtpAnomaly::LineTooLong => "contentline_size_exceeded",
            // MIME_Entity::ContHeader: a header past MIME::max_header_bytes.
            SmtpAnomaly::HeaderTooLong => "exceeded_mime_max_header_bytes",
            // MIME_Entity::BeginChildEntity: nesting past MIME::max_depth.
            SmtpAnomaly::MimeDepthExceeded => "exceeded_mime_max_depth",
            other => other.name(),
        }
    }

    /// weird.log's `addl`: what Zeek's SMTP script adds to the weird.
    pub const fn addl(self) -> Option<&'static str> {
        match self {
            SmtpAnomaly::MailTransactionInvalid => Some("rcpt to missing mail from"),
            SmtpAnomaly::DataMissingRcptTo => Some("data missing rcpt to"),
            _ => None,
        }
    }
}

impl std::fmt::Display for SmtpAnomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weird_names_are_zeeks_where_zeek_has_one() {
        assert_eq!(
            SmtpAnomaly::LineTooLong.weird_name(),
            "contentline_size_exceeded"
        );
        assert_eq!(
            SmtpAnomaly::HeaderTooLong.weird_name(),
            "exceeded_mime_max_header_bytes"
        );
        assert_eq!(
            SmtpAnomaly::MimeDepthExceeded.weird_name(),
            "exceeded_mime_max_depth"
        );
        // The counters keep the sensor's names.
        assert_eq!(SmtpAnomaly::LineTooLong.name(), "line_too_long");
        // Names that are Zeek's already, or that Zeek has no weird for,
        // are the same in both.
        for a in [
            SmtpAnomaly::MailTransactionInvalid,
            SmtpAnomaly::ExcessivePendingCommands,
            SmtpAnomaly::NulInLine,
            SmtpAnomaly::UnknownCommand,
        ] {
            assert_eq!(a.weird_name(), a.name());
        }
    }
}
