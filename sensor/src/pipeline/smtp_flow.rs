//! The glue between the flow layer and the SMTP analysis: `SmtpSession` as a
//! `StreamParser` reporting into a worker's sink, and the session
//! configuration derived from the run's `Config`.

use std::sync::Arc;

use crate::config::{Config, MailPathCapture};
use crate::flow::StreamParser;
use crate::net::{ConnInfo, Direction, Ts};
use crate::output::extract::ExtractTx;
use crate::smtp::config::{PathCapture, SmtpConfig};
use crate::smtp::files::FileConfig;
use crate::smtp::limits::SmtpLimits;
use crate::smtp::session::SmtpSession;

use super::worker::{ParserFactory, WorkerSink};

/// The SMTP session settings of a run.
pub fn smtp_config(cfg: &Config) -> SmtpConfig {
    SmtpConfig {
        limits: SmtpLimits {
            max_line_len: cfg.max_line_len,
            max_header_len: cfg.max_header_len,
            max_headers: cfg.max_headers,
            max_rcptto: cfg.max_rcptto,
            max_to: cfg.max_to,
            max_cc: cfg.max_cc,
            max_path: cfg.max_path,
            max_files: cfg.max_files,
            max_mime_depth: cfg.max_mime_depth,
            max_pending_commands: cfg.max_pending_commands,
            max_reply_len: cfg.max_reply_len,
            max_invalid_transactions: u32::try_from(cfg.max_invalid_transactions)
                .unwrap_or(u32::MAX),
        },
        mail_path_capture: match cfg.mail_path_capture {
            MailPathCapture::Local => PathCapture::Local,
            MailPathCapture::Remote => PathCapture::Remote,
            MailPathCapture::All => PathCapture::All,
        },
        local_nets: cfg.local_nets.clone(),
        files: FileConfig {
            hashes: cfg.file_hashes,
            hash_max_bytes: u64::try_from(cfg.file_hash_max_bytes).unwrap_or(u64::MAX),
        },
        extract: None,
    }
}

/// Makes an SMTP session per new connection.
pub fn factory(cfg: &Config) -> ParserFactory<SmtpSession> {
    factory_extracting(cfg, None)
}

/// [`factory`], the sessions handing their files' bytes to `extract` (the
/// extraction writer's queue) when there is one.
pub fn factory_extracting(cfg: &Config, extract: Option<ExtractTx>) -> ParserFactory<SmtpSession> {
    let smtp = Arc::new(SmtpConfig {
        extract,
        ..smtp_config(cfg)
    });
    Arc::new(move |conn| SmtpSession::new(*conn, smtp.clone()))
}

impl StreamParser<WorkerSink> for SmtpSession {
    fn on_data(&mut self, dir: Direction, ts: Ts, data: &[u8], sink: &mut WorkerSink) {
        if !self.is_done_parsing() {
            SmtpSession::on_data(self, dir, ts, data, sink);
        }
    }

    fn on_gap(&mut self, dir: Direction, ts: Ts, len: u64, sink: &mut WorkerSink) {
        if !self.is_done_parsing() {
            SmtpSession::on_gap(self, dir, ts, len, sink);
        }
    }

    fn on_close(&mut self, ts: Ts, sink: &mut WorkerSink) {
        SmtpSession::on_close(self, ts, sink);
        let conn = *self.conn();
        sink.conn_end(&conn);
    }

    fn reuse(&mut self, conn: &ConnInfo) -> bool {
        SmtpSession::reuse(self, *conn);
        true
    }
}
