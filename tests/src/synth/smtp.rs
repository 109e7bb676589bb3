//! SMTP conversations on top of [`TcpSession`]: greeting, HELO/EHLO, mail
//! transactions (MAIL, RCPT with accepted or rejected recipients, DATA or
//! BDAT with a generated message), PIPELINING, STARTTLS, QUIT — with the
//! reply codes and texts a test wants.
//!
//! ```
//! use sensor_tests::synth::smtp::{Message, SmtpConversation};
//! let frames = SmtpConversation::builder()
//!     .client("198.18.0.10:40000".parse().unwrap())
//!     .server("198.19.0.25:25".parse().unwrap())
//!     .mail("a@example.com")
//!     .rcpt("b@example.net")
//!     .reject_rcpt_with(550, "5.7.1 blocked, see https://www.spamhaus.org/query/ip/198.18.0.10")
//!     .rcpt("c@example.net")
//!     .message(Message::simple("a@example.com", "c@example.net", "hello"))
//!     .build()
//!     .frames();
//! assert!(frames.len() > 10);
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;

use smtp_sensor::net::Ts;

use super::session::{Effect, Side, TcpSession};

/// A mail message: headers, a text body and attachments (which make it
/// multipart/mixed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `(file name, content)`.
    pub attachments: Vec<(String, String)>,
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    /// From, To, Subject, Date and Message-ID, a short body.
    pub fn simple(from: &str, to: &str, subject: &str) -> Self {
        Message::new()
            .header("From", from)
            .header("To", to)
            .header("Subject", subject)
            .header("Date", "Mon, 23 Nov 2026 09:00:00 +0000")
            .header(
                "Message-ID",
                &format!("<{}.{}@example.com>", subject.len(), from.len()),
            )
            .body("Hello,\r\n\r\nthis is a test message.\r\n")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn attachment(mut self, name: &str, content: &str) -> Self {
        self.attachments.push((name.to_owned(), content.to_owned()));
        self
    }

    /// The message as sent (CRLF line ends, not dot-stuffed).
    pub fn render(&self) -> String {
        let mut m = String::new();
        for (n, v) in &self.headers {
            let _ = write!(m, "{n}: {v}\r\n");
        }
        if self.attachments.is_empty() {
            m.push_str("\r\n");
            m.push_str(&self.body);
            return m;
        }
        let b = "=_synth_boundary_42";
        let _ = write!(
            m,
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
        );
        let _ = write!(
            m,
            "This is a multi-part message in MIME format.\r\n\r\n--{b}\r\n"
        );
        let _ = write!(
            m,
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n{}\r\n",
            self.body
        );
        for (name, content) in &self.attachments {
            let _ = write!(
                m,
                "--{b}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
                 Content-Disposition: attachment;\r\n\tfilename=\"{name}\"\r\n\r\n{content}\r\n"
            );
        }
        let _ = write!(m, "--{b}--\r\n");
        m
    }

    /// The DATA payload: dot-stuffed, ending in `.` on a line of its own.
    pub fn data_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let text = self.render();
        for line in text.split_inclusive("\r\n") {
            if line.starts_with('.') {
                out.push(b'.');
            }
            out.extend_from_slice(line.as_bytes());
        }
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }
}

/// A server reply: code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplySpec {
    pub code: u16,
    pub text: String,
}

impl ReplySpec {
    pub fn new(code: u16, text: &str) -> Self {
        ReplySpec {
            code,
            text: text.to_owned(),
        }
    }
    fn line(&self) -> String {
        format!("{} {}\r\n", self.code, self.text)
    }
    fn ok(&self) -> bool {
        self.code < 400
    }
}

/// One mail transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub mail_from: String,
    pub mail_reply: ReplySpec,
    /// Recipients and the reply each gets.
    pub rcpts: Vec<(String, ReplySpec)>,
    pub message: Option<Message>,
    pub data_reply: ReplySpec,
    /// Send the message with BDAT in chunks of this size instead of DATA.
    pub bdat_chunk: Option<usize>,
    /// With BDAT: no chunk carries LAST; an empty `BDAT 0 LAST` ends it.
    pub bdat_zero_last: bool,
}

/// How the connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// QUIT, 221, FIN from both sides.
    Quit,
    /// QUIT, 221, then an RST from the client.
    QuitReset,
    /// No QUIT, no close: the capture just stops.
    Open,
}

/// A whole SMTP connection, ready to render.
#[derive(Clone, Debug)]
pub struct SmtpConversation {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub start: Ts,
    pub greeting: ReplySpec,
    pub helo: String,
    pub ehlo: bool,
    pub pipelining: bool,
    /// STARTTLS with this reply (220 starts TLS).
    pub starttls: Option<ReplySpec>,
    pub transactions: Vec<Transaction>,
    pub ending: Ending,
    pub vlans: Vec<u16>,
    pub mss: usize,
    pub step_us: u64,
    pub effects: Vec<Effect>,
}

/// Builder for [`SmtpConversation`]; `mail`/`rcpt`/`message` add to the
/// transaction being built.
#[derive(Clone, Debug)]
pub struct ConversationBuilder {
    c: SmtpConversation,
}

impl SmtpConversation {
    pub fn builder() -> ConversationBuilder {
        ConversationBuilder {
            c: SmtpConversation {
                client: SocketAddr::from(([198, 18, 0, 1], 40000)),
                server: SocketAddr::from(([198, 19, 0, 25], 25)),
                start: Ts::from_secs(1_700_000_000),
                greeting: ReplySpec::new(220, "mx.example.net ESMTP ready"),
                helo: "client.example.com".to_owned(),
                ehlo: true,
                pipelining: false,
                starttls: None,
                transactions: Vec::new(),
                ending: Ending::Quit,
                vlans: Vec::new(),
                mss: 1460,
                step_us: 1000,
                effects: Vec::new(),
            },
        }
    }

    /// The TCP session carrying this conversation.
    pub fn session(&self) -> TcpSession {
        let mut s = TcpSession::new(self.client, self.server, self.start)
            .with_vlans(&self.vlans)
            .with_mss(self.mss);
        s.step_us = self.step_us;
        for e in &self.effects {
            s.effect(*e);
        }
        s.handshake();
        s.server(self.greeting.line());
        if !self.greeting.ok() {
            s.client("QUIT\r\n").server("221 bye\r\n");
            s.close(Side::Server);
            return s;
        }
        let verb = if self.ehlo { "EHLO" } else { "HELO" };
        s.client(format!("{verb} {}\r\n", self.helo));
        if self.ehlo {
            s.server("250-mx.example.net\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
        } else {
            s.server("250 mx.example.net\r\n");
        }
        if let Some(r) = &self.starttls {
            s.client("STARTTLS\r\n").server(r.line());
            if r.code == 220 {
                // Opaque TLS records both ways; nothing after this is SMTP.
                s.client(
                    b"\x16\x03\x01\x00\x30client hello, encrypted from here on..........."
                        .as_slice(),
                );
                s.server(
                    b"\x16\x03\x03\x00\x30server hello, encrypted from here on..........."
                        .as_slice(),
                );
                s.close(Side::Client);
                return s;
            }
        }
        for t in &self.transactions {
            self.render_transaction(&mut s, t);
        }
        match self.ending {
            Ending::Quit => {
                s.client("QUIT\r\n").server("221 2.0.0 bye\r\n");
                s.close(Side::Server);
            }
            Ending::QuitReset => {
                s.client("QUIT\r\n").server("221 2.0.0 bye\r\n");
                s.reset(Side::Client);
            }
            Ending::Open => {}
        }
        s
    }

    fn render_transaction(&self, s: &mut TcpSession, t: &Transaction) {
        let mail = format!("MAIL FROM:<{}>\r\n", t.mail_from);
        let accepted = t.mail_reply.ok() && t.rcpts.iter().any(|(_, r)| r.ok());
        if self.pipelining && t.bdat_chunk.is_none() {
            let mut cmds = mail;
            let mut replies = t.mail_reply.line();
            for (r, reply) in &t.rcpts {
                let _ = write!(cmds, "RCPT TO:<{r}>\r\n");
                replies.push_str(&if t.mail_reply.ok() {
                    reply.line()
                } else {
                    "503 5.5.1 need MAIL first\r\n".into()
                });
            }
            if t.message.is_some() {
                cmds.push_str("DATA\r\n");
                replies.push_str(if accepted {
                    "354 go ahead\r\n"
                } else {
                    "554 5.5.1 no valid recipients\r\n"
                });
            }
            s.client(cmds).server(replies);
            if accepted && let Some(m) = &t.message {
                s.client(m.data_payload()).server(t.data_reply.line());
            }
            return;
        }
        s.client(mail).server(t.mail_reply.line());
        if !t.mail_reply.ok() {
            return;
        }
        for (r, reply) in &t.rcpts {
            s.client(format!("RCPT TO:<{r}>\r\n")).server(reply.line());
        }
        let Some(m) = &t.message else { return };
        if !accepted {
            s.client("RSET\r\n").server("250 2.0.0 reset\r\n");
            return;
        }
        match t.bdat_chunk {
            None => {
                s.client("DATA\r\n").server("354 go ahead\r\n");
                s.client(m.data_payload()).server(t.data_reply.line());
            }
            Some(size) => {
                let body = m.render().into_bytes();
                let chunks: Vec<&[u8]> = body.chunks(size.max(1)).collect();
                // With `bdat_zero_last` no data chunk is the last one.
                let n = chunks.len() + usize::from(t.bdat_zero_last);
                for (i, c) in chunks.into_iter().enumerate() {
                    let mut cmd = if i + 1 == n {
                        format!("BDAT {} LAST\r\n", c.len()).into_bytes()
                    } else {
                        format!("BDAT {}\r\n", c.len()).into_bytes()
                    };
                    cmd.extend_from_slice(c);
                    let reply = if i + 1 == n {
                        t.data_reply.line()
                    } else {
                        format!("250 2.0.0 {} octets received\r\n", c.len())
                    };
                    s.client(cmd).server(reply);
                }
                if t.bdat_zero_last {
                    s.client("BDAT 0 LAST\r\n").server(t.data_reply.line());
                }
            }
        }
    }

    /// The conversation as timestamped Ethernet frames.
    pub fn frames(&self) -> Vec<(Ts, Vec<u8>)> {
        self.session().frames()
    }
}

impl ConversationBuilder {
    pub fn client(mut self, a: SocketAddr) -> Self {
        self.c.client = a;
        self
    }
    pub fn server(mut self, a: SocketAddr) -> Self {
        self.c.server = a;
        self
    }
    pub fn start(mut self, ts: Ts) -> Self {
        self.c.start = ts;
        self
    }
    /// The server's greeting (a code >= 400 ends the session after QUIT).
    pub fn greeting(mut self, code: u16, text: &str) -> Self {
        self.c.greeting = ReplySpec::new(code, text);
        self
    }
    pub fn ehlo(mut self, name: &str) -> Self {
        self.c.helo = name.to_owned();
        self.c.ehlo = true;
        self
    }
    pub fn helo(mut self, name: &str) -> Self {
        self.c.helo = name.to_owned();
        self.c.ehlo = false;
        self
    }
    pub fn pipelining(mut self) -> Self {
        self.c.pipelining = true;
        self
    }
    pub fn starttls(mut self) -> Self {
        self.c.starttls = Some(ReplySpec::new(220, "2.0.0 Ready to start TLS"));
        self
    }
    pub fn starttls_reply(mut self, code: u16, text: &str) -> Self {
        self.c.starttls = Some(ReplySpec::new(code, text));
        self
    }
    pub fn vlans(mut self, v: &[u16]) -> Self {
        self.c.vlans = v.to_vec();
        self
    }
    pub fn mss(mut self, mss: usize) -> Self {
        self.c.mss = mss;
        self
    }
    /// Microseconds between segments.
    pub fn step_us(mut self, us: u64) -> Self {
        self.c.step_us = us;
        self
    }
    pub fn effect(mut self, e: Effect) -> Self {
        self.c.effects.push(e);
        self
    }
    pub fn ending(mut self, e: Ending) -> Self {
        self.c.ending = e;
        self
    }

    fn current(&mut self) -> &mut Transaction {
        if self.c.transactions.is_empty() {
            self.c.transactions.push(Transaction {
                mail_from: "sender@example.com".into(),
                mail_reply: ReplySpec::new(250, "2.1.0 Ok"),
                rcpts: Vec::new(),
                message: None,
                data_reply: ReplySpec::new(250, "2.0.0 Ok: queued"),
                bdat_chunk: None,
                bdat_zero_last: false,
            });
        }
        let last = self.c.transactions.len() - 1;
        &mut self.c.transactions[last]
    }

    /// Starts a new transaction with MAIL FROM `from`.
    pub fn mail(mut self, from: &str) -> Self {
        self.c.transactions.push(Transaction {
            mail_from: from.to_owned(),
            mail_reply: ReplySpec::new(250, "2.1.0 Ok"),
            rcpts: Vec::new(),
            message: None,
            data_reply: ReplySpec::new(250, "2.0.0 Ok: queued"),
            bdat_chunk: None,
            bdat_zero_last: false,
        });
        self
    }
    /// The reply to the current MAIL FROM (a code >= 400 rejects it).
    pub fn reject_mail_with(mut self, code: u16, text: &str) -> Self {
        self.current().mail_reply = ReplySpec::new(code, text);
        self
    }
    /// Adds an accepted recipient.
    pub fn rcpt(mut self, to: &str) -> Self {
        self.current()
            .rcpts
            .push((to.to_owned(), ReplySpec::new(250, "2.1.5 Ok")));
        self
    }
    /// The reply to the last RCPT TO.
    pub fn reject_rcpt_with(mut self, code: u16, text: &str) -> Self {
        if let Some(last) = self.current().rcpts.last_mut() {
            last.1 = ReplySpec::new(code, text);
        }
        self
    }
    /// The message of the current transaction (sent with DATA).
    pub fn message(mut self, m: Message) -> Self {
        self.current().message = Some(m);
        self
    }
    /// Send the current message with BDAT in chunks of `size` bytes.
    pub fn bdat(mut self, size: usize) -> Self {
        self.current().bdat_chunk = Some(size);
        self
    }
    /// Send the current message with BDAT in chunks of `size` bytes, none
    /// marked LAST, then end it with an empty `BDAT 0 LAST`.
    pub fn bdat_then_zero_last(mut self, size: usize) -> Self {
        let t = self.current();
        t.bdat_chunk = Some(size);
        t.bdat_zero_last = true;
        self
    }
    /// The reply to the end of the current message.
    pub fn data_reply(mut self, code: u16, text: &str) -> Self {
        self.current().data_reply = ReplySpec::new(code, text);
        self
    }
    pub fn build(self) -> SmtpConversation {
        self.c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_bytes(c: &SmtpConversation) -> String {
        let s = c.session();
        let segs = s.segments();
        let mut out = Vec::new();
        for x in segs.iter().filter(|x| x.from == Side::Client) {
            out.extend_from_slice(&x.payload);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let m = Message::new()
            .header("Subject", "x")
            .body(".hidden\r\nline\r\n");
        let p = String::from_utf8(m.data_payload()).unwrap();
        assert_eq!(p, "Subject: x\r\n\r\n..hidden\r\nline\r\n.\r\n");
    }

    #[test]
    fn rejected_recipients_skip_data() {
        let c = SmtpConversation::builder()
            .mail("a@example.com")
            .rcpt("b@example.net")
            .reject_rcpt_with(550, "no")
            .message(Message::simple("a@example.com", "b@example.net", "s"))
            .build();
        let text = client_bytes(&c);
        assert!(
            text.contains("RCPT TO:<b@example.net>\r\nRSET\r\n"),
            "{text}"
        );
        assert!(!text.contains("DATA"));
    }

    #[test]
    fn bdat_chunks_carry_exact_sizes() {
        let m = Message::simple("a@example.com", "b@example.net", "chunked");
        let len = m.render().len();
        let c = SmtpConversation::builder()
            .mail("a@example.com")
            .rcpt("b@example.net")
            .message(m)
            .bdat(50)
            .build();
        let text = client_bytes(&c);
        let last = len % 50;
        assert!(text.contains("BDAT 50\r\n"));
        assert!(text.contains(&format!(
            "BDAT {} LAST\r\n",
            if last == 0 { 50 } else { last }
        )));
    }

    #[test]
    fn bdat_zero_last_ends_with_an_empty_chunk() {
        let m = Message::simple("a@example.com", "b@example.net", "chunked");
        let c = SmtpConversation::builder()
            .mail("a@example.com")
            .rcpt("b@example.net")
            .message(m)
            .bdat_then_zero_last(50)
            .build();
        let text = client_bytes(&c);
        assert_eq!(text.matches(" LAST\r\n").count(), 1);
        assert!(text.contains("BDAT 50\r\n"));
        assert!(text.ends_with("BDAT 0 LAST\r\nQUIT\r\n"), "{text}");
    }

    #[test]
    fn pipelined_commands_travel_together() {
        let c = SmtpConversation::builder()
            .pipelining()
            .mail("a@example.com")
            .rcpt("b@example.net")
            .message(Message::simple("a@example.com", "b@example.net", "p"))
            .build();
        let segs = c.session().segments();
        assert!(segs.iter().any(|s| {
            s.payload
                .starts_with(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        }));
    }
}
