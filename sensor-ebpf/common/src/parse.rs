//! The header walk that decides whether a frame is SMTP, shared by the XDP
//! program and userspace.
//!
//! One implementation, two byte sources: [`PacketBytes`] is a bounds-checked
//! byte reader, implemented for `[u8]` here and for the XDP context in
//! `sensor-ebpf`. The XDP program calls [`classify`]; userspace decoders call
//! [`locate_l4_from_ethernet`] / [`locate_l4_from_ethertype`] and read
//! addresses and TCP fields themselves. Both therefore agree on which frames
//! are SMTP, and the unit tests below test the kernel's rules.
//!
//! Supported: Ethernet II, up to [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad tags,
//! IPv4 with any header length, IPv6 with up to [`MAX_IPV6_EXT_HEADERS`]
//! hop-by-hop / routing / destination-options / fragment headers, TCP.
//! Everything is written so the BPF verifier can follow it: every offset is
//! bounded, every loop has a constant bound, and the functions are
//! `#[inline(always)]` so no packet pointer crosses a BPF function call.
//!
//! Read order matters in the kernel: within a header, fixed-offset fields
//! are read before a variable-length end check (IPv4 IHL, IPv6 extension
//! length, TCP data offset). Otherwise LLVM drops the fixed-offset bounds
//! checks as implied by the variable one, and the verifier, which tracks
//! them on different registers, rejects the program.

/// Ethernet header length (no FCS).
pub const ETH_HLEN: usize = 14;
/// EtherType IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q (customer) VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (service, "QinQ" outer) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88A8;
/// Pre-standard QinQ outer tag EtherType still seen on some switches.
pub const ETH_P_QINQ_LEGACY: u16 = 0x9100;
/// Length of one VLAN tag (TCI + inner EtherType).
pub const VLAN_HLEN: usize = 4;
/// VLAN tags the walk steps over; a frame with more is not parsed further.
pub const MAX_VLAN_TAGS: usize = 2;

/// IPv4 header length without options.
pub const IPV4_MIN_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// Extension headers the IPv6 walk steps over before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 hop-by-hop options header.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// IPv6 routing header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// IPv6 destination options header.
pub const IPPROTO_DSTOPTS: u8 = 60;

/// TCP header length without options.
pub const TCP_MIN_HLEN: usize = 20;

/// Bounds-checked byte access: `[u8]` in userspace, the XDP context in the
/// kernel. Every read returns `None` past the end instead of panicking.
pub trait PacketBytes {
    /// Number of bytes in the frame.
    fn len(&self) -> usize;

    /// True for an empty frame.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte at `off`.
    fn u8_at(&self, off: usize) -> Option<u8>;

    /// The big-endian (network order) `u16` at `off`.
    fn be16_at(&self, off: usize) -> Option<u16>;
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.get(off).copied()
    }

    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        let b = self.get(off..off.checked_add(2)?)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
}

/// Where a frame's IP fragment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    None,
    /// First fragment: the L4 header is present.
    First,
    /// A later fragment: no L4 header; `l4_offset` points at the payload.
    NonFirst,
}

/// Result of the header walk: where the layers are and what the L4 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Location {
    /// 4 or 6.
    pub ip_version: u8,
    /// Offset of the IP header.
    pub l3_offset: usize,
    /// Offset of the L4 header (after IPv4 options / IPv6 extension headers).
    pub l4_offset: usize,
    /// IP protocol of the L4 header (`IPPROTO_TCP`, ...).
    pub l4_proto: u8,
    /// Fragment position of the datagram.
    pub fragment: Fragment,
    /// VLAN tags stepped over (0..=[`MAX_VLAN_TAGS`]).
    pub vlan_tags: u8,
}

/// Why the walk stopped before an L4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The frame ends inside the Ethernet header or a VLAN tag.
    TruncatedEthernet,
    /// The EtherType is neither IPv4 nor IPv6 (ARP, LLDP, ...): not an error
    /// in the traffic, just nothing for us.
    NotIp,
    /// More VLAN tags than [`MAX_VLAN_TAGS`]; not parsed further.
    TooManyVlanTags,
    /// The frame ends inside the IP header (or its options).
    TruncatedIp,
    /// The IP version nibble does not match the EtherType.
    BadIpVersion,
    /// IPv4 header length below 20 bytes.
    BadIpv4HeaderLength,
    /// The frame ends inside an IPv6 extension header.
    TruncatedIpv6ExtHeader,
    /// More IPv6 extension headers than [`MAX_IPV6_EXT_HEADERS`].
    TooManyIpv6ExtHeaders,
    /// The frame ends inside the TCP header.
    TruncatedTcp,
    /// TCP data offset below 5 words.
    BadTcpHeaderLength,
}

impl ParseError {
    /// True when the headers are broken (counted as malformed); false when
    /// the frame is simply not something the sensor parses.
    #[inline(always)]
    pub const fn is_malformed(self) -> bool {
        !matches!(self, ParseError::NotIp | ParseError::TooManyVlanTags)
    }

    /// Short stable name, for logs and anomaly counters (Zeek's weird name
    /// where Zeek has one: an IP header the capture cut is `truncated_IP`,
    /// the same counter as a datagram cut short).
    pub const fn as_str(self) -> &'static str {
        match self {
            ParseError::TruncatedEthernet => "truncated_ethernet",
            ParseError::NotIp => "not_ip",
            ParseError::TooManyVlanTags => "too_many_vlan_tags",
            ParseError::TruncatedIp => "truncated_IP",
            ParseError::BadIpVersion => "bad_ip_version",
            ParseError::BadIpv4HeaderLength => "bad_ipv4_header_length",
            ParseError::TruncatedIpv6ExtHeader => "truncated_ipv6_ext_header",
            ParseError::TooManyIpv6ExtHeaders => "too_many_ipv6_ext_headers",
            ParseError::TruncatedTcp => "truncated_tcp",
            ParseError::BadTcpHeaderLength => "bad_tcp_header_length",
        }
    }
}

/// What the XDP program does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A TCP segment from or to a watched port: redirect to userspace.
    Smtp,
    /// Anything else that parsed (or is not IP): pass, or drop on a tap.
    NotSmtp,
    /// A non-first IP fragment: no ports to look at; always passed.
    NonFirstFragment,
    /// Broken headers: counted, then handled like [`Verdict::NotSmtp`].
    Malformed(ParseError),
}

/// Walks Ethernet, VLAN tags and IP to the L4 header.
#[inline(always)]
pub fn locate_l4_from_ethernet<B: PacketBytes + ?Sized>(p: &B) -> Result<L4Location, ParseError> {
    let mut ethertype = p.be16_at(12).ok_or(ParseError::TruncatedEthernet)?;
    let mut off = ETH_HLEN;
    let mut tags: u8 = 0;
    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan_ethertype(ethertype) {
            break;
        }
        ethertype = p.be16_at(off + 2).ok_or(ParseError::TruncatedEthernet)?;
        off += VLAN_HLEN;
        tags += 1;
    }
    if is_vlan_ethertype(ethertype) {
        return Err(ParseError::TooManyVlanTags);
    }
    let mut loc = locate_l4_from_ethertype(p, ethertype, off)?;
    loc.vlan_tags = tags;
    Ok(loc)
}

/// Walks the IP header found at `l3_offset` (for captures whose link layer
/// is not Ethernet: Linux cooked, raw IP) to the L4 header.
#[inline(always)]
pub fn locate_l4_from_ethertype<B: PacketBytes + ?Sized>(
    p: &B,
    ethertype: u16,
    l3_offset: usize,
) -> Result<L4Location, ParseError> {
    match ethertype {
        ETH_P_IPV4 => locate_l4_ipv4(p, l3_offset),
        ETH_P_IPV6 => locate_l4_ipv6(p, l3_offset),
        _ => Err(ParseError::NotIp),
    }
}

#[inline(always)]
fn is_vlan_ethertype(t: u16) -> bool {
    t == ETH_P_8021Q || t == ETH_P_8021AD || t == ETH_P_QINQ_LEGACY
}

#[inline(always)]
fn is_ipv6_ext_header(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
    )
}

#[inline(always)]
fn locate_l4_ipv4<B: PacketBytes + ?Sized>(p: &B, l3: usize) -> Result<L4Location, ParseError> {
    let vihl = p.u8_at(l3).ok_or(ParseError::TruncatedIp)?;
    if vihl >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let hlen = usize::from(vihl & 0x0f) * 4;
    if hlen < IPV4_MIN_HLEN {
        return Err(ParseError::BadIpv4HeaderLength);
    }
    let frag = p.be16_at(l3 + 6).ok_or(ParseError::TruncatedIp)?;
    let proto = p.u8_at(l3 + 9).ok_or(ParseError::TruncatedIp)?;
    // The last header byte must be present: options included. Checked
    // after the fixed-offset reads (see the module note on read order).
    p.u8_at(l3 + hlen - 1).ok_or(ParseError::TruncatedIp)?;
    let fragment = if frag & 0x1fff != 0 {
        Fragment::NonFirst
    } else if frag & 0x2000 != 0 {
        Fragment::First
    } else {
        Fragment::None
    };
    Ok(L4Location {
        ip_version: 4,
        l3_offset: l3,
        l4_offset: l3 + hlen,
        l4_proto: proto,
        fragment,
        vlan_tags: 0,
    })
}

#[inline(always)]
fn locate_l4_ipv6<B: PacketBytes + ?Sized>(p: &B, l3: usize) -> Result<L4Location, ParseError> {
    let v = p.u8_at(l3).ok_or(ParseError::TruncatedIp)?;
    if v >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let mut next = p.u8_at(l3 + 6).ok_or(ParseError::TruncatedIp)?;
    p.u8_at(l3 + IPV6_HLEN - 1).ok_or(ParseError::TruncatedIp)?;
    let mut off = l3 + IPV6_HLEN;
    let mut fragment = Fragment::None;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext_header(next) {
            return Ok(L4Location {
                ip_version: 6,
                l3_offset: l3,
                l4_offset: off,
                l4_proto: next,
                fragment,
                vlan_tags: 0,
            });
        }
        // Every extension header starts with next-header and a length byte.
        let this = next;
        next = p.u8_at(off).ok_or(ParseError::TruncatedIpv6ExtHeader)?;
        let len_byte = p.u8_at(off + 1).ok_or(ParseError::TruncatedIpv6ExtHeader)?;
        let hdr_len = if this == IPPROTO_FRAGMENT {
            let offset_flags = p
                .be16_at(off + 2)
                .ok_or(ParseError::TruncatedIpv6ExtHeader)?;
            fragment = if offset_flags >> 3 != 0 {
                Fragment::NonFirst
            } else {
                Fragment::First
            };
            8
        } else {
            (usize::from(len_byte) + 1) * 8
        };
        // The whole extension header must be present.
        p.u8_at(off + hdr_len - 1)
            .ok_or(ParseError::TruncatedIpv6ExtHeader)?;
        off += hdr_len;
        if fragment == Fragment::NonFirst {
            // What follows is the middle of a datagram: no header to read.
            return Ok(L4Location {
                ip_version: 6,
                l3_offset: l3,
                l4_offset: off,
                l4_proto: next,
                fragment,
                vlan_tags: 0,
            });
        }
    }
    match next {
        n if is_ipv6_ext_header(n) => Err(ParseError::TooManyIpv6ExtHeaders),
        _ => Ok(L4Location {
            ip_version: 6,
            l3_offset: l3,
            l4_offset: off,
            l4_proto: next,
            fragment,
            vlan_tags: 0,
        }),
    }
}

/// Source and destination port of the TCP header at `l4_offset`, after
/// checking that the whole header (options included) is in the frame.
#[inline(always)]
pub fn tcp_ports<B: PacketBytes + ?Sized>(
    p: &B,
    l4_offset: usize,
) -> Result<(u16, u16), ParseError> {
    let src = p.be16_at(l4_offset).ok_or(ParseError::TruncatedTcp)?;
    let dst = p.be16_at(l4_offset + 2).ok_or(ParseError::TruncatedTcp)?;
    let doff = p.u8_at(l4_offset + 12).ok_or(ParseError::TruncatedTcp)? >> 4;
    let hlen = usize::from(doff) * 4;
    if hlen < TCP_MIN_HLEN {
        return Err(ParseError::BadTcpHeaderLength);
    }
    p.u8_at(l4_offset + hlen - 1)
        .ok_or(ParseError::TruncatedTcp)?;
    Ok((src, dst))
}

/// A TCP segment from or to a watched port, as the walk found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtpSegment {
    pub loc: L4Location,
    pub sport: u16,
    pub dport: u16,
}

/// The walk of the XDP program: the segment when the frame is a TCP
/// segment whose source or destination port `is_smtp_port` accepts, else
/// what to do with the frame.
#[inline(always)]
pub fn smtp_segment<B: PacketBytes + ?Sized>(
    p: &B,
    is_smtp_port: impl Fn(u16) -> bool,
) -> Result<SmtpSegment, Verdict> {
    let loc = match locate_l4_from_ethernet(p) {
        Ok(loc) => loc,
        Err(e) if e.is_malformed() => return Err(Verdict::Malformed(e)),
        Err(_) => return Err(Verdict::NotSmtp),
    };
    if loc.fragment == Fragment::NonFirst {
        return Err(Verdict::NonFirstFragment);
    }
    if loc.l4_proto != IPPROTO_TCP {
        return Err(Verdict::NotSmtp);
    }
    match tcp_ports(p, loc.l4_offset) {
        Ok((sport, dport)) if is_smtp_port(sport) || is_smtp_port(dport) => {
            Ok(SmtpSegment { loc, sport, dport })
        }
        Ok(_) => Err(Verdict::NotSmtp),
        Err(e) => Err(Verdict::Malformed(e)),
    }
}

/// What the XDP program does with an Ethernet frame: SMTP when it is a TCP
/// segment whose source or destination port `is_smtp_port` accepts.
#[inline(always)]
pub fn classify<B: PacketBytes + ?Sized>(p: &B, is_smtp_port: impl Fn(u16) -> bool) -> Verdict {
    match smtp_segment(p, is_smtp_port) {
        Ok(_) => Verdict::Smtp,
        Err(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_are_bounds_checked() {
        let b: &[u8] = &[0x12, 0x34, 0x56];
        assert_eq!(b.u8_at(2), Some(0x56));
        assert_eq!(b.u8_at(3), None);
        assert_eq!(b.be16_at(1), Some(0x3456));
        assert_eq!(b.be16_at(2), None);
        assert_eq!(b.be16_at(usize::MAX), None);
        assert!(!PacketBytes::is_empty(b));
    }

    #[test]
    fn short_frames_are_malformed_not_panics() {
        for len in 0..14 {
            let f = [0u8; 14];
            assert_eq!(
                classify(&f[..len], |_| true),
                Verdict::Malformed(ParseError::TruncatedEthernet)
            );
        }
        // An IPv4 EtherType with nothing after it.
        let mut f = [0u8; 14];
        f[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        assert_eq!(
            classify(&f[..], |_| true),
            Verdict::Malformed(ParseError::TruncatedIp)
        );
    }

    #[test]
    fn only_header_errors_count_as_malformed() {
        assert!(!ParseError::NotIp.is_malformed());
        assert!(!ParseError::TooManyVlanTags.is_malformed());
        assert!(ParseError::TruncatedTcp.is_malformed());
        assert_eq!(ParseError::TruncatedTcp.as_str(), "truncated_tcp");
    }
}
