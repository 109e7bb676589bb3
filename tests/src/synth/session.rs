//! TCP session synthesis: a client and a server exchanging bytes, turned
//! into timestamped Ethernet frames with correct sequence and ACK numbers.
//!
//! A session is first a list of segments (handshake, data split at the MSS
//! with the peer's ACKs, FIN or RST); then capture effects are applied to
//! that list — reordering, retransmission, a lost segment (a gap), keeping
//! only one side — and finally each segment becomes a frame (IPv4 or IPv6,
//! with VLAN tags if asked). Addresses must come from 198.18.0.0/15 or
//! 2001:db8::/32.

use std::net::SocketAddr;

use smtp_sensor::net::Ts;

use super::frame::{Envelope, TcpFrame, tcp_flags};

/// Which end of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One TCP segment before it is framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub ts: Ts,
    pub from: Side,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// A capture effect applied to the segment list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Swap the `n`th data segment of `side` with the next one of that side
    /// (their payloads arrive in the wrong order).
    Reorder { side: Side, n: usize },
    /// Capture the `n`th data segment of `side` a second time, after the
    /// segment that follows it.
    Retransmit { side: Side, n: usize },
    /// Lose the `n`th data segment of `side` (a gap in the stream).
    Drop { side: Side, n: usize },
    /// Keep only the segments sent by `side`.
    OnlySide(Side),
    /// The capture starts late: the first `n` segments of the connection
    /// (handshake included) were never seen (mid-stream pickup).
    StartLate(usize),
}

/// Builds one TCP connection's segments.
#[derive(Clone, Debug)]
pub struct TcpSession {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub vlans: Vec<u16>,
    /// Largest payload per segment.
    pub mss: usize,
    /// Time between consecutive segments.
    pub step_us: u64,
    now: u64,
    c_next: u32,
    s_next: u32,
    segments: Vec<Segment>,
    effects: Vec<Effect>,
}

impl TcpSession {
    /// A connection starting at `start`. The initial sequence numbers are
    /// derived from the ports so different sessions differ.
    pub fn new(client: SocketAddr, server: SocketAddr, start: Ts) -> Self {
        let c_isn = 0x1000_0000u32.wrapping_add(u32::from(client.port()).wrapping_mul(7919));
        let s_isn = 0xf000_0000u32.wrapping_add(u32::from(client.port()).wrapping_mul(104_729));
        TcpSession {
            client,
            server,
            vlans: Vec::new(),
            mss: 1460,
            step_us: 1000,
            now: start.micros(),
            c_next: c_isn,
            s_next: s_isn,
            segments: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// Sets the sequence numbers the two sides start from (before the
    /// handshake), e.g. close to 2^32 to test wraparound.
    pub fn with_isns(mut self, client: u32, server: u32) -> Self {
        self.c_next = client;
        self.s_next = server;
        self
    }

    pub fn with_vlans(mut self, vlans: &[u16]) -> Self {
        self.vlans = vlans.to_vec();
        self
    }

    pub fn with_mss(mut self, mss: usize) -> Self {
        self.mss = mss.max(1);
        self
    }

    /// Adds a capture effect (applied when frames are built).
    pub fn effect(&mut self, e: Effect) -> &mut Self {
        self.effects.push(e);
        self
    }

    /// Network time of the next segment.
    pub fn now(&self) -> Ts {
        Ts(self.now)
    }

    /// Lets `us` microseconds pass.
    pub fn wait(&mut self, us: u64) -> &mut Self {
        self.now += us;
        self
    }

    fn push(&mut self, from: Side, flags: u8, payload: &[u8]) {
        let (seq, ack) = match from {
            Side::Client => (self.c_next, self.s_next),
            Side::Server => (self.s_next, self.c_next),
        };
        self.segments.push(Segment {
            ts: Ts(self.now),
            from,
            seq,
            ack,
            flags,
            payload: payload.to_vec(),
        });
        self.now += self.step_us;
        let used = payload.len() as u32 + u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
        match from {
            Side::Client => self.c_next = self.c_next.wrapping_add(used),
            Side::Server => self.s_next = self.s_next.wrapping_add(used),
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> &mut Self {
        self.push(Side::Client, tcp_flags::SYN, &[]);
        self.push(Side::Server, tcp_flags::SYN | tcp_flags::ACK, &[]);
        self.push(Side::Client, tcp_flags::ACK, &[]);
        self
    }

    /// `from` sends `data` in MSS-sized segments; the peer acknowledges it.
    pub fn send(&mut self, from: Side, data: &[u8]) -> &mut Self {
        for chunk in data.chunks(self.mss) {
            self.push(from, tcp_flags::ACK | tcp_flags::PSH, chunk);
        }
        let peer = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        if !data.is_empty() {
            self.push(peer, tcp_flags::ACK, &[]);
        }
        self
    }

    pub fn client(&mut self, data: impl AsRef<[u8]>) -> &mut Self {
        self.send(Side::Client, data.as_ref())
    }

    pub fn server(&mut self, data: impl AsRef<[u8]>) -> &mut Self {
        self.send(Side::Server, data.as_ref())
    }

    /// Orderly close: FIN from `first`, FIN from the other side, last ACK.
    pub fn close(&mut self, first: Side) -> &mut Self {
        let other = if first == Side::Client {
            Side::Server
        } else {
            Side::Client
        };
        self.push(first, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(other, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(first, tcp_flags::ACK, &[]);
        self
    }

    /// Abortive close by `from`.
    pub fn reset(&mut self, from: Side) -> &mut Self {
        self.push(from, tcp_flags::RST | tcp_flags::ACK, &[]);
        self
    }

    /// The segments with every effect applied, in capture order.
    pub fn segments(&self) -> Vec<Segment> {
        let mut segs = self.segments.clone();
        for e in &self.effects {
            apply(&mut segs, *e);
        }
        segs
    }

    /// The session as timestamped Ethernet frames.
    pub fn frames(&self) -> Vec<(Ts, Vec<u8>)> {
        let envelope = Envelope {
            vlans: &self.vlans,
            ..Envelope::default()
        };
        self.segments()
            .into_iter()
            .map(|s| {
                let (src, dst) = match s.from {
                    Side::Client => (self.client, self.server),
                    Side::Server => (self.server, self.client),
                };
                let f = TcpFrame {
                    seq: s.seq,
                    ack: s.ack,
                    flags: s.flags,
                    payload: &s.payload,
                    envelope,
                    ..TcpFrame::new(src, dst)
                };
                (s.ts, f.build())
            })
            .collect()
    }
}

/// Index in `segs` of the `n`th segment of `side` that carries data.
fn nth_data(segs: &[Segment], side: Side, n: usize) -> Option<usize> {
    segs.iter()
        .enumerate()
        .filter(|(_, s)| s.from == side && !s.payload.is_empty())
        .nth(n)
        .map(|(i, _)| i)
}

fn apply(segs: &mut Vec<Segment>, e: Effect) {
    match e {
        Effect::Reorder { side, n } => {
            if let (Some(a), Some(b)) = (nth_data(segs, side, n), nth_data(segs, side, n + 1)) {
                // Swap what was sent, keep the capture times in order.
                let (ta, tb) = (segs[a].ts, segs[b].ts);
                segs.swap(a, b);
                segs[a].ts = ta;
                segs[b].ts = tb;
            }
        }
        Effect::Retransmit { side, n } => {
            if let Some(a) = nth_data(segs, side, n) {
                let mut copy = segs[a].clone();
                let at = (a + 2).min(segs.len());
                copy.ts = segs.get(at - 1).map_or(copy.ts, |s| s.ts);
                segs.insert(at, copy);
            }
        }
        Effect::Drop { side, n } => {
            if let Some(a) = nth_data(segs, side, n) {
                segs.remove(a);
            }
        }
        Effect::OnlySide(side) => segs.retain(|s| s.from == side),
        Effect::StartLate(n) => {
            segs.drain(..n.min(segs.len()));
        }
    }
}

/// Merges several sessions' frames into one capture, ordered by time
/// (stable: frames with equal times keep their session order).
pub fn interleave(sessions: impl IntoIterator<Item = Vec<(Ts, Vec<u8>)>>) -> Vec<(Ts, Vec<u8>)> {
    let mut all: Vec<(Ts, Vec<u8>)> = sessions.into_iter().flatten().collect();
    all.sort_by_key(|(ts, _)| *ts);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> TcpSession {
        TcpSession::new(
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:25".parse().unwrap(),
            Ts::from_secs(100),
        )
    }

    #[test]
    fn sequence_numbers_follow_the_bytes() {
        let mut s = session().with_mss(4);
        s.handshake().client(b"abcdefghij").server(b"ok");
        let segs = s.segments();
        let syn = &segs[0];
        let data: Vec<_> = segs
            .iter()
            .filter(|s| s.from == Side::Client && !s.payload.is_empty())
            .collect();
        assert_eq!(data.len(), 3);
        assert_eq!(data[0].seq, syn.seq.wrapping_add(1));
        assert_eq!(data[1].seq, data[0].seq.wrapping_add(4));
        assert_eq!(data[2].payload, b"ij");
        // The server's ACK covers all ten bytes.
        let ack = segs
            .iter()
            .find(|s| s.from == Side::Server && s.payload.is_empty() && s.flags == tcp_flags::ACK)
            .unwrap();
        assert_eq!(ack.ack, data[2].seq.wrapping_add(2));
        assert!(segs.windows(2).all(|w| w[0].ts < w[1].ts));
    }

    #[test]
    fn effects_change_the_segment_list() {
        let mut s = session().with_mss(2);
        s.handshake().client(b"aabbcc");
        let plain = s.segments();
        s.effect(Effect::Reorder {
            side: Side::Client,
            n: 0,
        });
        let r = s.segments();
        assert_eq!(r[3].payload, b"bb");
        assert_eq!(r[4].payload, b"aa");
        assert_eq!(r[3].ts, plain[3].ts);
        let mut s = session().with_mss(2);
        s.handshake().client(b"aabbcc").effect(Effect::Drop {
            side: Side::Client,
            n: 1,
        });
        assert_eq!(s.segments().len(), plain.len() - 1);
        let mut s = session().with_mss(2);
        s.handshake().client(b"aabbcc").effect(Effect::Retransmit {
            side: Side::Client,
            n: 0,
        });
        let r = s.segments();
        assert_eq!(r.iter().filter(|x| x.payload == b"aa").count(), 2);
        let mut s = session();
        s.handshake()
            .client(b"x")
            .server(b"y")
            .effect(Effect::OnlySide(Side::Client));
        assert!(s.segments().iter().all(|x| x.from == Side::Client));
    }

    #[test]
    fn frames_are_ipv6_and_tagged_when_asked() {
        let mut s = TcpSession::new(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2001:db8::2]:25".parse().unwrap(),
            Ts(1),
        )
        .with_vlans(&[10, 20]);
        s.handshake();
        let (_, f) = &s.frames()[0];
        // 14 + 2 tags + 40 + 20
        assert_eq!(f.len(), 14 + 8 + 40 + 20);
    }
}
