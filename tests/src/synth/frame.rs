//! Builds Ethernet frames byte by byte: MACs, 0–2 VLAN tags (802.1ad outer,
//! 802.1Q inner), IPv4 with options or IPv6 with extension headers, and TCP
//! or UDP with correct checksums. The one place test traffic is assembled,
//! so every generated pcap goes through the same, tested code.
//!
//! ```
//! use sensor_tests::synth::frame::{TcpFrame, tcp_flags};
//! let f = TcpFrame {
//!     flags: tcp_flags::SYN,
//!     ..TcpFrame::new("198.18.0.1:40000".parse().unwrap(), "198.18.0.2:25".parse().unwrap())
//! }
//! .build();
//! assert_eq!(f.len(), 14 + 20 + 20);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sensor_common::parse::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
};

/// TCP flag bits for [`TcpFrame::flags`].
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Default source MAC (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// One IPv6 extension header to insert between the fixed header and L4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop options, `(len + 1) * 8` bytes of PadN.
    HopByHop { len: u8 },
    /// Destination options, `(len + 1) * 8` bytes of PadN.
    DestOpts { len: u8 },
    /// Routing header type 4 (SRH-like) with segments left 0, `(len + 1) * 8` bytes.
    Routing { len: u8 },
    /// Fragment header: offset in 8-byte units, more-fragments flag.
    Fragment { offset: u16, more: bool, id: u32 },
}

/// IPv4 fragmentation fields (ignored for IPv6: use [`Ipv6Ext::Fragment`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Fragment {
    /// Offset in 8-byte units.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
}

/// Everything below L4: link and IP header details.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// VLAN IDs, outermost first (0, 1 or 2; more are written too, for
    /// negative tests). With two or more tags the outer one uses
    /// `outer_tpid` (802.1ad by default), the others 802.1Q.
    pub vlans: &'a [u16],
    /// TPID of the outer tag when there are two or more tags.
    pub outer_tpid: u16,
    /// IPv4 options, zero-padded to a multiple of 4 bytes (at most 40).
    pub ipv4_options: &'a [u8],
    /// IPv4 fragmentation fields.
    pub ipv4_fragment: Ipv4Fragment,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: &'a [Ipv6Ext],
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification.
    pub ip_id: u16,
}

impl Default for Envelope<'_> {
    fn default() -> Self {
        Envelope {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlans: &[],
            outer_tpid: ETH_P_8021AD,
            ipv4_options: &[],
            ipv4_fragment: Ipv4Fragment::default(),
            ipv6_ext: &[],
            ttl: 64,
            ip_id: 0,
        }
    }
}

/// A TCP segment in an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub struct TcpFrame<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// Bits from [`tcp_flags`].
    pub flags: u8,
    pub window: u16,
    /// TCP options, zero-padded to a multiple of 4 bytes (at most 40).
    pub options: &'a [u8],
    pub payload: &'a [u8],
    pub envelope: Envelope<'a>,
}

impl<'a> TcpFrame<'a> {
    /// A bare ACK from `src` to `dst`, seq/ack 0, default envelope. Both
    /// addresses must be of the same family.
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        TcpFrame {
            src,
            dst,
            seq: 0,
            ack: 0,
            flags: tcp_flags::ACK,
            window: 65_535,
            options: &[],
            payload: &[],
            envelope: Envelope::default(),
        }
    }

    /// The frame's bytes.
    ///
    /// # Panics
    /// When `src` and `dst` are of different address families, or options
    /// exceed 40 bytes: both are bugs in the calling test.
    pub fn build(&self) -> Vec<u8> {
        let opt_len = padded4(self.options.len());
        assert!(opt_len <= 40, "TCP options longer than 40 bytes");
        let hlen = 20 + opt_len;
        let mut tcp = Vec::with_capacity(hlen + self.payload.len());
        tcp.extend_from_slice(&self.src.port().to_be_bytes());
        tcp.extend_from_slice(&self.dst.port().to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        // hlen <= 60 by the assert above, so the data offset fits its nibble.
        tcp.push(((hlen / 4) as u8) << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&self.window.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(self.options);
        tcp.resize(hlen, 0);
        tcp.extend_from_slice(self.payload);
        let sum = l4_checksum(self.src.ip(), self.dst.ip(), IPPROTO_TCP, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        IpPacket {
            src: self.src.ip(),
            dst: self.dst.ip(),
            proto: IPPROTO_TCP,
            l4: &tcp,
            envelope: self.envelope,
        }
        .build()
    }
}

/// A UDP datagram in an Ethernet frame (non-SMTP noise).
#[derive(Clone, Copy, Debug)]
pub struct UdpFrame<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: &'a [u8],
    pub envelope: Envelope<'a>,
}

impl<'a> UdpFrame<'a> {
    /// A datagram from `src` to `dst` with the default envelope.
    pub fn new(src: SocketAddr, dst: SocketAddr, payload: &'a [u8]) -> Self {
        UdpFrame {
            src,
            dst,
            payload,
            envelope: Envelope::default(),
        }
    }

    /// The frame's bytes (panics like [`TcpFrame::build`]).
    pub fn build(&self) -> Vec<u8> {
        let len = 8 + self.payload.len();
        let mut udp = Vec::with_capacity(len);
        udp.extend_from_slice(&self.src.port().to_be_bytes());
        udp.extend_from_slice(&self.dst.port().to_be_bytes());
        udp.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(self.payload);
        let mut sum = l4_checksum(self.src.ip(), self.dst.ip(), IPPROTO_UDP, &udp);
        if sum == 0 {
            sum = 0xffff;
        }
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        IpPacket {
            src: self.src.ip(),
            dst: self.dst.ip(),
            proto: IPPROTO_UDP,
            l4: &udp,
            envelope: self.envelope,
        }
        .build()
    }
}

/// An IP packet with an arbitrary, already built L4 part (use for
/// fragments and protocols without their own builder).
#[derive(Clone, Copy, Debug)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4: &'a [u8],
    pub envelope: Envelope<'a>,
}

impl IpPacket<'_> {
    /// The frame's bytes (panics like [`TcpFrame::build`]).
    pub fn build(&self) -> Vec<u8> {
        let env = &self.envelope;
        let mut f = Vec::with_capacity(14 + 8 + 60 + 64 + self.l4.len());
        f.extend_from_slice(&env.dst_mac);
        f.extend_from_slice(&env.src_mac);
        let tags = env.vlans.len();
        for (i, vid) in env.vlans.iter().enumerate() {
            let tpid = if tags >= 2 && i == 0 {
                env.outer_tpid
            } else {
                ETH_P_8021Q
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
                self.ipv4_header(&mut f, s, d);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                self.ipv6_header(&mut f, s, d);
            }
            _ => panic!("IpPacket: source and destination address families differ"),
        }
        f.extend_from_slice(self.l4);
        f
    }

    fn ipv4_header(&self, f: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) {
        let env = &self.envelope;
        let opt_len = padded4(env.ipv4_options.len());
        assert!(opt_len <= 40, "IPv4 options longer than 40 bytes");
        let hlen = 20 + opt_len;
        let total = u16::try_from(hlen + self.l4.len()).expect("IPv4 packet over 64 KiB");
        let start = f.len();
        f.push(0x40 | (hlen / 4) as u8);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&env.ip_id.to_be_bytes());
        let frag =
            (env.ipv4_fragment.offset & 0x1fff) | if env.ipv4_fragment.more { 0x2000 } else { 0 };
        f.extend_from_slice(&frag.to_be_bytes());
        f.push(env.ttl);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(env.ipv4_options);
        f.resize(start + hlen, 0);
        let sum = !fold(sum16(0, &f[start..start + hlen]));
        f[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    }

    fn ipv6_header(&self, f: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr) {
        let env = &self.envelope;
        let mut ext = Vec::new();
        for (i, h) in env.ipv6_ext.iter().enumerate() {
            let next = env.ipv6_ext.get(i + 1).map_or(self.proto, |n| n.protocol());
            let start = ext.len();
            match *h {
                Ipv6Ext::HopByHop { len } | Ipv6Ext::DestOpts { len } => {
                    let size = (usize::from(len) + 1) * 8;
                    ext.push(next);
                    ext.push(len);
                    // PadN option covering the rest of the header.
                    ext.push(1);
                    ext.push((size - 4) as u8);
                    ext.resize(start + size, 0);
                }
                Ipv6Ext::Routing { len } => {
                    let size = (usize::from(len) + 1) * 8;
                    ext.extend_from_slice(&[next, len, 4, 0]);
                    ext.resize(start + size, 0);
                }
                Ipv6Ext::Fragment { offset, more, id } => {
                    ext.extend_from_slice(&[next, 0]);
                    let v = (offset << 3) | u16::from(more);
                    ext.extend_from_slice(&v.to_be_bytes());
                    ext.extend_from_slice(&id.to_be_bytes());
                }
            }
        }
        let first = env.ipv6_ext.first().map_or(self.proto, |h| h.protocol());
        let payload_len =
            u16::try_from(ext.len() + self.l4.len()).expect("IPv6 payload over 64 KiB");
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&payload_len.to_be_bytes());
        f.push(first);
        f.push(env.ttl);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&ext);
    }
}

impl Ipv6Ext {
    /// The IP protocol number announcing this header.
    pub fn protocol(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop { .. } => IPPROTO_HOPOPTS,
            Ipv6Ext::DestOpts { .. } => IPPROTO_DSTOPTS,
            Ipv6Ext::Routing { .. } => IPPROTO_ROUTING,
            Ipv6Ext::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }
}

fn padded4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Adds `data` as big-endian 16-bit words to `acc` (odd tail zero-padded).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// TCP/UDP checksum with the IPv4 or IPv6 pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    let mut acc = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
        }
        _ => panic!("l4_checksum: source and destination address families differ"),
    }
    acc += u32::from(proto);
    acc += l4.len() as u32;
    acc = sum16(acc, l4);
    !fold(acc)
}

/// True when the one's-complement sum over `data` (checksum included) is
/// valid; for checking the builder and captured frames in tests.
pub fn checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> bool {
    let mut acc = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(sum16(acc, &s.octets()), &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum16(sum16(acc, &s.octets()), &d.octets());
        }
        _ => return false,
    }
    acc += u32::from(proto) + l4.len() as u32;
    fold(sum16(acc, l4)) == 0xffff
}

/// The classification rules of the XDP program (`sensor_common::classify`)
/// and the header walk userspace shares with it, tested on built frames.
#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::parse::{
        Fragment, ParseError, Verdict, classify, locate_l4_from_ethernet, locate_l4_from_ethertype,
    };

    fn smtp_port(p: u16) -> bool {
        p == 25 || p == 587
    }

    fn v4(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    fn tcp<'a>(src: &str, dst: &str) -> TcpFrame<'a> {
        TcpFrame::new(v4(src), v4(dst))
    }

    #[test]
    fn smtp_ports_in_either_direction_are_smtp_for_ipv4_and_ipv6() {
        for (s, d) in [
            ("198.18.0.1:40000", "198.18.0.2:25"),
            ("198.18.0.2:25", "198.18.0.1:40000"),
            ("198.18.0.1:40001", "198.18.0.2:587"),
            ("198.18.0.2:587", "198.18.0.1:40001"),
            ("[2001:db8::1]:40000", "[2001:db8::2]:25"),
            ("[2001:db8::2]:587", "[2001:db8::1]:40000"),
        ] {
            let f = TcpFrame {
                payload: b"EHLO x\r\n",
                ..tcp(s, d)
            }
            .build();
            assert_eq!(
                classify(f.as_slice(), smtp_port),
                Verdict::Smtp,
                "{s} -> {d}"
            );
        }
    }

    #[test]
    fn other_ports_and_udp_on_port_25_are_not_smtp() {
        let f = tcp("198.18.0.1:40000", "198.18.0.2:80").build();
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::NotSmtp);
        let f = UdpFrame::new(v4("198.18.0.1:25"), v4("198.18.0.2:25"), b"x").build();
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::NotSmtp);
        let f = UdpFrame::new(v4("[2001:db8::1]:53"), v4("[2001:db8::2]:587"), b"x").build();
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::NotSmtp);
    }

    #[test]
    fn port_set_comes_from_the_caller() {
        let f = tcp("198.18.0.1:40000", "198.18.0.2:2525").build();
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::NotSmtp);
        assert_eq!(classify(f.as_slice(), |p| p == 2525), Verdict::Smtp);
    }

    #[test]
    fn non_ip_frames_are_not_smtp() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(classify(arp.as_slice(), smtp_port), Verdict::NotSmtp);
        assert_eq!(
            locate_l4_from_ethernet(arp.as_slice()),
            Err(ParseError::NotIp)
        );
    }

    #[test]
    fn one_and_two_vlan_tags_are_walked() {
        for (vlans, tpid, tags) in [
            (&[100u16][..], ETH_P_8021AD, 1u8),
            (&[200, 100][..], ETH_P_8021AD, 2),
            (&[200, 100][..], ETH_P_8021Q, 2),
        ] {
            for (s, d, l3_ver) in [
                ("198.18.0.1:40000", "198.18.0.2:25", 4u8),
                ("[2001:db8::1]:40000", "[2001:db8::2]:587", 6),
            ] {
                let f = TcpFrame {
                    envelope: Envelope {
                        vlans,
                        outer_tpid: tpid,
                        ..Envelope::default()
                    },
                    ..tcp(s, d)
                }
                .build();
                let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
                assert_eq!(loc.vlan_tags, tags);
                assert_eq!(loc.ip_version, l3_ver);
                assert_eq!(loc.l3_offset, 14 + 4 * usize::from(tags));
                assert_eq!(classify(f.as_slice(), smtp_port), Verdict::Smtp);
            }
        }
    }

    #[test]
    fn three_vlan_tags_are_not_parsed() {
        let f = TcpFrame {
            envelope: Envelope {
                vlans: &[1, 2, 3],
                ..Envelope::default()
            },
            ..tcp("198.18.0.1:40000", "198.18.0.2:25")
        }
        .build();
        assert_eq!(
            locate_l4_from_ethernet(f.as_slice()),
            Err(ParseError::TooManyVlanTags)
        );
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::NotSmtp);
    }

    #[test]
    fn ipv4_options_move_the_tcp_header() {
        let opts = [1u8; 40]; // NOPs: IHL 15
        let f = TcpFrame {
            envelope: Envelope {
                ipv4_options: &opts,
                ..Envelope::default()
            },
            ..tcp("198.18.0.1:40000", "198.18.0.2:25")
        }
        .build();
        let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
        assert_eq!(loc.l4_offset, 14 + 60);
        assert_eq!(loc.l4_proto, IPPROTO_TCP);
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::Smtp);
    }

    #[test]
    fn every_ipv4_header_length_is_walked() {
        let opts = [1u8; 40];
        for words in 5..=15usize {
            let extra = (words - 5) * 4;
            for (s, d) in [
                ("198.18.0.1:40000", "198.18.0.2:25"),
                ("198.18.0.2:587", "198.18.0.1:40000"),
            ] {
                let f = TcpFrame {
                    payload: b"RCPT TO:<a@b>\r\n",
                    envelope: Envelope {
                        ipv4_options: &opts[..extra],
                        vlans: if words % 2 == 0 { &[7] } else { &[] },
                        ..Envelope::default()
                    },
                    ..tcp(s, d)
                }
                .build();
                let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
                assert_eq!(loc.l4_offset, loc.l3_offset + words * 4, "IHL {words}");
                assert_eq!(
                    classify(f.as_slice(), smtp_port),
                    Verdict::Smtp,
                    "IHL {words}"
                );
                // Moved off the SMTP ports, the same header is not SMTP.
                assert_eq!(classify(f.as_slice(), |p| p == 2525), Verdict::NotSmtp);
            }
        }
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let ext = [
            Ipv6Ext::HopByHop { len: 0 },
            Ipv6Ext::DestOpts { len: 1 },
            Ipv6Ext::Routing { len: 2 },
            Ipv6Ext::DestOpts { len: 0 },
        ];
        let f = TcpFrame {
            envelope: Envelope {
                ipv6_ext: &ext,
                ..Envelope::default()
            },
            ..tcp("[2001:db8::1]:40000", "[2001:db8::2]:25")
        }
        .build();
        let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
        assert_eq!(loc.l4_offset, 14 + 40 + 8 + 16 + 24 + 8);
        assert_eq!(loc.fragment, Fragment::None);
        assert_eq!(classify(f.as_slice(), smtp_port), Verdict::Smtp);
    }

    #[test]
    fn too_many_ipv6_extension_headers_are_malformed() {
        let ext = [Ipv6Ext::DestOpts { len: 0 }; 7];
        let f = TcpFrame {
            envelope: Envelope {
                ipv6_ext: &ext,
                ..Envelope::default()
            },
            ..tcp("[2001:db8::1]:40000", "[2001:db8::2]:25")
        }
        .build();
        assert_eq!(
            classify(f.as_slice(), smtp_port),
            Verdict::Malformed(ParseError::TooManyIpv6ExtHeaders)
        );
    }

    #[test]
    fn first_fragments_are_classified_and_later_ones_are_not() {
        let first = TcpFrame {
            envelope: Envelope {
                ipv4_fragment: Ipv4Fragment {
                    offset: 0,
                    more: true,
                },
                ..Envelope::default()
            },
            ..tcp("198.18.0.1:40000", "198.18.0.2:25")
        }
        .build();
        assert_eq!(
            locate_l4_from_ethernet(first.as_slice()).unwrap().fragment,
            Fragment::First
        );
        assert_eq!(classify(first.as_slice(), smtp_port), Verdict::Smtp);

        let later = IpPacket {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            proto: IPPROTO_TCP,
            l4: &[0u8; 64],
            envelope: Envelope {
                ipv4_fragment: Ipv4Fragment {
                    offset: 3,
                    more: false,
                },
                ..Envelope::default()
            },
        }
        .build();
        assert_eq!(
            classify(later.as_slice(), smtp_port),
            Verdict::NonFirstFragment
        );

        let ext_first = [
            Ipv6Ext::HopByHop { len: 0 },
            Ipv6Ext::Fragment {
                offset: 0,
                more: true,
                id: 7,
            },
        ];
        let f6 = TcpFrame {
            envelope: Envelope {
                ipv6_ext: &ext_first,
                ..Envelope::default()
            },
            ..tcp("[2001:db8::1]:40000", "[2001:db8::2]:587")
        }
        .build();
        let loc = locate_l4_from_ethernet(f6.as_slice()).unwrap();
        assert_eq!(loc.fragment, Fragment::First);
        assert_eq!(loc.l4_offset, 14 + 40 + 8 + 8);
        assert_eq!(classify(f6.as_slice(), smtp_port), Verdict::Smtp);

        let ext_later = [Ipv6Ext::Fragment {
            offset: 100,
            more: false,
            id: 7,
        }];
        let f6 = IpPacket {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            proto: IPPROTO_TCP,
            l4: &[0u8; 64],
            envelope: Envelope {
                ipv6_ext: &ext_later,
                ..Envelope::default()
            },
        }
        .build();
        assert_eq!(
            classify(f6.as_slice(), smtp_port),
            Verdict::NonFirstFragment
        );
    }

    #[test]
    fn every_truncation_is_malformed_until_the_tcp_header_is_complete() {
        let ext = [Ipv6Ext::HopByHop { len: 1 }];
        let opts = [1u8, 1, 1, 0];
        let frames = [
            TcpFrame {
                payload: b"DATA\r\n",
                options: &[2, 4, 5, 0xb4],
                envelope: Envelope {
                    vlans: &[10, 20],
                    ipv4_options: &opts,
                    ..Envelope::default()
                },
                ..tcp("198.18.0.1:40000", "198.18.0.2:25")
            }
            .build(),
            TcpFrame {
                payload: b"DATA\r\n",
                envelope: Envelope {
                    vlans: &[10],
                    ipv6_ext: &ext,
                    ..Envelope::default()
                },
                ..tcp("[2001:db8::1]:40000", "[2001:db8::2]:25")
            }
            .build(),
        ];
        for f in &frames {
            let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
            let hdr_end = loc.l4_offset + usize::from(f[loc.l4_offset + 12] >> 4) * 4;
            for cut in 0..f.len() {
                let v = classify(&f[..cut], smtp_port);
                if cut < hdr_end {
                    assert!(matches!(v, Verdict::Malformed(_)), "cut {cut}: {v:?}");
                } else {
                    assert_eq!(v, Verdict::Smtp, "cut {cut}");
                }
            }
        }
    }

    #[test]
    fn broken_headers_are_malformed() {
        let good = tcp("198.18.0.1:40000", "198.18.0.2:25").build();
        let mut bad_ver = good.clone();
        bad_ver[14] = 0x65;
        assert_eq!(
            classify(bad_ver.as_slice(), smtp_port),
            Verdict::Malformed(ParseError::BadIpVersion)
        );
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(
            classify(bad_ihl.as_slice(), smtp_port),
            Verdict::Malformed(ParseError::BadIpv4HeaderLength)
        );
        let mut bad_doff = good.clone();
        bad_doff[14 + 20 + 12] = 0x40;
        assert_eq!(
            classify(bad_doff.as_slice(), smtp_port),
            Verdict::Malformed(ParseError::BadTcpHeaderLength)
        );
        let six = tcp("[2001:db8::1]:40000", "[2001:db8::2]:25").build();
        let mut bad6 = six.clone();
        bad6[14] = 0x40;
        assert_eq!(
            classify(bad6.as_slice(), smtp_port),
            Verdict::Malformed(ParseError::BadIpVersion)
        );
    }

    #[test]
    fn raw_ip_walk_starts_at_the_given_offset() {
        let f = tcp("198.18.0.1:40000", "198.18.0.2:25").build();
        let raw = &f[14..];
        let loc = locate_l4_from_ethertype(raw, ETH_P_IPV4, 0).unwrap();
        assert_eq!((loc.l3_offset, loc.l4_offset), (0, 20));
    }

    #[test]
    fn checksums_verify() {
        for (s, d) in [
            ("198.18.0.1:40000", "198.18.0.2:25"),
            ("[2001:db8::1]:40000", "[2001:db8::2]:25"),
        ] {
            let f = TcpFrame {
                payload: b"MAIL FROM:<a@b>\r\n",
                options: &[1, 1, 1],
                ..tcp(s, d)
            }
            .build();
            let loc = locate_l4_from_ethernet(f.as_slice()).unwrap();
            let (src, dst) = (v4(s).ip(), v4(d).ip());
            assert!(checksum_ok(src, dst, IPPROTO_TCP, &f[loc.l4_offset..]));
            let mut broken = f.clone();
            let last = broken.len() - 1;
            broken[last] ^= 0x01;
            assert!(!checksum_ok(
                src,
                dst,
                IPPROTO_TCP,
                &broken[loc.l4_offset..]
            ));
            if loc.ip_version == 4 {
                assert_eq!(fold(sum16(0, &f[14..34])), 0xffff, "IPv4 header checksum");
            }
        }
        let u = UdpFrame::new(v4("198.18.0.1:53"), v4("198.18.0.2:53"), b"abc").build();
        assert!(checksum_ok(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            IPPROTO_UDP,
            &u[34..]
        ));
    }
}
