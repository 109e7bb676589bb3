//! A capture turned into the replayer's frame table: the frame bytes packed
//! into [`Chunk`]-sized pieces, one [`FrameRef`] per frame, and the frames
//! split into lanes (one per rx queue of the receiver).
//!
//! Only frames between the test hosts are taken: every IPv4 address must be
//! in 198.18.0.0/15 and every IPv6 address in 2001:db8::/32 (the ranges the
//! project's captures and veth pairs use), so a replay can never put other
//! addresses on a wire. A frame outside them is an error, not a skip: the
//! capture is the wrong one. Frames that are not IP (ARP, …) are skipped,
//! since their addresses cannot be checked; so are frames longer than the
//! receiving link takes. Both are counted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sensor_common::flowhash::FlowHashKey;
use sensor_common::parse::{Fragment, IPPROTO_TCP, IPPROTO_UDP, locate_l4_from_ethernet};
use sensor_common::replay::{
    CHUNK_BYTES, CHUNK_SPAN, FrameRef, IpKind, MAX_FRAME, MAX_L3_OFFSET, MAX_LANES,
};

/// How frames are spread over lanes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// By the symmetric connection hash: both directions of a connection in
    /// one lane (a NIC with symmetric RSS).
    #[default]
    Flow,
    /// By the directed 4-tuple: the two directions of a connection usually
    /// in different lanes (a NIC's default Toeplitz RSS).
    Tuple,
}

/// Limits on what goes into the table.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest frame taken (the receiver's MTU plus its link header).
    pub max_frame: u32,
    /// Bytes of frame data at most (the kernel memory the maps take).
    pub max_bytes: u64,
    /// Frames at most (a prefix of the capture); `None`: all.
    pub max_frames: Option<u64>,
}

/// Why a capture cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(
        "frame {frame}: {addr} is outside the test ranges (198.18.0.0/15, 2001:db8::/32); \
         the replayer only sends captures between test hosts (e.g. `synth load`)"
    )]
    ForeignAddress { frame: u64, addr: IpAddr },
    #[error(
        "the capture needs more than {max_mb} MB of frame memory; replay a prefix \
         (--max-frames) or allow more (--max-mb)"
    )]
    TooBig { max_mb: u64 },
    #[error("the capture holds no frame the replayer can send ({skipped} skipped)")]
    Empty { skipped: u64 },
    #[error("{0} lanes asked for; 1 to {MAX_LANES} are possible")]
    Lanes(u32),
}

/// Frames left out, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Not Ethernet, or not IPv4/IPv6 (ARP, LLDP, …), or headers too broken
    /// to find the addresses.
    pub not_ip: u64,
    /// Longer than [`Limits::max_frame`].
    pub oversize: u64,
}

impl Skipped {
    pub fn total(&self) -> u64 {
        self.not_ip + self.oversize
    }
}

/// The packed capture.
pub struct FrameTable {
    /// `chunks * CHUNK_BYTES` bytes.
    data: Vec<u8>,
    /// Frame references, lane by lane.
    pub frames: Vec<FrameRef>,
    /// Per lane: `(first, count)` into `frames`.
    pub lanes: Vec<(u32, u32)>,
    /// Bytes of all frames (one pass).
    pub bytes: u64,
    /// Longest frame.
    pub longest: u32,
    pub skipped: Skipped,
}

impl FrameTable {
    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.data.len() / CHUNK_BYTES
    }

    /// The bytes of chunk `i`.
    pub fn chunk(&self, i: usize) -> Option<&[u8; CHUNK_BYTES]> {
        self.data
            .get(i * CHUNK_BYTES..(i + 1) * CHUNK_BYTES)
            .and_then(|s| s.try_into().ok())
    }

    /// The bytes of frame `i` of the table (lane order).
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let f = self.frames.get(i)?;
        let start = f.chunk as usize * CHUNK_BYTES + f.offset as usize;
        self.data.get(start..start + usize::from(f.len))
    }

    /// Frames in one pass.
    pub fn len(&self) -> u64 {
        self.frames.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Builds a table from Ethernet frames in capture order.
pub struct TableBuilder {
    limits: Limits,
    split: Split,
    data: Vec<u8>,
    /// Per lane, its frames in capture order.
    per_lane: Vec<Vec<FrameRef>>,
    /// Write position in the last chunk.
    fill: usize,
    bytes: u64,
    longest: u32,
    seen: u64,
    skipped: Skipped,
}

impl TableBuilder {
    pub fn new(lanes: u32, split: Split, limits: Limits) -> Result<Self, TableError> {
        if lanes == 0 || lanes > MAX_LANES {
            return Err(TableError::Lanes(lanes));
        }
        Ok(TableBuilder {
            limits: Limits {
                max_frame: limits.max_frame.min(MAX_FRAME),
                ..limits
            },
            split,
            data: Vec::new(),
            per_lane: vec![Vec::new(); lanes as usize],
            fill: CHUNK_SPAN as usize,
            bytes: 0,
            longest: 0,
            seen: 0,
            skipped: Skipped::default(),
        })
    }

    /// True once the frame limit is reached.
    pub fn full(&self) -> bool {
        self.limits.max_frames.is_some_and(|m| self.seen >= m)
    }

    /// Adds the next frame of the capture (`ethernet`: false for another
    /// link type, which is skipped).
    pub fn push(&mut self, frame: &[u8], ethernet: bool) -> Result<(), TableError> {
        if self.full() {
            return Ok(());
        }
        let index = self.seen;
        self.seen += 1;
        let Some(info) = ethernet.then(|| inspect(frame)).flatten() else {
            self.skipped.not_ip += 1;
            return Ok(());
        };
        for addr in [info.src, info.dst] {
            if !is_test_address(addr) {
                return Err(TableError::ForeignAddress { frame: index, addr });
            }
        }
        let len = frame.len();
        if len == 0 || len > self.limits.max_frame as usize {
            self.skipped.oversize += 1;
            return Ok(());
        }
        if self.fill >= CHUNK_SPAN as usize {
            let chunks = self.data.len() / CHUNK_BYTES + 1;
            if (chunks * CHUNK_BYTES) as u64 > self.limits.max_bytes {
                return Err(TableError::TooBig {
                    max_mb: self.limits.max_bytes >> 20,
                });
            }
            self.data.resize(chunks * CHUNK_BYTES, 0);
            self.fill = 0;
        }
        let chunk = self.data.len() / CHUNK_BYTES - 1;
        let start = chunk * CHUNK_BYTES + self.fill;
        if let Some(dst) = self.data.get_mut(start..start + len) {
            dst.copy_from_slice(frame);
        }
        let r = FrameRef {
            chunk: chunk as u32,
            offset: self.fill as u32,
            len: len as u16,
            l3: info.l3,
            kind: info.kind as u8,
            l4_csum: info.l4_csum,
            _pad: 0,
        };
        self.fill += len;
        self.bytes += len as u64;
        self.longest = self.longest.max(len as u32);
        let lanes = self.per_lane.len() as u64;
        let lane = (self.split.hash(&info) % lanes) as usize;
        if let Some(l) = self.per_lane.get_mut(lane) {
            l.push(r);
        }
        Ok(())
    }

    pub fn finish(self) -> Result<FrameTable, TableError> {
        let mut frames = Vec::with_capacity(self.per_lane.iter().map(Vec::len).sum());
        let mut lanes = Vec::with_capacity(self.per_lane.len());
        for l in self.per_lane {
            lanes.push((frames.len() as u32, l.len() as u32));
            frames.extend(l);
        }
        if frames.is_empty() {
            return Err(TableError::Empty {
                skipped: self.skipped.total(),
            });
        }
        Ok(FrameTable {
            data: self.data,
            frames,
            lanes,
            bytes: self.bytes,
            longest: self.longest,
            skipped: self.skipped,
        })
    }
}

/// What the table needs to know of a frame's headers.
struct FrameInfo {
    kind: IpKind,
    l3: u8,
    l4_csum: u16,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

impl Split {
    fn hash(self, f: &FrameInfo) -> u64 {
        match self {
            // Any fixed key spreads lanes; the sensor's key is its own.
            Split::Flow => u64::from(smtp_sensor::flow::flow_hash(
                &FlowHashKey([0x5eed, 0x1a4e]),
                f.src,
                f.sport,
                f.dst,
                f.dport,
            )),
            Split::Tuple => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (f.src, f.sport, f.dst, f.dport).hash(&mut h);
                h.finish()
            }
        }
    }
}

/// The IP header of an Ethernet frame: version, offset, addresses, ports,
/// and where the L4 checksum covering the addresses is.
fn inspect(frame: &[u8]) -> Option<FrameInfo> {
    let loc = locate_l4_from_ethernet(frame).ok()?;
    let l3 = loc.l3_offset;
    if l3 > usize::from(MAX_L3_OFFSET) {
        return None;
    }
    let (kind, src, dst) = match loc.ip_version {
        4 => {
            let a: [u8; 4] = frame.get(l3 + 12..l3 + 16)?.try_into().ok()?;
            let b: [u8; 4] = frame.get(l3 + 16..l3 + 20)?.try_into().ok()?;
            (
                IpKind::V4,
                IpAddr::V4(Ipv4Addr::from(a)),
                IpAddr::V4(Ipv4Addr::from(b)),
            )
        }
        6 => {
            let a: [u8; 16] = frame.get(l3 + 8..l3 + 24)?.try_into().ok()?;
            let b: [u8; 16] = frame.get(l3 + 24..l3 + 40)?.try_into().ok()?;
            (
                IpKind::V6,
                IpAddr::V6(Ipv6Addr::from(a)),
                IpAddr::V6(Ipv6Addr::from(b)),
            )
        }
        _ => return None,
    };
    let l4 = loc.l4_offset;
    let port = |off: usize| {
        frame
            .get(off..off + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let first = loc.fragment != Fragment::NonFirst;
    let (sport, dport) = if first && matches!(loc.l4_proto, IPPROTO_TCP | IPPROTO_UDP) {
        (port(l4), port(l4 + 2))
    } else {
        (0, 0)
    };
    let csum_at = match loc.l4_proto {
        IPPROTO_TCP if first => Some(l4 + 16),
        // A UDP checksum of zero means none (IPv4): leave it alone.
        IPPROTO_UDP if first && port(l4 + 6) != 0 => Some(l4 + 6),
        _ => None,
    };
    let l4_csum = csum_at
        .filter(|&off| off + 2 <= frame.len() && off <= 255)
        .map_or(0, |off| off as u16);
    Some(FrameInfo {
        kind,
        l3: l3 as u8,
        l4_csum,
        src,
        dst,
        sport,
        dport,
    })
}

/// 198.18.0.0/15 or 2001:db8::/32.
pub fn is_test_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_tests::synth::frame::TcpFrame;
    use std::net::SocketAddr;

    const LIMITS: Limits = Limits {
        max_frame: 1518,
        max_bytes: 1 << 30,
        max_frames: None,
    };

    fn ep(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    /// A TCP frame from `src` to `dst` with `flags` and `payload`.
    fn tcp_frame(
        src: &SocketAddr,
        dst: &SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        TcpFrame {
            seq,
            ack,
            flags,
            payload,
            ..TcpFrame::new(*src, *dst)
        }
        .build()
    }

    #[test]
    fn test_ranges_only() {
        for (a, ok) in [
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.20.0.1", false),
            ("10.0.0.1", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("fe80::1", false),
        ] {
            assert_eq!(is_test_address(a.parse().unwrap()), ok, "{a}");
        }
    }

    #[test]
    fn frames_pack_into_chunks_without_straddling() {
        let mut b = TableBuilder::new(1, Split::Flow, LIMITS).unwrap();
        let payload = vec![b'x'; 1400];
        let c = ep("198.18.0.10", 40000);
        let s = ep("198.18.0.2", 25);
        for i in 0..200u32 {
            let f = tcp_frame(&c, &s, i, 0, 0x18, &payload);
            b.push(&f, true).unwrap();
        }
        let t = b.finish().unwrap();
        assert_eq!(t.len(), 200);
        assert!(t.chunks() >= 4, "{} chunks", t.chunks());
        for (i, f) in t.frames.iter().enumerate() {
            assert!(f.offset < CHUNK_SPAN);
            assert!(f.offset as usize + usize::from(f.len) <= CHUNK_BYTES);
            let bytes = t.frame(i).unwrap();
            assert_eq!(bytes.len(), usize::from(f.len));
            assert_eq!(f.kind, IpKind::V4 as u8);
            assert_eq!(f.l3, 14);
            assert_eq!(f.l4_csum, 14 + 20 + 16);
        }
    }

    #[test]
    fn foreign_addresses_are_refused_and_non_ip_skipped() {
        let mut b = TableBuilder::new(1, Split::Flow, LIMITS).unwrap();
        let arp = [0u8; 42];
        b.push(&arp, true).unwrap();
        b.push(&[0u8; 60], false).unwrap();
        let f = tcp_frame(
            &ep("10.1.1.1", 1000),
            &ep("198.18.0.2", 25),
            1,
            0,
            0x02,
            b"",
        );
        let e = b.push(&f, true).unwrap_err();
        assert!(e.to_string().contains("10.1.1.1"), "{e}");
        assert!(e.to_string().contains("frame 2"), "{e}");
    }

    #[test]
    fn oversize_frames_are_skipped_and_counted() {
        let small = Limits {
            max_frame: 200,
            ..LIMITS
        };
        let mut b = TableBuilder::new(1, Split::Flow, small).unwrap();
        let c = ep("2001:db8::10", 40000);
        let s = ep("2001:db8::2", 25);
        b.push(&tcp_frame(&c, &s, 1, 0, 0x18, &[b'y'; 500]), true)
            .unwrap();
        b.push(&tcp_frame(&c, &s, 1, 0, 0x18, b"EHLO x\r\n"), true)
            .unwrap();
        let t = b.finish().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.skipped.oversize, 1);
        assert_eq!(t.frames[0].kind, IpKind::V6 as u8);
        assert_eq!(t.frames[0].l4_csum, 14 + 40 + 16);
    }

    #[test]
    fn flow_split_keeps_a_connection_in_one_lane_tuple_split_does_not() {
        let s = ep("198.18.0.2", 25);
        let lanes_of = |split: Split| {
            let mut b = TableBuilder::new(2, split, LIMITS).unwrap();
            for port in 40000..40064u16 {
                let c = ep("198.18.0.10", port);
                b.push(&tcp_frame(&c, &s, 1, 0, 0x02, b""), true).unwrap();
                b.push(&tcp_frame(&s, &c, 1, 2, 0x12, b""), true).unwrap();
            }
            let t = b.finish().unwrap();
            // Lane of each (client port, direction).
            let mut seen = std::collections::HashMap::new();
            for (lane, &(first, count)) in t.lanes.iter().enumerate() {
                for i in first..first + count {
                    let bytes = t.frame(i as usize).unwrap();
                    let sport = u16::from_be_bytes([bytes[34], bytes[35]]);
                    let dport = u16::from_be_bytes([bytes[36], bytes[37]]);
                    seen.insert((sport.max(dport), sport == 25), lane);
                }
            }
            let split_conns = (40000..40064u16)
                .filter(|p| seen.get(&(*p, false)) != seen.get(&(*p, true)))
                .count();
            (t.lanes, split_conns)
        };
        let (lanes, split) = lanes_of(Split::Flow);
        assert_eq!(split, 0);
        assert!(lanes.iter().all(|&(_, n)| n > 20), "{lanes:?}");
        let (_, split) = lanes_of(Split::Tuple);
        assert!(split > 10, "{split} of 64 connections split");
    }

    #[test]
    fn memory_and_frame_limits() {
        let tiny = Limits {
            max_bytes: CHUNK_BYTES as u64,
            ..LIMITS
        };
        let mut b = TableBuilder::new(1, Split::Flow, tiny).unwrap();
        let c = ep("198.18.0.10", 40000);
        let s = ep("198.18.0.2", 25);
        let f = tcp_frame(&c, &s, 1, 0, 0x18, &[b'z'; 1400]);
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = b.push(&f, true) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(TableError::TooBig { .. })), "{err:?}");
        let prefix = Limits {
            max_frames: Some(3),
            ..LIMITS
        };
        let mut b = TableBuilder::new(1, Split::Flow, prefix).unwrap();
        for _ in 0..10 {
            b.push(&f, true).unwrap();
        }
        assert!(b.full());
        assert_eq!(b.finish().unwrap().len(), 3);
    }
}
