//! The SMTP state machine of one connection. It frames both directions into
//! lines, matches replies with the commands they answer (PIPELINING: in
//! order), follows DATA and BDAT bodies into the MIME tracker, stops at
//! STARTTLS, resynchronises after gaps, and writes a `MessageRecord` when a
//! transaction ends, the way Zeek's SMTP analyzer and scripts do.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::net::{ConnInfo, Direction, Ts};

use super::anomaly::SmtpAnomaly;
use super::config::SmtpConfig;
use super::files::local_orig;
use super::lines::{Line, LineBuf, ends_with_crlf, inert_prefix};
use super::message::{Added, HeaderApplier, Transaction};
use super::mime::{FileContext, LineInterest, MimeTracker};
use super::parser::{
    Command, Verb, first_email_addr, for_each_email_addr, parse_bdat_arg, parse_command,
    parse_reply, strip_orcpt, trim,
};
use super::record::{ListField, TextField};
use super::sink::{Reply, SmtpSink};
use super::text::lossy;

/// What a server reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    /// The greeting the server sends on connect.
    Greeting,
    Verb(Verb),
    /// The `.` that ends DATA.
    EndOfData,
    /// `BDAT <n> LAST`.
    BdatLast,
    /// A client line while the server is in an AUTH exchange.
    AuthAnswer,
}

/// Where the session is, as far as parsing the client side needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Client lines are commands.
    Commands,
    /// Client lines are message data until `.`.
    InData,
    /// Between BDAT chunks: client lines are commands, the body is open.
    InBdat,
    /// Client lines answer an AUTH challenge.
    InAuth,
    /// After a gap: client lines are ignored until the server replies.
    AfterGap,
    /// After the first reply following a gap.
    GapRecovery,
    /// STARTTLS accepted: nothing more is parsed.
    Tls,
    /// Too many invalid transactions: nothing more is parsed.
    Disabled,
}

/// The BDAT transfer in progress.
#[derive(Clone, Copy, Debug)]
struct Bdat {
    /// Chunk bytes still to come from the client.
    remaining: u64,
    last: bool,
}

/// Transactions that may wait for the answer to their end of data at once.
const MAX_AWAITING_END: usize = 16;

/// Server lines without a reply code, before the first line with one,
/// after which the flow is taken for another protocol and parsing stops
/// (Zeek's `DPD::max_violations` default).
const MAX_UNCONFIRMED_VIOLATIONS: u8 = 5;

/// The SMTP analysis of one TCP connection.
pub struct SmtpSession {
    conn: ConnInfo,
    cfg: Arc<SmtpConfig>,
    orig_lines: LineBuf,
    resp_lines: LineBuf,
    /// Lines of BDAT chunk data (they may span chunks).
    chunk_lines: LineBuf,
    state: State,
    /// Commands waiting for their replies, oldest first.
    pending: VecDeque<Cmd>,
    /// The reply being received: its code and the command it answers.
    reply: Option<(u16, Option<Cmd>)>,
    /// Text of the latest line of the reply being received.
    reply_text: String,
    bdat: Option<Bdat>,
    mime: MimeTracker,
    /// A message body is open (Zeek: `mail != nullptr`).
    in_body: bool,
    tx: Transaction,
    /// Transactions whose data the client ended (`.`, the last BDAT chunk)
    /// and whose end the server has not answered yet, oldest first: a
    /// pipelining client's next commands already belong to `tx`, and each
    /// of these keeps the reply to its own end.
    awaiting_end: VecDeque<Transaction>,
    /// A written transaction's allocations, for the next one parked.
    spare: Option<Transaction>,
    helo: Option<String>,
    /// The helo before the HELO/EHLO awaiting its reply: put back if the
    /// server rejects the new one (RFC 5321 §4.1.4: a rejected EHLO
    /// changes nothing).
    helo_before: Option<Option<String>>,
    /// `body_seen` before the DATA awaiting its reply: put back if the
    /// server refuses the DATA, so that the message of a later, accepted
    /// DATA still gives the record its headers.
    body_seen_before: Option<bool>,
    /// Messages completed (server replies to `.` / BDAT LAST).
    messages: u32,
    mail_from_seen: bool,
    rcpt_to_seen: bool,
    invalid_transactions: u32,
    /// The client's last line ended with exactly CRLF (the `.` that ends
    /// DATA must have CRLF on both sides).
    orig_crlf: bool,
    /// The server sent a line with a reply code: the flow speaks SMTP.
    confirmed: bool,
    /// Server lines without a reply code before `confirmed`.
    violations: u8,
    /// `NUL_in_line` was counted (once per connection, as Zeek).
    nul_reported: bool,
    /// Anomalies found while handling a line, handed to the sink after it.
    anomalies: Vec<SmtpAnomaly>,
}

/// Replaces `dst` with `src` as text, cut to at most `max` bytes (at a
/// character boundary). Returns true if it was cut.
fn lossy_into(dst: &mut String, src: &[u8], max: usize) -> bool {
    dst.clear();
    let s = lossy(src);
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    dst.push_str(s.get(..end).unwrap_or_default());
    end < s.len()
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

impl SmtpSession {
    /// A session for a new connection; the server's greeting is the first
    /// reply expected.
    pub fn new(conn: ConnInfo, cfg: Arc<SmtpConfig>) -> Self {
        let tx = Transaction::new(&conn);
        let mut pending = VecDeque::new();
        pending.push_back(Cmd::Greeting);
        SmtpSession {
            conn,
            cfg,
            orig_lines: LineBuf::default(),
            resp_lines: LineBuf::default(),
            chunk_lines: LineBuf::default(),
            state: State::Commands,
            pending,
            reply: None,
            reply_text: String::new(),
            bdat: None,
            mime: MimeTracker::default(),
            in_body: false,
            tx,
            awaiting_end: VecDeque::new(),
            spare: None,
            helo: None,
            helo_before: None,
            body_seen_before: None,
            messages: 0,
            mail_from_seen: false,
            rcpt_to_seen: false,
            invalid_transactions: 0,
            orig_crlf: true,
            confirmed: false,
            violations: 0,
            nul_reported: false,
            anomalies: Vec::new(),
        }
    }

    /// Makes this session, whose connection is over, the session of
    /// `conn`, as [`SmtpSession::new`] would make it but keeping the
    /// buffers' capacity (line buffers, reply text, MIME header, command
    /// queue, the transaction's reply buffers and address index), so that a
    /// pool of ended sessions spares a new connection a dozen allocations.
    /// Every field is named here: one added later must say what a reused
    /// session does with it.
    pub fn reuse(&mut self, conn: ConnInfo) {
        let SmtpSession {
            conn: my_conn,
            cfg: _,
            orig_lines,
            resp_lines,
            chunk_lines,
            state,
            pending,
            reply,
            reply_text,
            bdat,
            mime,
            in_body,
            tx,
            awaiting_end,
            spare,
            helo,
            helo_before,
            body_seen_before,
            messages,
            mail_from_seen,
            rcpt_to_seen,
            invalid_transactions,
            orig_crlf,
            confirmed,
            violations,
            nul_reported,
            anomalies,
        } = self;
        *my_conn = conn;
        for lines in [orig_lines, resp_lines, chunk_lines] {
            lines.recycle();
        }
        *state = State::Commands;
        pending.clear();
        pending.push_back(Cmd::Greeting);
        *reply = None;
        reply_text.clear();
        reply_text.shrink_to(super::lines::KEEP_CAPACITY);
        *bdat = None;
        mime.recycle();
        *in_body = false;
        tx.recycle(&conn);
        // Each waiting transaction is written at the close; none is left.
        awaiting_end.clear();
        if let Some(t) = spare.as_mut() {
            t.recycle(&conn);
        }
        *helo = None;
        *helo_before = None;
        *body_seen_before = None;
        *messages = 0;
        *mail_from_seen = false;
        *rcpt_to_seen = false;
        *invalid_transactions = 0;
        *orig_crlf = true;
        *confirmed = false;
        *violations = 0;
        *nul_reported = false;
        anomalies.clear();
    }

    /// The connection this session analyses.
    pub fn conn(&self) -> &ConnInfo {
        &self.conn
    }

    /// True once nothing more will be parsed (STARTTLS, or disabled after
    /// too many invalid transactions); the flow layer may stop feeding data.
    pub fn is_done_parsing(&self) -> bool {
        matches!(self.state, State::Tls | State::Disabled)
    }

    /// In-order payload of one direction, any size, cut anywhere.
    pub fn on_data(&mut self, dir: Direction, ts: Ts, data: &[u8], sink: &mut dyn SmtpSink) {
        let max = self.cfg.limits.max_line_len;
        if dir == Direction::Orig {
            self.mime.set_now(ts);
        }
        let mut pos = 0;
        while pos < data.len() && !self.is_done_parsing() {
            if dir == Direction::Orig
                && let Some(b) = self.bdat.as_mut()
                && b.remaining > 0
            {
                let avail = data.len() - pos;
                let take = usize::try_from(b.remaining).map_or(avail, |r| r.min(avail));
                b.remaining -= take as u64;
                let done = b.remaining == 0 && b.last;
                let chunk = data.get(pos..pos + take).unwrap_or_default();
                pos += take;
                self.touch(ts);
                self.chunk_bytes(chunk);
                if done {
                    self.end_bdat_last(ts, sink);
                }
                self.drain_anomalies(sink);
                continue;
            }
            if dir == Direction::Orig {
                pos += self.skip_inert_data(ts, data.get(pos..).unwrap_or_default());
                if pos >= data.len() {
                    break;
                }
            }
            let mut lines = std::mem::take(match dir {
                Direction::Orig => &mut self.orig_lines,
                Direction::Resp => &mut self.resp_lines,
            });
            let find_nul = self.nul_matters(dir);
            if let Some(line) = lines.next_line_with(data, &mut pos, max, find_nul) {
                if line.truncated {
                    self.anomalies.push(SmtpAnomaly::LineTooLong);
                }
                match dir {
                    Direction::Orig => self.client_line(ts, line, sink),
                    Direction::Resp => self.server_line(ts, line, sink),
                }
            }
            *match dir {
                Direction::Orig => &mut self.orig_lines,
                Direction::Resp => &mut self.resp_lines,
            } = lines;
            self.drain_anomalies(sink);
        }
    }

    /// `len` bytes of one direction are missing. Like Zeek: the open message
    /// body ends, pending commands are forgotten, client lines are ignored
    /// until the server's next reply (a 354 then re-enters DATA), and the
    /// partial line before the gap is dropped.
    pub fn on_gap(&mut self, dir: Direction, ts: Ts, len: u64, sink: &mut dyn SmtpSink) {
        if len == 0 || self.is_done_parsing() {
            return;
        }
        // The flow layer counts the gap itself (`content_gap`).
        // The replies to ends of data still awaited may be in the gap:
        // the last such transaction becomes the current one again (later
        // lines apply to it, as they did before it ended), the others are
        // written as they are.
        if !self.tx.client_activity
            && let Some(last) = self.awaiting_end.pop_back()
        {
            let fresh = std::mem::replace(&mut self.tx, last);
            self.spare = Some(fresh);
        }
        while let Some(done) = self.awaiting_end.pop_front() {
            self.write(done, ts, sink);
        }
        self.touch(ts);
        if matches!(self.state, State::InData | State::InBdat) || self.in_body {
            if dir == Direction::Orig {
                // The open file lost these bytes (`missing_bytes`).
                self.mime.set_now(ts);
                self.mime.gap(len);
            }
            self.end_data();
        }
        self.pending.clear();
        self.reply = None;
        match dir {
            Direction::Orig => {
                self.orig_lines.skip_partial();
                self.orig_crlf = true;
            }
            Direction::Resp => self.resp_lines.skip_partial(),
        }
        self.state = State::AfterGap;
        self.drain_anomalies(sink);
    }

    /// The connection is finished (FIN/RST, idle timeout, end of input):
    /// the open body ends and the open transaction is written if it saw
    /// client activity.
    pub fn on_close(&mut self, ts: Ts, sink: &mut dyn SmtpSink) {
        if self.in_body || self.bdat.is_some() {
            // The connection ends inside the message: its open file is
            // `timedout` (the partial line before is still its own).
            self.mime.abandon();
            self.flush_chunk_partial();
            self.end_data();
        }
        while let Some(done) = self.awaiting_end.pop_front() {
            self.write(done, ts, sink);
        }
        self.smtp_message(ts, sink);
        if self.state != State::Tls {
            self.state = State::Disabled;
        }
        self.drain_anomalies(sink);
    }

    /// Whether a NUL in the next line of `dir` is counted (`NUL_in_line`):
    /// in replies, commands and header lines, not in a message body (nor in
    /// lines ignored after a gap or answering AUTH, which are not looked
    /// at), so body lines are framed without looking for one. Decided by
    /// the state the line will be handled in.
    fn nul_matters(&self, dir: Direction) -> bool {
        match (dir, self.state) {
            (Direction::Resp, _) => true,
            (Direction::Orig, State::InData) => !self.in_body || self.mime.in_header(),
            (Direction::Orig, State::AfterGap | State::InAuth) => false,
            (Direction::Orig, _) => true,
        }
    }

    fn drain_anomalies(&mut self, sink: &mut dyn SmtpSink) {
        for a in self.anomalies.drain(..) {
            if a == SmtpAnomaly::NulInLine {
                if self.nul_reported {
                    continue;
                }
                self.nul_reported = true;
            }
            sink.anomaly(&self.conn, a);
        }
    }

    // ---- client side -------------------------------------------------

    /// One client line.
    fn client_line(&mut self, ts: Ts, framed: Line<'_>, sink: &mut dyn SmtpSink) {
        self.touch(ts);
        let Line {
            bytes: line,
            crlf,
            nul,
            ..
        } = framed;
        let prev_crlf = std::mem::replace(&mut self.orig_crlf, crlf);
        // The client speaks only once the server has finished: a server
        // line cut at the limit and still unfinished (a greeting without
        // CRLF) ends here, so that the server's next reply is not dropped
        // with the rest of it and replies stay paired with their commands.
        if self.resp_lines.end_cut_line() {
            self.anomalies.push(SmtpAnomaly::UnterminatedReplyLine);
        }
        match self.state {
            // Unknown whether this is a command or data: wait for a reply.
            State::AfterGap => {}
            State::InData if line == b"." => {
                // Zeek's lines end at a bare LF too, and so does the end of
                // data; a server that wants CRLF on both sides reads on.
                if !(prev_crlf && crlf) {
                    self.anomalies.push(SmtpAnomaly::NonCrlfEndOfData);
                }
                self.end_of_data(ts, sink);
            }
            State::InData => {
                // `.` then a bare CR at a line start (`\r\n.\rMAIL…`): a
                // line end for Zeek and for servers that take a bare CR for
                // one, so the end of their data; message text here. Only
                // lines that start with `.` are looked at (the others are
                // stepped over unframed): a bare CR elsewhere is not seen.
                if line.starts_with(b".\r") {
                    self.anomalies.push(SmtpAnomaly::BareCrEndOfData);
                }
                let data = line.strip_prefix(b".").unwrap_or(line);
                if !self.in_body {
                    self.begin_data();
                }
                self.body_line(data, nul);
            }
            State::InAuth => self.push_cmd(Cmd::AuthAnswer),
            _ => {
                if nul {
                    self.anomalies.push(SmtpAnomaly::NulInLine);
                }
                self.command(ts, parse_command(line), sink);
            }
        }
    }

    fn push_cmd(&mut self, cmd: Cmd) {
        if self.pending.len() > self.cfg.limits.max_pending_commands {
            self.anomalies.push(SmtpAnomaly::ExcessivePendingCommands);
            let front = self.pending.pop_front();
            self.pending.clear();
            self.pending.extend(front);
        }
        self.pending.push_back(cmd);
    }

    fn command(&mut self, ts: Ts, cmd: Command<'_>, sink: &mut dyn SmtpSink) {
        let verb = cmd.verb;
        if verb == Verb::Unknown {
            // Zeek raises no request for it; it is still queued so that
            // its reply does not get matched with a later command.
            self.anomalies.push(SmtpAnomaly::UnknownCommand);
            self.push_cmd(Cmd::Verb(Verb::Unknown));
            return;
        }
        let bdat = (verb == Verb::Bdat).then(|| parse_bdat_arg(cmd.arg));
        let queued = match bdat {
            Some(Ok(b)) if b.last => Cmd::BdatLast,
            _ => Cmd::Verb(verb),
        };
        self.push_cmd(queued);
        self.request(
            ts,
            verb,
            cmd.arg,
            bdat.and_then(|b| b.ok()).is_some_and(|b| b.last),
            sink,
        );
        if self.state == State::Disabled {
            return;
        }
        match bdat {
            Some(Err(_)) => {
                self.anomalies.push(SmtpAnomaly::InvalidBdatCommand);
                return;
            }
            Some(Ok(b)) => {
                if self.bdat.is_none() {
                    self.begin_data();
                }
                self.bdat = Some(Bdat {
                    remaining: b.size,
                    last: b.last,
                });
                self.state = State::InBdat;
                if b.size == 0 && b.last {
                    self.end_bdat_last(ts, sink);
                }
                return;
            }
            None => {
                if self.bdat.is_some() {
                    self.anomalies.push(SmtpAnomaly::MissingBdatLastChunk);
                    self.end_data();
                }
            }
        }
        match verb {
            Verb::Data => {
                let before = self.tx.body_seen;
                self.begin_data();
                self.body_seen_before = Some(before);
                self.state = State::InData;
            }
            Verb::Helo
            | Verb::Ehlo
            | Verb::Mail
            | Verb::Rcpt
            | Verb::Rset
            | Verb::Quit
            | Verb::Send
            | Verb::Soml
            | Verb::Saml => self.state = State::Commands,
            _ => {}
        }
    }

    /// What Zeek's `smtp_request` handlers do with a command.
    fn request(
        &mut self,
        ts: Ts,
        verb: Verb,
        arg: &[u8],
        bdat_last: bool,
        sink: &mut dyn SmtpSink,
    ) {
        match verb {
            Verb::Helo | Verb::Ehlo => {
                // The record takes the session's helo when it is written.
                // Set now (a capture may lack the server's side), undone
                // if the reply rejects it.
                self.helo_before = Some(self.helo.clone());
                let helo = self.helo.get_or_insert_with(String::new);
                helo.clear();
                helo.push_str(&lossy(trim(arg)));
            }
            Verb::Rcpt if starts_with_ci(arg, b"to:") => {
                let max = self.cfg.limits.max_rcptto;
                let tx = &mut self.tx;
                let anomalies = &mut self.anomalies;
                let mut full = false;
                for_each_email_addr(arg, |a| {
                    if full {
                        return;
                    }
                    match tx.add_rcpt(&strip_orcpt(a), max) {
                        Added::Full => full = true,
                        Added::DuplicateFlood => {
                            anomalies.push(SmtpAnomaly::DuplicateAddressFlood);
                        }
                        Added::New | Added::Duplicate => {}
                    }
                });
                if full {
                    self.anomalies.push(SmtpAnomaly::TooManyRcptto);
                }
                self.tx.client_activity = true;
                self.rcpt_to_seen = true;
                if !self.mail_from_seen {
                    self.invalid_transaction(SmtpAnomaly::MailTransactionInvalid);
                }
            }
            Verb::Mail if starts_with_ci(arg, b"from:") => {
                // The previous transaction ends here if its end was not seen.
                self.smtp_message(ts, sink);
                self.tx.touch(ts);
                if let Some(from) = first_email_addr(arg) {
                    self.tx.record.set_text(TextField::Mailfrom, &from);
                }
                self.tx.client_activity = true;
                self.mail_from_seen = true;
                self.rcpt_to_seen = false;
            }
            Verb::Data | Verb::Bdat => {
                if !self.rcpt_to_seen {
                    self.invalid_transaction(SmtpAnomaly::DataMissingRcptTo);
                }
                if bdat_last {
                    self.mail_from_seen = false;
                    self.rcpt_to_seen = false;
                }
            }
            _ => {}
        }
    }

    /// Zeek's `mail_transaction_invalid`: `why` is the weird (its `addl`
    /// says which rule broke).
    fn invalid_transaction(&mut self, why: SmtpAnomaly) {
        self.anomalies.push(why);
        self.invalid_transactions += 1;
        if self.invalid_transactions > self.cfg.limits.max_invalid_transactions {
            self.anomalies
                .push(SmtpAnomaly::ExcessiveInvalidTransactions);
            self.state = State::Disabled;
        }
    }

    /// The client's `.`: the body ends, the server's reply completes the
    /// message.
    fn end_of_data(&mut self, ts: Ts, sink: &mut dyn SmtpSink) {
        self.push_cmd(Cmd::EndOfData);
        self.end_data();
        self.await_end(ts, sink);
        self.state = State::Commands;
        self.mail_from_seen = false;
        self.rcpt_to_seen = false;
    }

    /// The client ended the transaction's data: it waits for the server's
    /// answer to that end, and the client's next commands start the next
    /// transaction. At most [`MAX_AWAITING_END`] wait (a capture without the
    /// server's side never answers): beyond, the oldest is written as it is.
    fn await_end(&mut self, ts: Ts, sink: &mut dyn SmtpSink) {
        if self.awaiting_end.len() >= MAX_AWAITING_END
            && let Some(oldest) = self.awaiting_end.pop_front()
        {
            self.write(oldest, ts, sink);
        }
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Transaction::new(&self.conn));
        let done = std::mem::replace(&mut self.tx, next);
        self.awaiting_end.push_back(done);
    }

    /// Network time reached `ts` on a line of the session: the start of the
    /// current transaction, unless an earlier one still awaits the answer to
    /// its end (the lines until then are its own).
    fn touch(&mut self, ts: Ts) {
        if self.awaiting_end.is_empty() {
            self.tx.touch(ts);
        }
    }

    // ---- message body ----------------------------------------------------

    fn begin_data(&mut self) {
        if self.in_body {
            self.anomalies.push(SmtpAnomaly::NestedMailTransaction);
            self.finish_body();
        }
        let top_headers = !self.tx.body_seen;
        self.tx.body_seen = true;
        let local = local_orig(&self.cfg.local_nets, self.conn.id.orig_h);
        self.mime.set_files(FileContext::new(
            &self.conn,
            local,
            self.cfg.files,
            self.cfg.extract.clone(),
        ));
        self.mime.begin(top_headers);
        self.in_body = true;
    }

    /// The body fast path: steps over the DATA lines at the start of
    /// `data` that would change nothing (not `.`, not dot-stuffed, not too
    /// long, and no header block or boundary the MIME tracker waits for),
    /// without framing and dispatching each. Returns the bytes stepped over;
    /// the line after them goes the ordinary way.
    fn skip_inert_data(&mut self, ts: Ts, data: &[u8]) -> usize {
        if self.state != State::InData || !self.in_body || self.orig_lines.holds_partial() {
            return 0;
        }
        let Some(marks) = self.mime.interest().marks(true) else {
            return 0;
        };
        let n = inert_prefix(data, self.cfg.limits.max_line_len, marks);
        if n > 0 {
            self.touch(ts);
            let run = data.get(..n).unwrap_or_default();
            self.orig_crlf = ends_with_crlf(run);
            if self.mime.file_open() {
                self.mime.inert_lines(run, &mut self.anomalies);
            }
        }
        n
    }

    /// One line of the open body; `nul`: it holds a NUL (the framing
    /// found it, so the MIME tracker does not search header lines again).
    fn body_line(&mut self, line: &[u8], nul: bool) {
        if !self.in_body {
            return;
        }
        let mut applier = HeaderApplier {
            tx: &mut self.tx,
            cfg: &self.cfg,
            anomalies: &mut self.anomalies,
        };
        self.mime
            .framed_line(line, nul, &self.cfg.limits, &mut applier);
    }

    fn finish_body(&mut self) {
        if !self.in_body {
            return;
        }
        let mut applier = HeaderApplier {
            tx: &mut self.tx,
            cfg: &self.cfg,
            anomalies: &mut self.anomalies,
        };
        self.mime.finish(&self.cfg.limits, &mut applier);
        self.in_body = false;
    }

    /// Zeek's `EndData`: the body ends, any BDAT transfer with it.
    fn end_data(&mut self) {
        self.finish_body();
        self.bdat = None;
        self.chunk_lines.reset();
    }

    fn chunk_bytes(&mut self, chunk: &[u8]) {
        let max = self.cfg.limits.max_line_len;
        let mut lines = std::mem::take(&mut self.chunk_lines);
        let mut pos = 0;
        loop {
            // The body fast path, as for DATA; chunk data is not
            // dot-stuffed, so only the MIME tracker's interest counts.
            if !lines.holds_partial() {
                let interest = if self.in_body {
                    self.mime.interest()
                } else {
                    LineInterest::Nothing
                };
                if let Some(marks) = interest.marks(false) {
                    let rest = chunk.get(pos..).unwrap_or_default();
                    let n = inert_prefix(rest, max, marks);
                    if n > 0 && self.in_body && self.mime.file_open() {
                        let run = rest.get(..n).unwrap_or_default();
                        self.mime.inert_lines(run, &mut self.anomalies);
                    }
                    pos += n;
                }
            }
            let find_nul = self.in_body && self.mime.in_header();
            let Some(line) = lines.next_line_with(chunk, &mut pos, max, find_nul) else {
                break;
            };
            if line.truncated {
                self.anomalies.push(SmtpAnomaly::LineTooLong);
            }
            self.body_line(line.bytes, line.nul);
        }
        self.chunk_lines = lines;
    }

    fn flush_chunk_partial(&mut self) {
        let mut lines = std::mem::take(&mut self.chunk_lines);
        if let Some(rest) = lines.take_partial() {
            self.body_line(rest.bytes, rest.nul);
        }
        lines.reset();
        self.chunk_lines = lines;
    }

    /// All bytes of the LAST chunk arrived.
    fn end_bdat_last(&mut self, ts: Ts, sink: &mut dyn SmtpSink) {
        self.flush_chunk_partial();
        self.end_data();
        self.await_end(ts, sink);
        self.state = State::Commands;
    }

    // ---- server side -------------------------------------------------

    fn server_line(&mut self, ts: Ts, framed: Line<'_>, sink: &mut dyn SmtpSink) {
        self.touch(ts);
        let line = framed.bytes;
        if framed.nul {
            self.anomalies.push(SmtpAnomaly::NulInLine);
        }
        let Some(r) = parse_reply(line) else {
            self.anomalies.push(SmtpAnomaly::BadReplyLine);
            self.violation();
            return;
        };
        self.confirmed = true;
        if let Some((code, cmd)) = self.reply
            && code != r.code
        {
            // The reply was cut short by another one: report what we have.
            self.anomalies.push(SmtpAnomaly::ReplyCodeMismatch);
            self.reply = None;
            self.complete_reply(ts, code, cmd, sink);
        }
        if self.reply.is_none() {
            let cmd = self.new_reply(ts, r.code, sink);
            self.reply = Some((r.code, cmd));
        }
        if lossy_into(&mut self.reply_text, r.text, self.cfg.limits.max_reply_len) {
            self.anomalies.push(SmtpAnomaly::ReplyTooLong);
        }
        if (!r.more || self.state == State::Tls)
            && let Some((code, cmd)) = self.reply.take()
        {
            self.complete_reply(ts, code, cmd, sink);
        }
    }

    /// A server line without a reply code. Before any line with one, a few
    /// of them mean the flow is another protocol on an SMTP port (an HTTP or
    /// TLS server, a scanner's probe): parsing stops, rather than taking
    /// its bytes for mail until the invalid-transaction limit. Zeek's
    /// dynamic protocol detection disables its analyzer the same way.
    fn violation(&mut self) {
        if self.confirmed {
            return;
        }
        self.violations = self.violations.saturating_add(1);
        if self.violations >= MAX_UNCONFIRMED_VIOLATIONS {
            self.anomalies.push(SmtpAnomaly::AnalyzerViolation);
            self.state = State::Disabled;
        }
    }

    /// The first line of a reply: match it with the oldest pending command
    /// and update the state as Zeek's `UpdateState` does.
    fn new_reply(&mut self, ts: Ts, code: u16, sink: &mut dyn SmtpSink) -> Option<Cmd> {
        if self.state == State::AfterGap {
            self.state = State::GapRecovery;
        }
        let st = self.state;
        // A first reply that cannot be a greeting, with commands waiting:
        // the greeting was not captured (the capture starts late). Match the
        // reply with the first command instead of shifting every reply by
        // one. (Zeek would shift; PIPE_CONNECT clients that talk before the
        // greeting still get it matched, as its code is 220.)
        if self.pending.front() == Some(&Cmd::Greeting)
            && self.pending.len() > 1
            && !matches!(code, 220 | 421 | 554)
        {
            self.pending.pop_front();
        }
        let cmd = self.pending.pop_front();
        match cmd {
            Some(Cmd::Verb(Verb::Data)) => {
                let before = self.body_seen_before.take();
                if code != 354 {
                    if self.state == State::InData {
                        self.end_data();
                    }
                    self.state = State::Commands;
                    // No message began: the next DATA's is the first.
                    if let Some(before) = before {
                        self.tx.body_seen = before;
                    }
                }
            }
            Some(Cmd::Verb(Verb::Helo | Verb::Ehlo)) => {
                // SEMANTICS: the last name the server accepted; a refused
                // one leaves the earlier value, none if there was none.
                let before = self.helo_before.take();
                if code >= 400
                    && let Some(before) = before
                {
                    self.helo = before;
                }
            }
            // The client's `.` already gave its side back to commands; what
            // it sent since (a pipelined MAIL, RCPT, DATA whose 354 follows
            // this reply) set the state now, and the late reply to the end
            // of data must not undo it (a DATA pipelined after `.` would
            // lose its message to command parsing).
            Some(Cmd::EndOfData) => {}
            Some(Cmd::Verb(Verb::Auth) | Cmd::AuthAnswer) => {
                self.state = if code == 334 {
                    State::InAuth
                } else {
                    State::Commands
                };
            }
            Some(Cmd::Verb(Verb::Starttls)) => {
                if code == 220 {
                    self.state = State::Tls;
                    self.tx.record.tls = true;
                    self.tx.client_activity = true;
                }
            }
            Some(Cmd::BdatLast | Cmd::Verb(Verb::Bdat)) => {
                if code >= 400 {
                    self.bdat_refused(ts, cmd == Some(Cmd::BdatLast), sink);
                }
            }
            Some(
                Cmd::Greeting
                | Cmd::Verb(
                    Verb::Mail
                    | Verb::Send
                    | Verb::Soml
                    | Verb::Saml
                    | Verb::Rcpt
                    | Verb::Rset
                    | Verb::Quit
                    | Verb::Turn,
                ),
            ) => {}
            Some(Cmd::Verb(
                Verb::Noop | Verb::Vrfy | Verb::Expn | Verb::Help | Verb::Etrn | Verb::Unknown,
            ))
            | None => {
                if st == State::GapRecovery && code == 354 {
                    self.begin_data();
                    self.state = State::InData;
                }
            }
        }
        cmd
    }

    /// The server refused a BDAT command (`last`: one with LAST). If its
    /// chunk is the one still arriving, the server answered before reading
    /// it: it did not take the chunk (a size it will not accept, a syntax
    /// or sequence error), and reads what the client sends next as
    /// commands, so the session does too. Otherwise the reply changes
    /// nothing: a server that reads a chunk answers once it has all of it,
    /// and a chunk refused after it arrived is over anyway.
    ///
    /// Zeek keeps reading the chunk's bytes whatever the reply (its
    /// content-line analyzer stays in plain delivery for the announced
    /// size), so a client that announces a huge chunk hides everything after
    /// it from Zeek; only sizes beyond 2^63 are refused (`smtp_huge_bdat_chunk`).
    /// What the client sent before the reply was captured stays chunk data:
    /// RFC 3030 lets a client send the chunk without waiting.
    fn bdat_refused(&mut self, ts: Ts, last: bool, sink: &mut dyn SmtpSink) {
        if self.bdat.is_none_or(|b| b.remaining == 0)
            || self
                .pending
                .iter()
                .any(|c| matches!(c, Cmd::BdatLast | Cmd::Verb(Verb::Bdat)))
        {
            return;
        }
        self.anomalies.push(SmtpAnomaly::BdatChunkRefused);
        if last {
            // The end of this transaction's data: the reply completes it.
            self.end_bdat_last(ts, sink);
        } else {
            self.flush_chunk_partial();
            self.end_data();
            self.state = State::Commands;
        }
    }

    /// The last line of a reply: what Zeek's `smtp_reply` handlers do.
    fn complete_reply(&mut self, ts: Ts, code: u16, cmd: Option<Cmd>, sink: &mut dyn SmtpSink) {
        let ends_data = matches!(cmd, Some(Cmd::EndOfData | Cmd::BdatLast));
        // The answer to an end of data belongs to the transaction that
        // ended, not to the one the client has begun since.
        let tx = match self.awaiting_end.front_mut() {
            Some(done) if ends_data => done,
            _ => &mut self.tx,
        };
        tx.set_reply(code, &self.reply_text);
        sink.reply(
            &self.conn,
            &Reply {
                ts,
                code,
                text: &self.reply_text,
                rcpts: tx.record.list(ListField::Rcptto),
            },
        );
        if ends_data {
            match self.awaiting_end.pop_front() {
                Some(done) => self.write(done, ts, sink),
                None => {
                    self.smtp_message(ts, sink);
                    self.tx.reset();
                }
            }
            self.messages += 1;
        }
    }

    // ---- records -------------------------------------------------------

    /// Zeek's `smtp_message`: writes the transaction if it saw client
    /// activity, and then starts a new one. A record's depth is Zeek's:
    /// one more than the messages completed before it is written.
    fn smtp_message(&mut self, ts: Ts, sink: &mut dyn SmtpSink) {
        if self.tx.client_activity {
            let record = self.tx.finish(ts, self.messages + 1, self.helo.as_deref());
            sink.record(&self.conn, record);
            self.tx.reset();
        }
    }

    /// Writes a transaction that awaited the answer to its end, as
    /// [`Self::smtp_message`] does the current one; keeps its allocations
    /// for the next.
    fn write(&mut self, mut done: Transaction, ts: Ts, sink: &mut dyn SmtpSink) {
        if done.client_activity {
            let record = done.finish(ts, self.messages + 1, self.helo.as_deref());
            sink.record(&self.conn, record);
        }
        done.reset();
        self.spare = Some(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ConnId;
    use crate::smtp::record::MessageRecord;

    #[derive(Default)]
    pub(super) struct Sink {
        pub(super) replies: Vec<(u16, String, Vec<String>)>,
        pub(super) records: Vec<MessageRecord>,
        pub(super) anomalies: Vec<SmtpAnomaly>,
    }

    impl SmtpSink for Sink {
        fn reply(&mut self, _conn: &ConnInfo, r: &Reply<'_>) {
            self.replies.push((
                r.code,
                r.text.to_string(),
                r.rcpts.iter().map(str::to_owned).collect::<Vec<_>>(),
            ));
        }
        fn record(&mut self, _conn: &ConnInfo, record: MessageRecord) {
            self.records.push(record);
        }
        fn anomaly(&mut self, _conn: &ConnInfo, a: SmtpAnomaly) {
            self.anomalies.push(a);
        }
    }

    pub(super) fn conn() -> ConnInfo {
        let id = ConnId {
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(1))
    }

    /// Drives a session with a transcript: `C:` lines from the client,
    /// `S:` lines from the server, each a separate segment with its own
    /// time; then closes the connection.
    struct Harness {
        s: SmtpSession,
        sink: Sink,
        t: u64,
    }

    impl Harness {
        fn new() -> Self {
            Self::with(SmtpConfig::default())
        }
        fn with(cfg: SmtpConfig) -> Self {
            Harness {
                s: SmtpSession::new(conn(), Arc::new(cfg)),
                sink: Sink::default(),
                t: 100,
            }
        }
        fn send(&mut self, dir: Direction, data: &[u8]) -> &mut Self {
            self.t += 1;
            self.s.on_data(dir, Ts(self.t), data, &mut self.sink);
            self
        }
        fn c(&mut self, data: &str) -> &mut Self {
            self.send(Direction::Orig, data.as_bytes())
        }
        fn srv(&mut self, data: &str) -> &mut Self {
            self.send(Direction::Resp, data.as_bytes())
        }
        fn close(&mut self) -> &mut Self {
            self.t += 1;
            self.s.on_close(Ts(self.t), &mut self.sink);
            self
        }
    }

    /// A session reused after a connection that left every kind of state
    /// behind (a cut line, an open body with MIME parts, pipelined
    /// transactions awaiting their end, a NUL counted, an unfinished BDAT,
    /// an AUTH exchange) gives the next connection exactly what a new
    /// session gives it.
    #[test]
    fn a_reused_session_is_a_new_one() {
        let messy = |h: &mut Harness| {
            h.srv(&format!("220 {}", "x".repeat(3000)));
            h.c("EHLO first.example\r\n").srv("250 ok\r\n");
            h.c("MA\0IL x\r\n").srv("500 no\r\n");
            h.c("AUTH LOGIN\r\n").srv("334 VXNlcm5hbWU6\r\n");
            h.c("dXNlcg==\r\n").srv("235 ok\r\n");
            h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
            h.srv("250 ok\r\n250 ok\r\n354 go\r\n");
            h.c("Content-Type: multipart/mixed; boundary=\"b1\"\r\nSubject: one\r\n\r\n");
            h.c("--b1\r\nContent-Type: text/plain; name=\"f.txt\"\r\n\r\npart\r\n.\r\n");
            h.c("MAIL FROM:<c@x>\r\nRCPT TO:<d@y>\r\nBDAT 100\r\nSubject: half");
            h.c(&"y".repeat(1500));
        };
        let fresh = |h: &mut Harness| {
            h.srv("220 mx\r\n")
                .c("EHLO second.example\r\n")
                .srv("250 ok\r\n");
            one_mail(
                h,
                "e@x",
                "f@y",
                "Subject: two\r\nFrom: <e@x>\r\nX-Mailer: m\0\r\n\r\nbody\r\n",
            );
            h.c("DATA\r\n").c("MAIL FROM:<g@x>\r\n").close();
        };
        let other = {
            let mut c = conn();
            c.id.orig_h = "198.18.0.9".parse().unwrap();
            c.id.orig_p = 41000;
            c
        };
        let mut reused = Harness::new();
        messy(&mut reused);
        reused.close();
        reused.s.reuse(other);
        reused.sink = Sink::default();
        reused.t = 100;
        fresh(&mut reused);
        let mut new = Harness::new();
        new.s = SmtpSession::new(other, new.s.cfg.clone());
        fresh(&mut new);
        let show = |h: &Harness| {
            (
                format!("{:?}", h.sink.records),
                h.sink.anomalies.clone(),
                h.sink.replies.clone(),
                *h.s.conn(),
            )
        };
        assert!(!new.sink.records.is_empty());
        assert!(new.sink.anomalies.contains(&SmtpAnomaly::NulInLine));
        assert_eq!(show(&reused), show(&new));
    }

    fn one_mail(h: &mut Harness, from: &str, to: &str, body: &str) {
        h.c(&format!("MAIL FROM:<{from}>\r\n")).srv("250 OK\r\n");
        h.c(&format!("RCPT TO:<{to}>\r\n")).srv("250 Accepted\r\n");
        h.c("DATA\r\n").srv("354 go ahead\r\n");
        h.c(body).c(".\r\n").srv("250 OK queued\r\n");
    }

    #[test]
    fn one_transaction_with_headers() {
        let mut h = Harness::new();
        h.srv("220 mx ESMTP\r\n").c("EHLO client.example\r\n");
        h.srv("250-mx\r\n250-PIPELINING\r\n250 HELP\r\n");
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "Subject: hi\r\nFrom: A <a@x>\r\nTo: b@y, c@z\r\n\r\nbody\r\n",
        );
        h.c("QUIT\r\n").srv("221 bye\r\n").close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert_eq!(r.trans_depth, 1);
        assert_eq!(r.text(TextField::Helo), Some("client.example"));
        assert_eq!(r.text(TextField::Mailfrom), Some("a@x"));
        assert_eq!(r.list(ListField::Rcptto), ["b@y"]);
        assert_eq!(r.text(TextField::Subject), Some("hi"));
        assert_eq!(r.list(ListField::To), ["b@y", "c@z"]);
        assert_eq!(r.text(TextField::LastReply), Some("250 OK queued"));
        assert_eq!(r.text(TextField::LastError), None);
        assert_eq!(r.path, [conn().id.resp_h, conn().id.orig_h]);
        // The greeting's segment is the first packet of the transaction.
        assert_eq!(r.ts, Ts(101));
        // Multi-line replies are reported once, with the last line's text.
        let codes: Vec<_> = h
            .sink
            .replies
            .iter()
            .map(|(c, t, _)| format!("{c} {t}"))
            .collect();
        assert_eq!(
            codes,
            [
                "220 mx ESMTP",
                "250 HELP",
                "250 OK",
                "250 Accepted",
                "354 go ahead",
                "250 OK queued",
                "221 bye"
            ]
        );
        assert!(h.sink.anomalies.is_empty(), "{:?}", h.sink.anomalies);
    }

    #[test]
    fn several_transactions_count_depth_and_carry_helo() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n").c("HELO c1\r\n").srv("250 ok\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: one\r\n\r\n");
        one_mail(&mut h, "c@x", "d@y", "Subject: two\r\n\r\n");
        h.close();
        let r = &h.sink.records;
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].trans_depth, r[1].trans_depth), (1, 2));
        assert_eq!(r[1].text(TextField::Helo), Some("c1"));
        assert_eq!(r[1].text(TextField::Subject), Some("two"));
        assert_eq!(r[1].list(ListField::Rcptto), ["d@y"]);
        // The second transaction starts with the packet after the reply.
        assert!(r[1].ts > r[0].ts);
    }

    #[test]
    fn data_end_split_across_segments_and_dot_unstuffing() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.srv("250 OK\r\n250 OK\r\n354 go\r\n");
        h.c("Subject: dots\r\n\r\n..leading dot\r\n.")
            .c("\r")
            .c("\n");
        h.srv("250 done\r\n");
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("dots"));
        assert_eq!(
            h.sink.records[0].text(TextField::LastReply),
            Some("250 done")
        );
    }

    #[test]
    fn dot_stuffed_lines_are_data_not_the_end() {
        // A data line "." is sent as "..", and ".x" as "..x": neither ends
        // DATA (only a bare "." does), so nothing after them is taken for a
        // command and the 250 answers the real end.
        let mut h = Harness::new();
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "Subject: s\r\n\r\n..\r\n...\r\n..QUIT\r\nRSET\r\n",
        );
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::Subject), Some("s"));
        assert_eq!(r.text(TextField::LastReply), Some("250 OK queued"));
        assert!(h.sink.anomalies.is_empty(), "{:?}", h.sink.anomalies);
    }

    #[test]
    fn pipelined_commands_are_matched_in_order() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.srv("250 OK\r\n550 no such user\r\n250 OK\r\n250 OK\r\n354 go\r\n");
        h.c("Subject: p\r\n\r\n.\r\n").srv("250 queued\r\n").close();
        let r = &h.sink.records[0];
        assert_eq!(r.list(ListField::Rcptto), ["b@y", "c@y"]);
        assert_eq!(r.text(TextField::LastError), Some("550 no such user"));
        assert_eq!(r.text(TextField::LastReply), Some("250 queued"));
        let rejected = h.sink.replies.iter().find(|(c, _, _)| *c == 550).unwrap();
        assert_eq!(rejected.2, ["b@y", "c@y"]);
    }

    #[test]
    fn new_mail_from_flushes_an_unanswered_transaction() {
        let mut h = Harness::new();
        // Only the client side: no reply ever arrives.
        h.c("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: 1\r\n\r\n.\r\n");
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\nSubject: 2\r\n\r\n.\r\nQUIT\r\n");
        h.close();
        let r = &h.sink.records;
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].trans_depth, r[1].trans_depth), (1, 1));
        assert_eq!(r[0].text(TextField::Subject), Some("1"));
        assert_eq!(r[1].text(TextField::Subject), Some("2"));
        assert_eq!(r[1].text(TextField::LastReply), None);
    }

    #[test]
    fn no_record_without_client_activity() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n")
            .c("EHLO c\r\n")
            .srv("250 ok\r\n")
            .c("NOOP\r\nQUIT\r\n");
        h.srv("250 ok\r\n221 bye\r\n").close();
        assert!(h.sink.records.is_empty());
        assert_eq!(h.sink.replies.len(), 4);
    }

    #[test]
    fn invalid_transactions_as_zeek() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n").c("EHLO c\r\n").srv("250 ok\r\n");
        one_mail(&mut h, "bob@x", "alice@y", "Hello\r\n");
        h.c("RCPT TO:<alice@y>\r\n")
            .srv("503 sender not yet given\r\n");
        h.c("DATA\r\n")
            .srv("503-All RCPT commands were rejected\r\n503 valid RCPT must precede DATA\r\n");
        h.c("Hello again\r\n").srv("500 unrecognized command\r\n");
        h.c(".\r\n").srv("500 unrecognized command\r\n");
        h.c("MAIL FROM:<bob@x>\r\n").srv("250 OK\r\n");
        h.close();
        let r = &h.sink.records;
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].trans_depth, 2);
        assert_eq!(r[1].text(TextField::Mailfrom), None);
        assert_eq!(r[1].list(ListField::Rcptto), ["alice@y"]);
        assert_eq!(
            r[1].text(TextField::LastReply),
            Some("500 unrecognized command")
        );
        assert_eq!(r[2].text(TextField::Mailfrom), Some("bob@x"));
        assert!(r[2].list(ListField::Rcptto).is_empty());
        assert!(
            h.sink
                .anomalies
                .contains(&SmtpAnomaly::MailTransactionInvalid)
        );
        assert!(h.sink.anomalies.contains(&SmtpAnomaly::UnknownCommand));
    }

    #[test]
    fn too_many_invalid_transactions_disable_parsing() {
        let mut cfg = SmtpConfig::default();
        cfg.limits.max_invalid_transactions = 2;
        let mut h = Harness::with(cfg);
        for _ in 0..3 {
            h.c("RCPT TO:<a@b>\r\n");
        }
        h.c("MAIL FROM:<x@y>\r\n");
        assert!(h.s.is_done_parsing());
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(h.sink.records[0].text(TextField::Mailfrom), None);
        assert!(
            h.sink
                .anomalies
                .contains(&SmtpAnomaly::ExcessiveInvalidTransactions)
        );
    }

    #[test]
    fn bdat_chunks_across_segments_and_last() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n").c("EHLO c\r\n").srv("250 CHUNKING\r\n");
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
            .srv("250 OK\r\n250 OK\r\n");
        let part1 = "Subject: chun";
        let part2 = "ked\r\nFrom: a@x\r\n\r\nbody";
        h.c(&format!("BDAT {}\r\n{part1}", part1.len()));
        h.srv("250 13 octets\r\n");
        h.c(&format!("BDAT {} LAST\r\n{}", part2.len(), &part2[..5]))
            .c(&part2[5..]);
        h.srv("250- chunk\r\n250 2.0.0 queued\r\n");
        h.c("QUIT\r\n").srv("221 bye\r\n").close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::Subject), Some("chunked"));
        assert_eq!(r.text(TextField::From), Some("a@x"));
        assert_eq!(r.text(TextField::LastReply), Some("250 2.0.0 queued"));
        assert!(h.sink.anomalies.is_empty(), "{:?}", h.sink.anomalies);
    }

    #[test]
    fn bdat_pipelined_with_next_transaction_and_zero_last() {
        let mut h = Harness::new();
        let body = "Subject: one\r\n\r\n";
        h.c(&format!(
            "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT {} LAST\r\n{body}",
            body.len()
        ));
        h.srv("250 OK\r\n250 OK\r\n250 queued 1\r\n");
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nBDAT 0 LAST\r\nRSET\r\n");
        h.srv("250 OK\r\n250 OK\r\n250 queued 0\r\n250 reset\r\n")
            .close();
        let r = &h.sink.records;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].text(TextField::Subject), Some("one"));
        assert_eq!((r[0].trans_depth, r[1].trans_depth), (1, 2));
        assert_eq!(r[1].text(TextField::LastReply), Some("250 queued 0"));
        assert_eq!(r[1].text(TextField::Subject), None);
    }

    #[test]
    fn bad_bdat_sizes_are_counted_and_parsed_as_commands() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT abc LAST\r\nBDAT 5 JUNK\r\nQUIT\r\n");
        h.srv("250 OK\r\n250 OK\r\n501 bad\r\n501 bad\r\n221 bye\r\n")
            .close();
        let n = h
            .sink
            .anomalies
            .iter()
            .filter(|a| **a == SmtpAnomaly::InvalidBdatCommand)
            .count();
        assert_eq!(n, 2);
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(
            h.sink.records[0].text(TextField::LastError),
            Some("501 bad")
        );
    }

    #[test]
    fn bdat_without_last_then_other_command() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 4\r\nab\r\nRSET\r\n");
        assert!(
            h.sink
                .anomalies
                .contains(&SmtpAnomaly::MissingBdatLastChunk)
        );
        assert!(!h.s.in_body);
    }

    #[test]
    fn refused_huge_bdat_gives_the_connection_back_to_commands() {
        for (cmd, code) in [
            (
                "BDAT 999999999999999 LAST",
                "552 5.3.4 Message size exceeds limit",
            ),
            ("BDAT 18446744073709551615", "501 5.5.4 Syntax error"),
        ] {
            let mut h = Harness::new();
            h.srv("220 mx\r\n").c("EHLO c\r\n").srv("250 mx\r\n");
            h.c("MAIL FROM:<x@evil>\r\n").srv("250 ok\r\n");
            h.c("RCPT TO:<y@z>\r\n").srv("250 ok\r\n");
            h.c(&format!("{cmd}\r\n")).srv(&format!("{code}\r\n"));
            h.c("RSET\r\n").srv("250 ok\r\n");
            h.c("MAIL FROM:<a@x>\r\n").srv("250 ok\r\n");
            h.c("RCPT TO:<b@y>\r\n").srv("250 ok\r\n");
            h.c("DATA\r\n").srv("354 go\r\n");
            h.c("Subject: real\r\n\r\nbody\r\n.\r\n")
                .srv("250 queued\r\n");
            h.c("QUIT\r\n").srv("221 bye\r\n");
            h.close();
            assert!(
                h.sink.anomalies.contains(&SmtpAnomaly::BdatChunkRefused),
                "{cmd}: {:?}",
                h.sink.anomalies
            );
            let real = h
                .sink
                .records
                .iter()
                .find(|r| r.text(TextField::Mailfrom) == Some("a@x"))
                .unwrap_or_else(|| panic!("{cmd}: the message after the refusal is lost"));
            assert_eq!(real.text(TextField::Subject), Some("real"));
            assert_eq!(real.text(TextField::LastReply), Some("250 queued"));
            let refused = &h.sink.records[0];
            assert_eq!(refused.text(TextField::Mailfrom), Some("x@evil"));
        }
    }

    #[test]
    fn bdat_refused_after_its_chunk_changes_nothing() {
        // A server that reads the chunk answers once it has it all: the
        // chunk was data, and a pipelined earlier refusal of another chunk
        // does not end the one arriving.
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 6\r\nSubjec")
            .srv("250 ok\r\n250 ok\r\n");
        h.c("BDAT 12 LAST\r\nt: s\r\n").srv("552 too big\r\n");
        h.c("\r\nxyz\r\n").srv("250 ok\r\n");
        assert!(!h.sink.anomalies.contains(&SmtpAnomaly::BdatChunkRefused));
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("s"));
    }

    #[test]
    fn starttls_stops_parsing_and_sets_tls() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n")
            .c("EHLO c\r\n")
            .srv("250-mx\r\n250 STARTTLS\r\n");
        h.c("STARTTLS\r\n").srv("220 2.0.0 Ready to start TLS\r\n");
        h.c("\x16\x03\x01garbage\r\nMAIL FROM:<evil@x>\r\n")
            .srv("\x16\x03\x03 more\r\n");
        assert!(h.s.is_done_parsing());
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert!(r.tls);
        assert_eq!(r.text(TextField::Mailfrom), None);
        assert_eq!(
            r.text(TextField::LastReply),
            Some("220 2.0.0 Ready to start TLS")
        );
        assert!(h.sink.anomalies.is_empty());
    }

    #[test]
    fn refused_starttls_keeps_parsing() {
        let mut h = Harness::new();
        h.c("STARTTLS\r\n").srv("454 TLS not available\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: plain\r\n\r\n");
        assert!(!h.sink.records[0].tls);
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("plain"));
    }

    #[test]
    fn auth_exchange_lines_are_not_commands() {
        let mut h = Harness::new();
        h.c("AUTH LOGIN\r\n").srv("334 VXNlcm5hbWU6\r\n");
        h.c("TUFJTCBGUk9NOjx4QHk+\r\n").srv("334 UGFzc3dvcmQ6\r\n");
        h.c("cHc=\r\n").srv("235 ok\r\n");
        one_mail(&mut h, "a@x", "b@y", "\r\n");
        assert_eq!(h.sink.records.len(), 1);
        assert!(!h.sink.anomalies.contains(&SmtpAnomaly::UnknownCommand));
    }

    #[test]
    fn gap_in_data_ends_body_and_recovers_at_next_reply() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
            .srv("250 OK\r\n250 OK\r\n354 go\r\n");
        h.c("Subject: before gap\r\nTo: a@");
        h.s.on_gap(Direction::Orig, Ts(500), 1000, &mut h.sink);
        // Client lines after the gap are ignored until the server speaks.
        h.c("tail of a line\r\nSubject: lost\r\n.\r\n");
        h.srv("250 OK\r\n");
        one_mail(&mut h, "c@x", "d@y", "Subject: after\r\n\r\n");
        h.close();
        let r = &h.sink.records;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].text(TextField::Subject), Some("before gap"));
        assert_eq!(r[1].text(TextField::Subject), Some("after"));
    }

    #[test]
    fn gap_recovery_enters_data_on_354() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\n");
        h.s.on_gap(Direction::Orig, Ts(500), 40, &mut h.sink);
        h.srv("354 go\r\n");
        h.c("Subject: recovered\r\n\r\n.\r\n")
            .srv("250 OK\r\n")
            .close();
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(
            h.sink.records[0].text(TextField::Subject),
            Some("recovered")
        );
    }

    #[test]
    fn limits_truncate_and_count() {
        let mut cfg = SmtpConfig::default();
        cfg.limits.max_rcptto = 2;
        cfg.limits.max_pending_commands = 3;
        cfg.limits.max_line_len = 64;
        let mut h = Harness::with(cfg);
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\n");
        h.c(&format!("NOOP {}\r\n", "x".repeat(200)));
        h.close();
        let an = &h.sink.anomalies;
        assert!(an.contains(&SmtpAnomaly::TooManyRcptto));
        assert!(an.contains(&SmtpAnomaly::ExcessivePendingCommands));
        assert!(an.contains(&SmtpAnomaly::LineTooLong));
        assert!(h.s.pending.len() <= 4);
        assert_eq!(h.sink.records[0].list(ListField::Rcptto), ["1@y", "2@y"]);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut h = Harness::new();
        h.srv("\x00\x01\x02 not smtp\r\n")
            .c("\u{ff}\u{fe}\r\n\r\n")
            .srv("99 nope\r\n");
        h.srv("250-a\r\n354 other code\r\n").close();
        let an = &h.sink.anomalies;
        assert!(an.contains(&SmtpAnomaly::BadReplyLine));
        assert!(an.contains(&SmtpAnomaly::ReplyCodeMismatch));
        assert!(an.contains(&SmtpAnomaly::UnknownCommand));
        assert!(h.sink.records.is_empty());
    }

    #[test]
    fn received_headers_build_path_and_originating_address() {
        let cfg = SmtpConfig {
            mail_path_capture: crate::smtp::PathCapture::All,
            ..SmtpConfig::default()
        };
        let mut h = Harness::with(cfg);
        let body = concat!(
            "Received: from relay ([203.0.113.7]) by mx\r\n",
            "Received: from client (client [10.1.1.1]) by relay\r\n",
            "\t(with a folded line)\r\n",
            "X-Originating-IP: [198.51.100.9]\r\n",
            "\r\n",
        );
        one_mail(&mut h, "a@x", "b@y", body);
        let r = &h.sink.records[0];
        assert_eq!(
            r.text(TextField::FirstReceived),
            Some("from client (client [10.1.1.1]) by relay\t(with a folded line)")
        );
        assert_eq!(
            r.text(TextField::SecondReceived),
            Some("from relay ([203.0.113.7]) by mx")
        );
        let path: Vec<String> = r.path.iter().map(ToString::to_string).collect();
        assert_eq!(
            path,
            ["198.18.0.2", "198.18.0.1", "203.0.113.7", "10.1.1.1"]
        );
        assert_eq!(r.originating_addr, Some("10.1.1.1".parse().unwrap()));
        assert_eq!(r.x_originating_ip, Some("198.51.100.9".parse().unwrap()));
    }

    #[test]
    fn attachment_names_reach_the_record() {
        let mut h = Harness::new();
        let body = concat!(
            "Content-Type: multipart/mixed; boundary=b1\r\n\r\n",
            "--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
            "--b1\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n\r\nx\r\n",
            "--b1--\r\n",
        );
        one_mail(&mut h, "a@x", "b@y", body);
        assert_eq!(
            h.sink.records[0].list(ListField::Files),
            ["r\u{e9}sum\u{e9}.pdf"]
        );
    }

    #[test]
    fn pipelining_past_the_end_of_a_message_keeps_each_reply_with_its_message() {
        // RFC 2920 / 3030: the client sends the end of a message and the
        // next transaction's commands before the server answers the end.
        for end in ["DATA\r\n", "BDAT"] {
            let mut h = Harness::new();
            h.srv("220 hi\r\n");
            h.c("EHLO c.example\r\n").srv("250 ok\r\n");
            let body1 = "Subject: first\r\n\r\none\r\n";
            let body2 = "Subject: second\r\n\r\ntwo\r\n";
            let message = |body: &str| {
                if end == "BDAT" {
                    format!("BDAT {} LAST\r\n{body}", body.len())
                } else {
                    format!("{body}.\r\n")
                }
            };
            h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n");
            h.srv("250 ok\r\n250 ok\r\n");
            if end == "DATA\r\n" {
                h.c("DATA\r\n").srv("354 go\r\n");
            }
            // The end of the first message and the second transaction in
            // one segment, before any reply.
            h.c(&format!(
                "{}RSET\r\nMAIL FROM:<c@x>\r\nRCPT TO:<d@y>\r\n",
                message(body1)
            ));
            h.srv("250 2.0.0 queued as FIRST\r\n250 reset\r\n250 ok\r\n250 ok\r\n");
            if end == "DATA\r\n" {
                h.c("DATA\r\n").srv("354 go\r\n");
            }
            h.c(&message(body2));
            h.srv("250 2.0.0 queued as SECOND\r\n");
            h.c("QUIT\r\n").srv("221 bye\r\n").close();
            let got: Vec<_> = h
                .sink
                .records
                .iter()
                .map(|r| {
                    (
                        r.trans_depth,
                        r.text(TextField::Mailfrom).map(str::to_owned),
                        r.text(TextField::Subject).map(str::to_owned),
                        r.text(TextField::LastReply).map(str::to_owned),
                    )
                })
                .collect();
            let rec = |d, from: &str, subj: &str, reply: &str| {
                (
                    d,
                    Some(from.to_owned()),
                    Some(subj.to_owned()),
                    Some(reply.to_owned()),
                )
            };
            assert_eq!(
                got,
                [
                    rec(1, "a@x", "first", "250 2.0.0 queued as FIRST"),
                    rec(2, "c@x", "second", "250 2.0.0 queued as SECOND"),
                ],
                "{end}"
            );
            assert_eq!(h.sink.records[1].list(ListField::Rcptto), ["d@y"], "{end}");
        }
    }

    #[test]
    fn a_rejected_ehlo_keeps_the_accepted_helo() {
        // A refused first name leaves none.
        let mut h = Harness::new();
        h.srv("220 hi\r\n");
        h.c("EHLO refused.example\r\n").srv("550 go away\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: s\r\n\r\nbody\r\n");
        assert_eq!(h.sink.records[0].text(TextField::Helo), None);
        let mut h = Harness::new();
        h.srv("220 hi\r\n");
        h.c("EHLO good.example\r\n").srv("250 ok\r\n");
        h.c("EHLO\r\n").srv("501 Syntax: EHLO hostname\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: s\r\n\r\nbody\r\n");
        // A rejected HELO with an argument, too; an accepted one replaces.
        h.c("HELO bad.example\r\n").srv("550 no\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: t\r\n\r\nbody\r\n");
        h.c("HELO new.example\r\n").srv("250 ok\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: u\r\n\r\nbody\r\n");
        let helos: Vec<_> = h
            .sink
            .records
            .iter()
            .map(|r| r.text(TextField::Helo).map(str::to_owned))
            .collect();
        assert_eq!(
            helos,
            [
                Some("good.example".to_owned()),
                Some("good.example".to_owned()),
                Some("new.example".to_owned())
            ]
        );
    }

    #[test]
    fn a_refused_data_does_not_cost_the_next_message_its_headers() {
        for code in ["503 5.5.1 RCPT first", "554 5.5.1 no valid recipients"] {
            let mut h = Harness::new();
            h.srv("220 hi\r\n");
            h.c("MAIL FROM:<a@x>\r\n").srv("250 OK\r\n");
            h.c("RCPT TO:<b@y>\r\n").srv("250 OK\r\n");
            h.c("DATA\r\n").srv(&format!("{code}\r\n"));
            h.c("DATA\r\n").srv("354 go ahead\r\n");
            h.c("From: <a@x>\r\nTo: <b@y>\r\nSubject: delivered\r\n\r\nbody\r\n")
                .c(".\r\n")
                .srv("250 OK queued\r\n");
            assert_eq!(h.sink.records.len(), 1, "{code}");
            let r = &h.sink.records[0];
            assert_eq!(r.text(TextField::Subject), Some("delivered"), "{code}");
            assert_eq!(r.text(TextField::From), Some("<a@x>"), "{code}");
            assert_eq!(r.list(ListField::To), ["<b@y>"], "{code}");
        }
    }

    fn count(h: &Harness, a: SmtpAnomaly) -> usize {
        h.sink.anomalies.iter().filter(|&&x| x == a).count()
    }

    #[test]
    fn an_endless_greeting_does_not_shift_the_replies() {
        // Issue 10 point 4: a greeting past the line limit without CRLF,
        // in several segments; the client's EHLO ends it, so the EHLO's
        // reply is not dropped with it, AUTH ends at its 235 and MAIL FROM
        // is a command again.
        let mut h = Harness::new();
        let greeting = format!("220 {}", "x".repeat(5 * 1024));
        for part in greeting.as_bytes().chunks(1460) {
            h.send(Direction::Resp, part);
        }
        h.c("EHLO client.example\r\n").srv("250 mx\r\n");
        h.c("AUTH LOGIN\r\n").srv("334 VXNlcm5hbWU6\r\n");
        h.c("dXNlcg==\r\n").srv("334 UGFzc3dvcmQ6\r\n");
        h.c("cGFzcw==\r\n")
            .srv("235 2.7.0 Authentication successful\r\n");
        one_mail(&mut h, "a@x", "b@y", "Subject: after auth\r\n\r\nbody\r\n");
        h.c("QUIT\r\n").srv("221 bye\r\n").close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::Mailfrom), Some("a@x"));
        assert_eq!(r.list(ListField::Rcptto), ["b@y"]);
        assert_eq!(r.text(TextField::Subject), Some("after auth"));
        assert_eq!(r.text(TextField::Helo), Some("client.example"));
        assert_eq!(r.text(TextField::LastReply), Some("250 OK queued"));
        assert_eq!(count(&h, SmtpAnomaly::MailTransactionInvalid), 0);
        assert_eq!(count(&h, SmtpAnomaly::UnterminatedReplyLine), 1);
        assert_eq!(count(&h, SmtpAnomaly::LineTooLong), 1);
        let codes: Vec<u16> = h.sink.replies.iter().map(|r| r.0).collect();
        assert_eq!(codes, [220, 250, 334, 334, 235, 250, 250, 354, 250, 221]);
    }

    #[test]
    fn a_long_reply_line_that_ends_is_not_counted_as_unterminated() {
        let mut h = Harness::new();
        h.srv(&format!("220 {}\r\n", "x".repeat(5000)));
        h.c("EHLO c\r\n").srv("250 ok\r\n");
        assert_eq!(count(&h, SmtpAnomaly::LineTooLong), 1);
        assert_eq!(count(&h, SmtpAnomaly::UnterminatedReplyLine), 0);
        assert_eq!(h.sink.replies.len(), 2);
    }

    /// A DATA transaction whose message ends with `end` (the bytes after the
    /// body text), then a second MAIL FROM on the same connection.
    fn smuggled(end: &str) -> Harness {
        let mut h = Harness::new();
        h.srv("220 mx\r\n").c("EHLO c\r\n").srv("250 ok\r\n");
        h.c("MAIL FROM:<a@x>\r\n").srv("250 ok\r\n");
        h.c("RCPT TO:<b@y>\r\n").srv("250 ok\r\n");
        h.c("DATA\r\n").srv("354 go\r\n");
        h.c(&format!(
            "Subject: first\r\n\r\nbody{end}MAIL FROM:<admin@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n\
             Subject: smuggled\r\n\r\nevil\r\n.\r\n"
        ));
        h.srv("250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued 2\r\n");
        h.close();
        h
    }

    #[test]
    fn bare_lf_ends_data_as_in_zeek_and_is_counted() {
        for end in ["\n.\n", "\r\n.\n", "\n.\r\n", "\r\n.\r\r\n"] {
            let h = smuggled(end);
            let subjects: Vec<_> = h
                .sink
                .records
                .iter()
                .map(|r| {
                    (
                        r.text(TextField::Mailfrom).map(str::to_owned),
                        r.text(TextField::Subject).map(str::to_owned),
                    )
                })
                .collect();
            let rec = |f: &str, s: &str| (Some(f.to_owned()), Some(s.to_owned()));
            assert_eq!(
                subjects,
                [rec("a@x", "first"), rec("admin@x", "smuggled")],
                "{end:?}"
            );
            assert_eq!(count(&h, SmtpAnomaly::NonCrlfEndOfData), 1, "{end:?}");
        }
        // The proper end is not counted; a `.` inside a line ends nothing.
        let h = smuggled("\r\n.\r\n");
        assert_eq!(h.sink.records.len(), 2);
        assert_eq!(count(&h, SmtpAnomaly::NonCrlfEndOfData), 0);
        assert_eq!(count(&h, SmtpAnomaly::BareCrEndOfData), 0);
        let h = smuggled("\r.\r");
        assert_eq!(h.sink.records.len(), 1, "a bare CR ends no line");
        assert_eq!(count(&h, SmtpAnomaly::NonCrlfEndOfData), 0);
        // At a line start, a `.` and a bare CR are named (Zeek ends there).
        let h = smuggled("\r\n.\r");
        assert_eq!(h.sink.records.len(), 1, "a bare CR ends no line");
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("first"));
        assert_eq!(count(&h, SmtpAnomaly::BareCrEndOfData), 1);
        assert_eq!(count(&h, SmtpAnomaly::NonCrlfEndOfData), 0);
    }

    #[test]
    fn bare_lf_end_of_data_is_seen_by_the_body_fast_path_too() {
        // The line before the `.` is stepped over without framing: its line
        // end still counts. Whole segments and byte by byte agree.
        for bytewise in [false, true] {
            let mut h = Harness::new();
            h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
            h.srv("250 ok\r\n250 ok\r\n354 go\r\n");
            let body = "Subject: s\r\n\r\nline one\r\nline two\n.\r\n";
            if bytewise {
                for b in body.as_bytes() {
                    h.send(Direction::Orig, std::slice::from_ref(b));
                }
            } else {
                h.c(body);
            }
            h.srv("250 queued\r\n").close();
            assert_eq!(h.sink.records.len(), 1);
            assert_eq!(count(&h, SmtpAnomaly::NonCrlfEndOfData), 1, "{bytewise}");
        }
    }

    #[test]
    fn nul_bytes_are_kept_and_counted_once() {
        let mut h = Harness::new();
        h.srv("220 mx\r\n").c("EHLO c\r\n").srv("250 ok\r\n");
        // A command word with a NUL is no command (Zeek drops the first NUL
        // of a direction; the sensor keeps the bytes).
        h.c("MA\0IL FROM:<evil@x>\r\n").srv("500 unrecognized\r\n");
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "Subject: hi\0there\r\nFr\0om: <hidden@x>\r\nFrom: <shown@x>\r\n\r\nbody\r\n",
        );
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::Mailfrom), Some("a@x"));
        assert_eq!(r.text(TextField::Subject), Some("hi\0there"));
        assert_eq!(r.text(TextField::From), Some("<shown@x>"));
        assert_eq!(count(&h, SmtpAnomaly::NulInLine), 1);
        assert_eq!(count(&h, SmtpAnomaly::UnknownCommand), 1);
        assert_eq!(count(&h, SmtpAnomaly::DuplicateHeader), 0);
    }

    #[test]
    fn duplicate_single_headers_keep_the_last_and_are_counted() {
        let mut h = Harness::new();
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "From: <ceo@bank.example>\r\nSubject: one\r\nFrom: <evil@x>\r\n\
             Subject: two\r\nTo: <b@y>\r\nTo: <c@y>\r\n\r\nbody\r\n",
        );
        h.close();
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::From), Some("<evil@x>"));
        assert_eq!(r.text(TextField::Subject), Some("two"));
        // To and Cc headers are joined (SEMANTICS), not duplicates.
        assert_eq!(r.list(ListField::To), ["<b@y>", "<c@y>"]);
        assert_eq!(count(&h, SmtpAnomaly::DuplicateHeader), 2);
    }

    #[test]
    fn a_space_before_the_colon_still_names_the_header() {
        let mut h = Harness::new();
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "Subject : spaced\r\nFrom\t: <a@x>\r\nX-Other : x\r\n\r\nbody\r\n",
        );
        h.close();
        let r = &h.sink.records[0];
        assert_eq!(r.text(TextField::Subject), Some("spaced"));
        assert_eq!(r.text(TextField::From), Some("<a@x>"));
        // Only headers the sensor reads are looked at.
        assert_eq!(count(&h, SmtpAnomaly::HeaderSpaceBeforeColon), 2);
    }

    #[test]
    fn encoded_words_split_across_folds_are_logged_as_sent() {
        let mut h = Harness::new();
        one_mail(
            &mut h,
            "a@x",
            "b@y",
            "Subject: =?UTF-8?B?SGVs?=\r\n =?UTF-8?B?bG8=?=\r\n\t=?UTF-8?Q?sp\r\n lit?=\r\n\r\nx\r\n",
        );
        h.close();
        assert_eq!(
            h.sink.records[0].text(TextField::Subject),
            Some("=?UTF-8?B?SGVs?= =?UTF-8?B?bG8=?=\t=?UTF-8?Q?sp lit?=")
        );
        assert!(h.sink.anomalies.is_empty(), "{:?}", h.sink.anomalies);
    }

    #[test]
    fn data_after_bdat_chunks_ends_the_chunked_body() {
        // RFC 3030: DATA and BDAT must not be mixed in one transaction.
        for (reply, subject) in [
            ("503 5.5.1 no DATA after BDAT", "chunked"),
            ("354 go", "chunked"),
        ] {
            let mut h = Harness::new();
            h.c("MAIL FROM:<a@x>\r\n").srv("250 ok\r\n");
            h.c("RCPT TO:<b@y>\r\n").srv("250 ok\r\n");
            let chunk = "Subject: chunked\r\n\r\npart\r\n";
            h.c(&format!("BDAT {}\r\n{chunk}", chunk.len()))
                .srv("250 ok\r\n");
            h.c("DATA\r\n").srv(&format!("{reply}\r\n"));
            if reply.starts_with("354") {
                h.c("Subject: data\r\n\r\nother\r\n.\r\n")
                    .srv("250 queued\r\n");
            }
            h.close();
            assert_eq!(h.sink.records.len(), 1, "{reply}");
            let r = &h.sink.records[0];
            assert_eq!(r.text(TextField::Subject), Some(subject), "{reply}");
            assert_eq!(count(&h, SmtpAnomaly::MissingBdatLastChunk), 1, "{reply}");
            assert_eq!(count(&h, SmtpAnomaly::MailTransactionInvalid), 0, "{reply}");
            assert_eq!(count(&h, SmtpAnomaly::DataMissingRcptTo), 0, "{reply}");
        }
        // BDAT after a completed DATA message is a new transaction without
        // MAIL FROM: invalid, as in Zeek.
        let mut h = Harness::new();
        one_mail(&mut h, "a@x", "b@y", "Subject: data\r\n\r\nx\r\n");
        h.c("BDAT 3 LAST\r\nabc").srv("503 5.5.1 MAIL first\r\n");
        h.close();
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("data"));
        assert_eq!(count(&h, SmtpAnomaly::DataMissingRcptTo), 1);
        assert_eq!(
            SmtpAnomaly::DataMissingRcptTo.addl(),
            Some("data missing rcpt to")
        );
    }

    #[test]
    fn a_flow_that_is_not_smtp_stops_being_parsed() {
        let mut h = Harness::new();
        h.c("GET / HTTP/1.1\r\nHost: mx.example\r\n\r\n");
        h.srv("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n");
        assert!(!h.s.is_done_parsing());
        h.srv("Content-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(h.s.is_done_parsing());
        // Nothing after it is read: no invalid transactions pile up.
        for _ in 0..40 {
            h.c("RCPT TO:<a@b>\r\nDATA\r\n");
        }
        h.close();
        assert!(h.sink.records.is_empty());
        assert_eq!(count(&h, SmtpAnomaly::AnalyzerViolation), 1);
        assert_eq!(count(&h, SmtpAnomaly::MailTransactionInvalid), 0);
        assert_eq!(count(&h, SmtpAnomaly::DataMissingRcptTo), 0);
        assert_eq!(count(&h, SmtpAnomaly::BadReplyLine), 5);
    }

    #[test]
    fn a_reply_code_confirms_smtp_and_later_junk_is_tolerated() {
        // A server that greets properly stays parsed whatever follows; one
        // junk line before the greeting (a capture starting mid-line) too.
        let mut h = Harness::new();
        h.srv("tail of a line\r\n220 mx\r\n");
        for _ in 0..10 {
            h.srv("junk\r\n");
        }
        one_mail(&mut h, "a@x", "b@y", "Subject: kept\r\n\r\nx\r\n");
        h.close();
        assert!(!h.sink.anomalies.contains(&SmtpAnomaly::AnalyzerViolation));
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("kept"));
    }

    #[test]
    fn close_flushes_open_body_and_transaction() {
        let mut h = Harness::new();
        h.c("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: cut\r\n");
        h.close();
        h.close();
        assert_eq!(h.sink.records.len(), 1);
        assert_eq!(h.sink.records[0].text(TextField::Subject), Some("cut"));
    }
}

#[cfg(test)]
mod robustness {
    //! Hostile input: random SMTP-ish tokens cut at random places must never
    //! panic and must leave every buffer within its limit.

    use super::*;
    use crate::smtp::record::MessageRecord;

    /// A deterministic xorshift64 generator: the same inputs every run.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    struct Null(usize);

    impl SmtpSink for Null {
        fn reply(&mut self, _: &ConnInfo, r: &Reply<'_>) {
            assert!(r.text.len() <= 512);
        }
        fn record(&mut self, _: &ConnInfo, r: MessageRecord) {
            assert!(r.list(ListField::Rcptto).len() <= 1000 && r.path.len() <= 1000);
            self.0 += 1;
        }
        fn anomaly(&mut self, _: &ConnInfo, _: SmtpAnomaly) {}
    }

    const TOKENS: &[&str] = &[
        "MAIL FROM:<a@b>",
        "RCPT TO:<c@d>",
        "DATA",
        "BDAT 5",
        "BDAT 3 LAST",
        "BDAT 0 LAST",
        "BDAT x",
        ".",
        "..x",
        "RSET",
        "QUIT",
        "STARTTLS",
        "AUTH LOGIN",
        "EHLO h",
        "250 OK",
        "250-x",
        "354 go",
        "334 x",
        "220 hi",
        "503 no",
        "Subject: s",
        "Received: from a ([1.2.3.4])",
        "Content-Type: multipart/mixed; boundary=q",
        "--q",
        "--q--",
        "Content-Type: message/rfc822",
        "",
        " folded",
        "\u{0}\u{ff}",
        "To: a@b, c@d",
    ];

    #[test]
    fn random_transcripts_do_not_panic() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let conn = super::tests::conn();
        let cfg = Arc::new(SmtpConfig::default());
        let mut records = 0;
        for round in 0..300 {
            let mut s = SmtpSession::new(conn, cfg.clone());
            let mut sink = Null(0);
            let mut stream = Vec::new();
            for _ in 0..200 {
                let t = TOKENS[(next() % TOKENS.len() as u64) as usize];
                stream.extend_from_slice(t.as_bytes());
                stream.extend_from_slice(if next().is_multiple_of(7) {
                    b"\n"
                } else {
                    b"\r\n"
                });
            }
            let mut pos = 0;
            let mut ts = 0;
            while pos < stream.len() {
                let len = (1 + next() % 40) as usize;
                let end = (pos + len).min(stream.len());
                let dir = if next().is_multiple_of(2) {
                    Direction::Orig
                } else {
                    Direction::Resp
                };
                ts += 1;
                if next().is_multiple_of(97) {
                    s.on_gap(dir, Ts(ts), 10, &mut sink);
                }
                s.on_data(dir, Ts(ts), &stream[pos..end], &mut sink);
                assert!(
                    s.pending.len() <= cfg.limits.max_pending_commands + 1,
                    "round {round}"
                );
                pos = end;
            }
            s.on_close(Ts(ts + 1), &mut sink);
            records += sink.0;
        }
        assert!(records > 0, "some transcripts complete transactions");
    }

    /// Arbitrary bytes in arbitrary chunks, both directions, with gaps and
    /// tiny limits: biased towards the bytes that move the state machine
    /// (line ends, dots, digits, command letters) so every state is
    /// reached, but any byte may come.
    #[test]
    fn arbitrary_byte_chunks_do_not_panic() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let conn = super::tests::conn();
        let tiny = SmtpConfig {
            limits: super::super::limits::SmtpLimits::tiny(),
            ..SmtpConfig::default()
        };
        const ALPHABET: &[u8] = b"\r\n\r\n.. 0123456789-:<>@=;\"BDATLSMRCPOFHEQUIT";
        for (c, cfg) in [SmtpConfig::default(), tiny].into_iter().enumerate() {
            let cfg = Arc::new(cfg);
            for round in 0..200 {
                let mut s = SmtpSession::new(conn, cfg.clone());
                let mut sink = Null(0);
                let mut ts = 0;
                for _ in 0..60 {
                    let len = (next() % 64) as usize;
                    let chunk: Vec<u8> = (0..len)
                        .map(|_| match next() % 4 {
                            0 => next() as u8,
                            _ => ALPHABET[(next() % ALPHABET.len() as u64) as usize],
                        })
                        .collect();
                    let dir = if next().is_multiple_of(2) {
                        Direction::Orig
                    } else {
                        Direction::Resp
                    };
                    ts += next() % 3;
                    match next() % 50 {
                        0 => s.on_gap(dir, Ts(ts), next() % 100_000, &mut sink),
                        1 => s.on_gap(dir, Ts(ts), u64::MAX, &mut sink),
                        _ => {}
                    }
                    s.on_data(dir, Ts(ts), &chunk, &mut sink);
                    assert!(
                        s.pending.len() <= cfg.limits.max_pending_commands + 1,
                        "cfg {c} round {round}"
                    );
                    assert!(s.reply_text.len() <= cfg.limits.max_reply_len);
                }
                s.on_close(Ts(ts + 1), &mut sink);
                // Closing twice (end of input after a FIN) is harmless.
                s.on_close(Ts(ts + 2), &mut sink);
            }
        }
    }

    /// The body fast path changes nothing: a random mail conversation gives
    /// the same records and anomalies whether its client segments arrive
    /// whole (complete body lines are stepped over) or one byte at a time
    /// (every line is framed and handed to the MIME tracker).
    #[test]
    fn body_fast_path_equals_line_by_line() {
        const BODY: &[&str] = &[
            "Subject: s",
            "To: a@b, c@d",
            "Content-Type: multipart/mixed; boundary=q",
            "Content-Type: multipart/alternative; boundary=\"r\"",
            "Content-Type: message/rfc822",
            "Content-Disposition: attachment; filename=f.txt",
            "--q",
            "--q--",
            "--r",
            "--r--",
            ".--q",
            "..",
            ".x",
            "",
            " folded",
            "-not a boundary",
            "plain body text",
            "0123456789012345678901234567890123456789",
            "\r",
        ];
        const ENDS: &[&str] = &["\r\n", "\n", "\r\r\n"];
        let mut next = xorshift(0x5bd1_e995_2f4a_7c15);
        let conn = super::tests::conn();
        let short = SmtpConfig {
            limits: super::super::limits::SmtpLimits {
                max_line_len: 24,
                ..super::super::limits::SmtpLimits::default()
            },
            ..SmtpConfig::default()
        };
        for (c, cfg) in [SmtpConfig::default(), short].into_iter().enumerate() {
            let cfg = Arc::new(cfg);
            for round in 0..200 {
                // The conversation as segments: (client?, bytes).
                let mut segs: Vec<(bool, Vec<u8>)> = vec![(false, b"220 hi\r\n".to_vec())];
                for _ in 0..1 + next() % 3 {
                    segs.push((true, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n".to_vec()));
                    segs.push((false, b"250 ok\r\n250 ok\r\n".to_vec()));
                    let bdat = next().is_multiple_of(3);
                    let mut body = Vec::new();
                    for _ in 0..next() % 40 {
                        let line = BODY[(next() % BODY.len() as u64) as usize];
                        let line = if bdat {
                            line.trim_start_matches('.')
                        } else {
                            line
                        };
                        body.extend_from_slice(line.as_bytes());
                        body.extend_from_slice(ENDS[(next() % 3) as usize].as_bytes());
                    }
                    if bdat {
                        let mut cmd = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
                        cmd.extend_from_slice(&body);
                        segs.push((true, cmd));
                    } else {
                        segs.push((true, b"DATA\r\n".to_vec()));
                        segs.push((false, b"354 go\r\n".to_vec()));
                        body.extend_from_slice(b".\r\n");
                        segs.push((true, body));
                    }
                    segs.push((false, b"250 queued\r\n".to_vec()));
                }
                let run = |bytewise: bool| {
                    let mut s = SmtpSession::new(conn, cfg.clone());
                    let mut sink = super::tests::Sink::default();
                    for (i, (client, data)) in segs.iter().enumerate() {
                        let dir = if *client {
                            Direction::Orig
                        } else {
                            Direction::Resp
                        };
                        let ts = Ts(i as u64);
                        if bytewise && *client {
                            for b in data.chunks(1) {
                                s.on_data(dir, ts, b, &mut sink);
                            }
                        } else {
                            s.on_data(dir, ts, data, &mut sink);
                        }
                    }
                    s.on_close(Ts(segs.len() as u64), &mut sink);
                    (sink.records, sink.anomalies)
                };
                let (whole, bytewise) = (run(false), run(true));
                assert!(!whole.0.is_empty(), "cfg {c} round {round}");
                assert_eq!(whole, bytewise, "cfg {c} round {round}");
            }
        }
    }
}
