//! Packet decoding: a captured frame and its link type in, a borrowed view of
//! the TCP segment out (`Packet`), or a counted reason why not.
//!
//! The L2/L3 header walk (Ethernet, VLAN/QinQ, IPv4 options, IPv6 extension
//! headers) is `sensor_common::parse`, the same code the XDP program runs, so
//! kernel and userspace agree on what a frame is. This module adds what only
//! userspace needs: other link types (Linux cooked SLL/SLL2, raw IP,
//! BSD loopback), addresses, the IP length (to cut Ethernet padding), the
//! TCP fields, and checksum checks (bad checksums are counted, not dropped:
//! captures taken on the sending host carry offloaded, unfilled checksums;
//! the pipeline verifies them only for segments on an SMTP port, with
//! [`verify_checksums`] after the port check).

pub mod checksum;
pub mod link;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sensor_common::parse::{self, Fragment, IPPROTO_TCP, L4Location, ParseError};

pub use link::LinkType;

use crate::net::Ts;

/// TCP flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// The fields of a decoded TCP segment besides its payload: what travels
/// beside the payload bytes when one thread decodes a frame and another
/// processes the segment (offline `--workers N`), so that no frame is
/// decoded twice.
#[derive(Clone, Copy, Debug)]
pub struct SegmentHeader {
    pub ts: Ts,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    /// VLAN tags stepped over.
    pub vlan_tags: u8,
    /// The capture holds fewer payload bytes than the IP header announced.
    pub truncated: bool,
    /// IPv4 header checksum wrong (checked only for IPv4).
    pub bad_ip_checksum: bool,
    /// TCP checksum wrong (checked only when the segment is complete).
    pub bad_tcp_checksum: bool,
    /// Where the IP header and the TCP segment lie in the frame, so that
    /// checksums can be verified after the port check.
    pub spans: Spans,
}

impl SegmentHeader {
    /// Whether either end of the segment is on one of `ports`.
    #[inline]
    pub fn on_port(&self, ports: &PortSet) -> bool {
        ports.contains(self.sport) || ports.contains(self.dport)
    }
}

/// A set of TCP ports as a map of 65 536 bits: a membership test is one
/// load and a mask. The port check runs twice per packet (the reading
/// thread's, before checksums; the worker's), on both ports; scanning the
/// configured list there cost ≈ 100 instructions per packet.
#[derive(Clone)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    ports: Vec<u16>,
}

impl PortSet {
    pub fn new(ports: &[u16]) -> PortSet {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            if let Some(w) = bits.get_mut(usize::from(p >> 6)) {
                *w |= 1 << (p & 63);
            }
        }
        PortSet {
            bits,
            ports: ports.to_vec(),
        }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits
            .get(usize::from(port >> 6))
            .is_some_and(|w| w & (1 << (port & 63)) != 0)
    }

    /// The ports, as configured.
    pub fn as_slice(&self) -> &[u16] {
        &self.ports
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PortSet").field(&self.ports).finish()
    }
}

/// Offsets in the frame of what the checksums cover.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spans {
    /// Start of the IP header.
    pub l3: u32,
    /// Start of the TCP header (the end of the IP header).
    pub l4: u32,
    /// End of the IP datagram as its length says (may lie past the frame).
    pub ip_end: u32,
}

/// A decoded TCP segment, borrowing its payload from the frame; its other
/// fields are read through `Deref` (`p.sport`).
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub header: SegmentHeader,
    /// TCP payload, Ethernet padding removed; shorter than the segment when
    /// the capture cut the frame (`truncated`).
    pub payload: &'a [u8],
}

impl std::ops::Deref for Packet<'_> {
    type Target = SegmentHeader;

    fn deref(&self) -> &SegmentHeader {
        &self.header
    }
}

/// Why a frame gave no TCP segment, when that is worth counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeAnomaly {
    /// A broken header found by the shared walk.
    Header(ParseError),
    /// An IP fragment: counted and skipped (SMTP segments are not
    /// fragmented in practice; reassembling IP is not worth its risk).
    Fragment,
    /// The IP length field is shorter than the IP + TCP headers.
    BadIpLength,
    /// The capture cut the segment short (snaplen).
    TruncatedPayload,
    BadIpChecksum,
    BadTcpChecksum,
    /// A link-layer header too short for its link type.
    TruncatedLinkHeader,
}

impl DecodeAnomaly {
    pub const fn name(self) -> &'static str {
        match self {
            DecodeAnomaly::Header(e) => e.as_str(),
            DecodeAnomaly::Fragment => "ip_fragment_skipped",
            DecodeAnomaly::BadIpLength => "bad_IP_length",
            DecodeAnomaly::TruncatedPayload => "truncated_IP",
            DecodeAnomaly::BadIpChecksum => "bad_IP_checksum",
            DecodeAnomaly::BadTcpChecksum => "bad_TCP_checksum",
            DecodeAnomaly::TruncatedLinkHeader => "truncated_link_header",
        }
    }
}

/// Outcome of decoding one frame.
#[derive(Clone, Copy, Debug)]
pub enum Decoded<'a> {
    Tcp(Packet<'a>),
    /// Valid but not for us (not IP, not TCP, more VLAN tags than walked).
    Ignored,
    /// Broken or skipped, with the counter to bump.
    Anomaly(DecodeAnomaly),
}

/// Decoder options.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Verify IPv4 header and TCP checksums (a counted anomaly each).
    pub verify_checksums: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            verify_checksums: true,
        }
    }
}

/// Decodes one frame of link type `link`.
pub fn decode<'a>(frame: &'a [u8], link: LinkType, ts: Ts, opts: DecodeOptions) -> Decoded<'a> {
    let loc = match link::locate(frame, link) {
        Ok(Some(loc)) => loc,
        Ok(None) => return Decoded::Ignored,
        Err(e) => return Decoded::Anomaly(e),
    };
    decode_l3(frame, loc, ts, opts)
}

fn ip_err(e: ParseError) -> Decoded<'static> {
    if e.is_malformed() {
        Decoded::Anomaly(DecodeAnomaly::Header(e))
    } else {
        Decoded::Ignored
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

fn decode_l3<'a>(frame: &'a [u8], loc: L4Location, ts: Ts, opts: DecodeOptions) -> Decoded<'a> {
    if loc.fragment != Fragment::None {
        return Decoded::Anomaly(DecodeAnomaly::Fragment);
    }
    if loc.l4_proto != IPPROTO_TCP {
        return Decoded::Ignored;
    }
    let l3 = loc.l3_offset;
    // Addresses and the end of the IP datagram (the frame may carry padding
    // after it, or be cut before it).
    let (src, dst, ip_end) = if loc.ip_version == 4 {
        let (Some(s), Some(d), Some(total)) = (
            be32(frame, l3 + 12),
            be32(frame, l3 + 16),
            frame.be16_at_opt(l3 + 2),
        ) else {
            return ip_err(ParseError::TruncatedIp);
        };
        (
            IpAddr::V4(Ipv4Addr::from(s)),
            IpAddr::V4(Ipv4Addr::from(d)),
            l3 + usize::from(total),
        )
    } else {
        let (Some(s), Some(d), Some(plen)) = (
            frame.get(l3 + 8..l3 + 24),
            frame.get(l3 + 24..l3 + 40),
            frame.be16_at_opt(l3 + 4),
        ) else {
            return ip_err(ParseError::TruncatedIp);
        };
        let (Ok(s), Ok(d)) = (<[u8; 16]>::try_from(s), <[u8; 16]>::try_from(d)) else {
            return ip_err(ParseError::TruncatedIp);
        };
        // Payload length 0 means a jumbogram: take the frame's end.
        let end = if plen == 0 {
            frame.len()
        } else {
            l3 + 40 + usize::from(plen)
        };
        (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d)),
            end,
        )
    };
    let l4 = loc.l4_offset;
    let (sport, dport) = match parse::tcp_ports(frame, l4) {
        Ok(p) => p,
        Err(e) => return ip_err(e),
    };
    let (Some(seq), Some(ack), Some(&off_byte), Some(&flags), Some(window)) = (
        be32(frame, l4 + 4),
        be32(frame, l4 + 8),
        frame.get(l4 + 12),
        frame.get(l4 + 13),
        frame.be16_at_opt(l4 + 14),
    ) else {
        return ip_err(ParseError::TruncatedTcp);
    };
    let payload_start = l4 + usize::from(off_byte >> 4) * 4;
    if ip_end < payload_start {
        return Decoded::Anomaly(DecodeAnomaly::BadIpLength);
    }
    let truncated = ip_end > frame.len();
    let payload = frame
        .get(payload_start..ip_end.min(frame.len()))
        .unwrap_or(&[]);
    let spans = Spans {
        l3: l3 as u32,
        l4: l4 as u32,
        ip_end: u32::try_from(ip_end).unwrap_or(u32::MAX),
    };
    let mut p = Packet {
        header: SegmentHeader {
            ts,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags: TcpFlags(flags),
            window,
            vlan_tags: loc.vlan_tags,
            truncated,
            bad_ip_checksum: false,
            bad_tcp_checksum: false,
            spans,
        },
        payload,
    };
    if opts.verify_checksums {
        verify_checksums(frame, &mut p);
    }
    Decoded::Tcp(p)
}

/// Verifies the IPv4 header and TCP checksums of `p`, decoded from `frame`
/// (without checksums, to verify them only for the segments that matter):
/// sets `bad_ip_checksum` and `bad_tcp_checksum`. A segment the capture
/// cut short is not checked.
pub fn verify_checksums(frame: &[u8], p: &mut Packet<'_>) {
    verify_ip_checksum(frame, p);
    if let Some(seg) = tcp_segment(frame, p) {
        verify_tcp_checksum(p, seg);
    }
}

/// The IPv4 header checksum part of [`verify_checksums`].
pub fn verify_ip_checksum(frame: &[u8], p: &mut Packet<'_>) {
    let Spans { l3, l4, .. } = p.header.spans;
    if p.src.is_ipv4() {
        p.header.bad_ip_checksum = frame
            .get(l3 as usize..l4 as usize)
            .is_some_and(|h| checksum::fold(checksum::sum(h, 0)) != 0);
    }
}

/// The whole TCP segment of `p` (header and payload, the payload its
/// tail), when the capture holds all of it.
pub fn tcp_segment<'f>(frame: &'f [u8], p: &Packet<'_>) -> Option<&'f [u8]> {
    let Spans { l4, ip_end, .. } = p.header.spans;
    if p.truncated {
        return None;
    }
    frame.get(l4 as usize..ip_end as usize)
}

/// The TCP checksum part of [`verify_checksums`], over `segment` (from
/// [`tcp_segment`], possibly copied to another thread): sets and returns
/// `bad_tcp_checksum`.
pub fn verify_tcp_checksum(p: &mut Packet<'_>, segment: &[u8]) -> bool {
    p.header.bad_tcp_checksum = !checksum::tcp_ok(p.src, p.dst, segment);
    p.header.bad_tcp_checksum
}

/// `be16_at` without importing the trait at every call site.
trait Be16Opt {
    fn be16_at_opt(&self, off: usize) -> Option<u16>;
}
impl Be16Opt for [u8] {
    fn be16_at_opt(&self, off: usize) -> Option<u16> {
        parse::PacketBytes::be16_at(self, off)
    }
}

#[cfg(test)]
pub(crate) mod tests;
