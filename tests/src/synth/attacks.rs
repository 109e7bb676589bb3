//! Attack captures for the soak (`cargo xtask soak`, `tests/tests/soak.rs`):
//! each attack interleaved with ordinary mail sessions, and the same
//! ordinary sessions alone (the clean capture their records are compared
//! with).
//!
//! A capture is a run of batches of 20 s of network time. Each batch holds
//! [`ORDINARY_PER_BATCH`] ordinary sessions (`scenarios::load_conversation`,
//! clients in 198.18.1.0/24), 500 ms apart over its first 10 s, and the
//! attack's share of that batch, spread over the same 10 s. Attack traffic
//! never comes from 198.18.1.0/24, so the ordinary sessions' records are
//! the smtp.log lines with that originator. Deterministic: the same attack
//! and scale always give the same bytes.

use std::net::SocketAddr;
use std::path::Path;

use smtp_sensor::net::Ts;

use super::frame::{TcpFrame, tcp_flags};
use super::pcap::{PcapWriteError, PcapWriter};
use super::rng::Rng;
use super::scenarios;
use super::session::{Side, TcpSession, interleave};
use super::smtp::SmtpConversation;

type Frames = Vec<(Ts, Vec<u8>)>;

/// First batch's start, in seconds.
pub const T0_S: u64 = 1_700_000_000;
const BATCH_US: u64 = 20_000_000;
/// Where in a batch sessions start: its first 10 s.
const SPREAD_US: u64 = 10_000_000;
pub const ORDINARY_PER_BATCH: usize = 20;
/// The ordinary sessions' clients: `id.orig_h` of their records.
pub const ORDINARY_NET: &str = "198.18.1.";

/// The lines of a JSON smtp.log that are the ordinary sessions' records,
/// sorted (what a run of the ordinary sessions alone must also write).
pub fn ordinary_lines(smtp_log: &str) -> Vec<String> {
    let needle = format!("\"id.orig_h\":\"{ORDINARY_NET}");
    let mut lines: Vec<String> = smtp_log
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

const SERVER: ([u8; 4], u16) = ([198, 19, 0, 25], 25);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A few thousand packets per attack: seconds, for the test suite.
    Small,
    /// About a million packets or a hundred megabytes per attack.
    Full,
}

impl Scale {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "small" => Some(Scale::Small),
            "full" => Some(Scale::Full),
            _ => None,
        }
    }

    fn pick<T>(self, small: T, full: T) -> T {
        match self {
            Scale::Small => small,
            Scale::Full => full,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Spoofed SYNs from distinct clients: half-open flows.
    SynFlood,
    /// Connections that greet, EHLO, then stay silent to the end.
    Idle,
    /// DATA that never ends (no `.`, no close).
    EndlessData,
    /// 10 MB lines without a line end (in DATA, or as a command).
    LongLines,
    /// 100 000 RCPT TO in one transaction (pipelined).
    RcptFlood,
    /// 1000 distinct recipients, then copies of the last one, in RCPT TO
    /// and in folded To headers of 16 KiB (issue 11 point 1).
    DupAddress,
    /// One-connection hosts, IPv4 and one IPv6 /64, filling the spam host
    /// table (run with a smaller `max_hosts_per_period`, see [`Attack::sets`]).
    HostFlood,
    /// Forged RST (sequence number off the window), far ACK and SYN with a
    /// new ISN injected into every ordinary session before its DATA.
    Inject,
    /// Random TCP segments (flags, numbers, payload bytes) to ports 25 and
    /// 587.
    Random,
    /// MIME bombs: multiparts nested far beyond `max_mime_depth`, a
    /// message of 100 000 parts (each an attachment), a part that never
    /// ends, broken base64.
    MimeBomb,
    /// Spoofed SYNs (and a few one-segment connections) from IPv6 clients
    /// of one /64 whose addresses differ only in the upper half of the
    /// interface id and share the source port: keys built to collide in a
    /// fixed hash (issue 11 point 2; the tables use a keyed one).
    CollidingKeys,
}

impl Attack {
    pub const ALL: [Attack; 11] = [
        Attack::SynFlood,
        Attack::Idle,
        Attack::EndlessData,
        Attack::LongLines,
        Attack::RcptFlood,
        Attack::DupAddress,
        Attack::HostFlood,
        Attack::Inject,
        Attack::Random,
        Attack::MimeBomb,
        Attack::CollidingKeys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::SynFlood => "synflood",
            Attack::Idle => "idle",
            Attack::EndlessData => "endless-data",
            Attack::LongLines => "long-lines",
            Attack::RcptFlood => "rcpt-flood",
            Attack::DupAddress => "dup-address",
            Attack::HostFlood => "host-flood",
            Attack::Inject => "inject",
            Attack::Random => "random",
            Attack::MimeBomb => "mime-bomb",
            Attack::CollidingKeys => "colliding-keys",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Attack::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Sensor `--set`s the attack is run with: the host flood fills a
    /// host table sized to its scale (the default holds 4 Mi hosts).
    pub fn sets(self, scale: Scale) -> Vec<String> {
        match self {
            Attack::HostFlood => vec![format!("max_hosts_per_period={}", scale.pick(100, 10_000))],
            _ => Vec::new(),
        }
    }

    /// Anomalies a run of the attack's capture must count (at any scale).
    pub fn anomalies(self) -> &'static [&'static str] {
        match self {
            Attack::MimeBomb => &["mime_depth_exceeded", "smtp_too_many_files"],
            Attack::Inject => &[
                "RST_outside_window",
                "active_connection_reuse",
                "TCP_ack_above_window",
            ],
            _ => &[],
        }
    }

    /// Batches of the capture.
    pub fn batches(self, scale: Scale) -> usize {
        match self {
            Attack::SynFlood
            | Attack::Idle
            | Attack::HostFlood
            | Attack::Random
            | Attack::CollidingKeys => scale.pick(3, 100),
            Attack::Inject => scale.pick(3, 200),
            Attack::EndlessData | Attack::LongLines | Attack::DupAddress | Attack::MimeBomb => {
                scale.pick(2, 10)
            }
            Attack::RcptFlood => scale.pick(2, 5),
        }
    }

    /// The attack's sessions of batch `b`, starting at `t` µs; `ordinary`
    /// are the batch's ordinary sessions (the victims of `Inject`).
    fn batch(self, scale: Scale, b: usize, t: u64, ordinary: &[SmtpConversation]) -> Vec<Frames> {
        let mut rng =
            Rng((0x5eed ^ (b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self as u64) | 1);
        match self {
            Attack::SynFlood => {
                let n = scale.pick(1_000, 20_000);
                vec![
                    (0..n)
                        .map(|i| {
                            let k = b * n + i;
                            let client = v4(
                                [10, (k >> 16) as u8, (k >> 8) as u8, k as u8],
                                1024 + (k % 50_000) as u16,
                            );
                            let mut f = TcpFrame::new(client, server());
                            f.flags = tcp_flags::SYN;
                            f.seq = rng.next_u64() as u32;
                            (Ts(t + spread(i, n)), f.build())
                        })
                        .collect(),
                ]
            }
            Attack::Idle => {
                let n = scale.pick(100, 2_000);
                (0..n)
                    .map(|i| {
                        let k = b * n + i;
                        let client = v4(
                            [10, 1 + (k >> 16) as u8, (k >> 8) as u8, k as u8],
                            2000 + (k % 50_000) as u16,
                        );
                        let mut s = TcpSession::new(client, server(), Ts(t + spread(i, n)));
                        s.step_us = 200;
                        s.handshake();
                        s.server("220 mx.example.net ESMTP\r\n");
                        s.client("EHLO idle.example.com\r\n");
                        s.server("250 mx.example.net\r\n");
                        s.frames()
                    })
                    .collect()
            }
            Attack::EndlessData => {
                let mut s = attacker_session(b, t, "endless");
                s.client("DATA\r\n").server("354 go ahead\r\n");
                let line = "Subject: more and more and more of the same endless message body\r\n";
                let size = scale.pick(300_000, 20_000_000);
                let body = line.repeat(size / line.len());
                // In 64 KiB writes, as a client streams it; never a `.`.
                for chunk in body.as_bytes().chunks(64 * 1024) {
                    s.client(chunk);
                }
                vec![s.frames()]
            }
            Attack::LongLines => {
                let mut s = attacker_session(b, t, "longline");
                let size = scale.pick(1_000_000, 10_000_000);
                let line = vec![b'A'; size];
                if b.is_multiple_of(2) {
                    s.client("DATA\r\n").server("354 go ahead\r\n");
                    s.client("Subject: x\r\n\r\n");
                    s.client(&line);
                    s.client("\r\n.\r\n").server("250 ok\r\n");
                } else {
                    s.client(&line);
                    s.client("\r\n").server("500 line too long\r\n");
                }
                s.client("QUIT\r\n").server("221 bye\r\n");
                s.close(Side::Client);
                vec![s.frames()]
            }
            Attack::RcptFlood => {
                let mut s = attacker_session(b, t, "rcptflood");
                let n: usize = scale.pick(2_000, 100_000);
                for group in 0..n.div_ceil(1000) {
                    let cmds: String = (group * 1000..((group + 1) * 1000).min(n))
                        .map(|i| format!("RCPT TO:<r{i}@example.org>\r\n"))
                        .collect();
                    let replies = "250 2.1.5 Ok\r\n".repeat(cmds.matches('\n').count());
                    s.client(cmds).server(replies);
                }
                s.client("DATA\r\n").server("354 go ahead\r\n");
                s.client("Subject: many\r\n\r\nhi\r\n.\r\n")
                    .server("250 ok\r\n");
                s.client("QUIT\r\n").server("221 bye\r\n");
                s.close(Side::Client);
                vec![s.frames()]
            }
            Attack::DupAddress => {
                let mut s = attacker_session(b, t, "dup");
                let (copies, folded) = scale.pick((1_000, 20), (580, 250));
                let mut cmds: String = (0..1000)
                    .map(|i| format!("RCPT TO:<d{i}@example.org>\r\n"))
                    .collect();
                cmds.push_str(&"RCPT TO:<d999@example.org>\r\n".repeat(copies));
                let replies = "250 2.1.5 Ok\r\n".repeat(1000 + copies);
                s.client(cmds).server(replies);
                s.client("DATA\r\n").server("354 go ahead\r\n");
                let distinct: Vec<String> =
                    (0..1000).map(|i| format!("t{i}@example.org")).collect();
                let mut msg = format!("Subject: dup\r\nTo: {}\r\n", distinct.join(", "));
                // Folded To headers of about 16 KiB, all the last address.
                let fold = " t999@example.org,\r\n".repeat(16 * 1024 / 20);
                for _ in 0..folded {
                    msg.push_str("To: t999@example.org,\r\n");
                    msg.push_str(&fold);
                    msg.push_str(" t999@example.org\r\n");
                }
                msg.push_str("\r\nbody\r\n.\r\n");
                s.client(msg).server("250 ok\r\n");
                s.client("QUIT\r\n").server("221 bye\r\n");
                s.close(Side::Client);
                vec![s.frames()]
            }
            Attack::HostFlood => {
                let n = scale.pick(200, 2_000);
                let server6: SocketAddr =
                    SocketAddr::from(([0x2001, 0xdb8, 0x25, 0, 0, 0, 0, 0x25], 25));
                (0..n)
                    .map(|i| {
                        let k = (b * n + i) as u32;
                        let (client, server) = if i.is_multiple_of(2) {
                            let [_, x, y, z] = k.to_be_bytes();
                            (v4([100, 64 + (x & 0x3f), y, z], 3000), server())
                        } else {
                            // One /64: every host a different interface id.
                            let a = SocketAddr::from((
                                [0x2001, 0xdb8, 0xf1, 0, 0, 0, (k >> 16) as u16, k as u16],
                                3000,
                            ));
                            (a, server6)
                        };
                        let mut s = TcpSession::new(client, server, Ts(t + spread(i, n)));
                        s.step_us = 200;
                        s.handshake();
                        s.server("220 mx.example.net ESMTP\r\n");
                        s.client("QUIT\r\n").server("221 bye\r\n");
                        s.close(Side::Client);
                        s.frames()
                    })
                    .collect()
            }
            Attack::Inject => ordinary
                .iter()
                .map(|c| {
                    // After the handshake and greeting, before MAIL FROM.
                    let at = c.start.micros() + 4 * c.step_us + c.step_us / 2;
                    let victim = c.session();
                    let segs = victim.segments();
                    let isn = |k: usize| segs.get(k).map_or(0, |s| s.seq);
                    let (c_isn, s_isn) = (isn(0), isn(1));
                    let mut out = Vec::new();
                    for (k, (flags, seq, ack)) in [
                        (tcp_flags::RST, c_isn.wrapping_add(0x4000_0000), 0),
                        (
                            tcp_flags::ACK,
                            c_isn.wrapping_add(40),
                            s_isn.wrapping_add(500 << 20),
                        ),
                        (tcp_flags::SYN, c_isn.wrapping_add(0x1234_5678), 0),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        let mut f = TcpFrame::new(c.client, c.server);
                        (f.flags, f.seq, f.ack) = (flags, seq, ack);
                        out.push((Ts(at + k as u64), f.build()));
                    }
                    out
                })
                .collect(),
            Attack::Random => {
                let n = scale.pick(1_000, 20_000);
                let mut payload = vec![0u8; 1400];
                vec![
                    (0..n)
                        .map(|i| {
                            let r = rng.next_u64();
                            let client = v4(
                                [172, 16, (r >> 8) as u8, r as u8],
                                1024 + (r >> 16) as u16 % 60_000,
                            );
                            let mut server = server();
                            if r >> 40 & 1 == 1 {
                                server.set_port(587);
                            }
                            let len = (rng.next_u64() % 1400) as usize;
                            for byte in payload.iter_mut().take(len) {
                                *byte = rng.next_u64() as u8;
                            }
                            let (src, dst) = if r >> 41 & 1 == 1 {
                                (server, client)
                            } else {
                                (client, server)
                            };
                            let mut f = TcpFrame::new(src, dst);
                            f.flags = (rng.next_u64() & 0x3f) as u8;
                            f.seq = rng.next_u64() as u32;
                            f.ack = rng.next_u64() as u32;
                            f.payload = &payload[..len];
                            (Ts(t + spread(i, n)), f.build())
                        })
                        .collect(),
                ]
            }
            Attack::MimeBomb => mime_bombs(scale, b, t),
            Attack::CollidingKeys => {
                let n = scale.pick(1_000, 20_000);
                let server6 = SocketAddr::from(([0x2001, 0xdb8, 0x25, 0, 0, 0, 0, 0x25], 25));
                (0..n)
                    .map(|i| {
                        let k = (b * n + i) as u64;
                        // Interface ids k << 32 | a constant: the low bits
                        // the same for every client.
                        let iid = (k << 32) | 0x5eed_c011;
                        let words = [
                            0x2001,
                            0xdb8,
                            0xc011,
                            0,
                            (iid >> 48) as u16,
                            (iid >> 32) as u16,
                            (iid >> 16) as u16,
                            iid as u16,
                        ];
                        let client = SocketAddr::from((words, 4444));
                        let at = t + spread(i, n);
                        if i % 10 == 9 {
                            // A connection that speaks once: a full flow.
                            let mut s = TcpSession::new(client, server6, Ts(at));
                            s.step_us = 200;
                            s.handshake();
                            s.client("EHLO collide.example.com\r\n");
                            return s.frames();
                        }
                        let mut f = TcpFrame::new(client, server6);
                        f.flags = tcp_flags::SYN;
                        f.seq = rng.next_u64() as u32;
                        vec![(Ts(at), f.build())]
                    })
                    .collect()
            }
        }
    }
}

/// The MIME bombs of batch `b`, one attacker connection each: nested
/// multiparts, many parts, a part that never ends, broken base64.
fn mime_bombs(scale: Scale, b: usize, t: u64) -> Vec<Frames> {
    let (depth, parts, endless, b64) = scale.pick(
        (100, 2_000, 200_000, 200_000),
        (1_000, 100_000, 5_000_000, 5_000_000),
    );
    let mut nested = String::from("Subject: nested\r\n");
    for d in 0..depth {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"n{d}\"\r\n\r\n--n{d}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    for d in (0..depth).rev() {
        nested.push_str(&format!("--n{d}--\r\n"));
    }
    let mut many = String::from(
        "Subject: many parts\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n",
    );
    for i in 0..parts {
        many.push_str(&format!(
            "--p\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"f{i}.txt\"\r\n\r\nx\r\n"
        ));
    }
    many.push_str("--p--\r\n");
    let line = "the part that never ends goes on and on without its boundary\r\n";
    let never = format!(
        "Subject: endless part\r\nContent-Type: multipart/mixed; boundary=\"e\"\r\n\r\n--e\r\nContent-Type: text/plain\r\n\r\n{}",
        line.repeat(endless / line.len())
    );
    let junk = "!!!!not*base64~~~~%%%%@@@@####$$$$^^^^&&&&((((]]]]{{{{||||<<<<>>>>??\r\n";
    let broken = format!(
        "Subject: broken base64\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\n\r\nQUJD=\r\n{}--b--\r\n",
        junk.repeat(b64 / junk.len())
    );
    [nested, many, never, broken]
        .into_iter()
        .enumerate()
        .map(|(k, msg)| {
            let client = v4([192, 0, 2, 1 + (b % 250) as u8], 5000 + (b * 4 + k) as u16);
            let mut s = attacker_session_from(client, t + 1_000 + k as u64 * 1_000, "mime");
            s.client("DATA\r\n").server("354 go ahead\r\n");
            // In 64 KiB writes, as a client streams it.
            for chunk in msg.as_bytes().chunks(64 * 1024) {
                s.client(chunk);
            }
            s.client("\r\n.\r\n").server("250 ok\r\n");
            s.client("QUIT\r\n").server("221 bye\r\n");
            s.close(Side::Client);
            s.frames()
        })
        .collect()
}

/// Ordinary session `j` of batch `b`.
pub fn ordinary(b: usize, j: usize) -> SmtpConversation {
    let i = b * ORDINARY_PER_BATCH + j;
    let mut c = scenarios::load_conversation(i, 7, T0_S);
    c.start = Ts(batch_start(b) + spread(j, ORDINARY_PER_BATCH));
    c
}

/// What [`write`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub frames: u64,
    pub bytes: u64,
    /// Ordinary sessions in it.
    pub ordinary: usize,
}

/// Writes `attack`'s capture at `scale` to `path`; with `clean`, only its
/// ordinary sessions (the same ones, at the same times). Streams batch by
/// batch: memory stays at one batch.
pub fn write(
    path: &Path,
    attack: Attack,
    scale: Scale,
    clean: bool,
) -> Result<Written, PcapWriteError> {
    let mut w = PcapWriter::create(path)?;
    let mut out = Written::default();
    for b in 0..attack.batches(scale) {
        let ords: Vec<SmtpConversation> = (0..ORDINARY_PER_BATCH).map(|j| ordinary(b, j)).collect();
        let mut sessions: Vec<Frames> = ords.iter().map(SmtpConversation::frames).collect();
        if !clean {
            sessions.extend(attack.batch(scale, b, batch_start(b), &ords));
        }
        out.ordinary += ords.len();
        for (ts, f) in interleave(sessions) {
            out.bytes += f.len() as u64;
            w.write(ts, &f)?;
        }
    }
    out.frames = w.finish()?;
    Ok(out)
}

fn batch_start(b: usize) -> u64 {
    T0_S * 1_000_000 + b as u64 * BATCH_US
}

/// Offset of item `i` of `n` spread over the batch's first 10 s.
fn spread(i: usize, n: usize) -> u64 {
    i as u64 * SPREAD_US / n.max(1) as u64
}

fn server() -> SocketAddr {
    SocketAddr::from(SERVER)
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

/// An attacker's connection up to an accepted RCPT TO, at batch `b`.
fn attacker_session(b: usize, t: u64, name: &str) -> TcpSession {
    let client = v4([192, 0, 2, 1 + (b % 250) as u8], 4000 + b as u16);
    attacker_session_from(client, t + 1_000, name)
}

/// An attacker's connection from `client` at `t` µs up to an accepted
/// RCPT TO.
fn attacker_session_from(client: SocketAddr, t: u64, name: &str) -> TcpSession {
    let mut s = TcpSession::new(client, server(), Ts(t));
    s.step_us = 100;
    s.handshake();
    s.server("220 mx.example.net ESMTP\r\n");
    s.client(format!("EHLO {name}.example.com\r\n"));
    s.server("250-mx.example.net\r\n250 PIPELINING\r\n");
    s.client("MAIL FROM:<a@example.com>\r\n")
        .server("250 ok\r\n");
    s.client("RCPT TO:<b@example.net>\r\n").server("250 ok\r\n");
    s
}
