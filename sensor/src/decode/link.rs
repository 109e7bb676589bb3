//! Link layers: where the IP header starts for each capture link type, then
//! the shared header walk.

use sensor_common::parse::{self, ETH_P_IPV4, ETH_P_IPV6, L4Location};

use super::DecodeAnomaly;

/// The link types the decoder understands (pcap `LINKTYPE_*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1).
    Ethernet,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1.
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2.
    LinuxSll2,
    /// `LINKTYPE_RAW` (101, also DLT 12/14): a bare IPv4 or IPv6 packet.
    RawIp,
    /// `LINKTYPE_IPV4` (228).
    Ipv4,
    /// `LINKTYPE_IPV6` (229).
    Ipv6,
    /// `LINKTYPE_NULL` (0): BSD loopback, address family in host order.
    Null,
    /// `LINKTYPE_LOOP` (108): OpenBSD loopback, family in network order.
    Loop,
}

impl LinkType {
    /// Every link type, for tests and fuzzing that try each.
    pub const ALL: [LinkType; 8] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Null,
        LinkType::Loop,
    ];

    /// The decoder's link type for a pcap `LINKTYPE_*` number.
    pub fn from_linktype(n: i32) -> Option<LinkType> {
        Some(match n {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }

    /// The pcap `LINKTYPE_*` number (what a pcap writer puts in its header).
    pub const fn linktype(self) -> i32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Null => 0,
            LinkType::Loop => 108,
        }
    }
}

/// BSD address-family values meaning IPv6 (NetBSD/OpenBSD, FreeBSD, macOS).
fn is_af_inet6(v: u32) -> bool {
    matches!(v, 10 | 24 | 28 | 30)
}

/// The EtherType of a bare IP packet, from its version nibble.
fn ethertype_of_ip(frame: &[u8], off: usize) -> Option<u16> {
    match frame.get(off)? >> 4 {
        4 => Some(ETH_P_IPV4),
        6 => Some(ETH_P_IPV6),
        _ => None,
    }
}

/// Finds the L4 header of `frame`. `Ok(None)`: not IP, nothing for us.
pub fn locate(frame: &[u8], link: LinkType) -> Result<Option<L4Location>, DecodeAnomaly> {
    let (ethertype, l3) = match link {
        LinkType::Ethernet => return walk(parse::locate_l4_from_ethernet(frame)),
        LinkType::LinuxSll => {
            let t =
                parse::PacketBytes::be16_at(frame, 14).ok_or(DecodeAnomaly::TruncatedLinkHeader)?;
            (t, 16)
        }
        LinkType::LinuxSll2 => {
            if frame.len() < 20 {
                return Err(DecodeAnomaly::TruncatedLinkHeader);
            }
            let t =
                parse::PacketBytes::be16_at(frame, 0).ok_or(DecodeAnomaly::TruncatedLinkHeader)?;
            (t, 20)
        }
        LinkType::RawIp => match ethertype_of_ip(frame, 0) {
            Some(t) => (t, 0),
            None if frame.is_empty() => return Err(DecodeAnomaly::TruncatedLinkHeader),
            None => return Ok(None),
        },
        LinkType::Ipv4 => (ETH_P_IPV4, 0),
        LinkType::Ipv6 => (ETH_P_IPV6, 0),
        LinkType::Null | LinkType::Loop => {
            let b: [u8; 4] = frame
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(DecodeAnomaly::TruncatedLinkHeader)?;
            let be = u32::from_be_bytes(b);
            let le = u32::from_le_bytes(b);
            // NULL is in the capturing host's order; accept either.
            let fam = if link == LinkType::Loop || be < 256 {
                be
            } else {
                le
            };
            match fam {
                2 => (ETH_P_IPV4, 4),
                f if is_af_inet6(f) => (ETH_P_IPV6, 4),
                _ => return Ok(None),
            }
        }
    };
    walk(parse::locate_l4_from_ethertype(frame, ethertype, l3))
}

fn walk(r: Result<L4Location, parse::ParseError>) -> Result<Option<L4Location>, DecodeAnomaly> {
    match r {
        Ok(loc) => Ok(Some(loc)),
        Err(e) if e.is_malformed() => Err(DecodeAnomaly::Header(e)),
        Err(_) => Ok(None),
    }
}
