//! Decoder tests over hand-built frames (the synthesiser in `tests/` covers
//! whole sessions; these pin down single header layouts).

use super::*;

fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], payload: &[u8], ip_opts: &[u8]) -> Vec<u8> {
    let ihl = 20 + ip_opts.len();
    let total = ihl + 20 + payload.len();
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(ip_opts);
    let c = checksum::fold(checksum::sum(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = tcp_header(payload);
    let pseudo = checksum::sum(&dst, checksum::sum(&src, 0)) + 6 + tcp.len() as u64;
    let c = checksum::fold(checksum::sum(&tcp, pseudo));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

fn tcp_header(payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&25u16.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&2000u32.to_be_bytes());
    t.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

fn ipv6_tcp(payload: &[u8]) -> Vec<u8> {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    // One hop-by-hop extension header (8 bytes) before TCP.
    let mut tcp = tcp_header(payload);
    let pseudo =
        checksum::sum(&dst.octets(), checksum::sum(&src.octets(), 0)) + 6 + tcp.len() as u64;
    let c = checksum::fold(checksum::sum(&tcp, pseudo));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend_from_slice(&tcp);
    ip
}

/// An Ethernet/IPv4/TCP frame from 198.18.0.1:40000 to 198.18.0.2:25
/// carrying `payload`, checksums right (for tests elsewhere in the crate).
pub(crate) fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    ether(
        0x0800,
        &[],
        &ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], payload, &[]),
    )
}

/// `ethertype`, then one VLAN tag (TCI + next type) per entry of `inner`.
fn ether(ethertype: u16, inner: &[u16], l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    for &t in inner {
        f.extend_from_slice(&[0, 7]);
        f.extend_from_slice(&t.to_be_bytes());
    }
    f.extend_from_slice(l3);
    f
}

fn tcp(d: Decoded<'_>) -> Packet<'_> {
    match d {
        Decoded::Tcp(p) => p,
        other => panic!("not tcp: {other:?}"),
    }
}

const OPTS: DecodeOptions = DecodeOptions {
    verify_checksums: true,
};

#[test]
fn ethernet_ipv4_with_padding_and_options() {
    let ip = ipv4_tcp(
        [198, 18, 0, 1],
        [198, 18, 0, 2],
        b"EHLO x\r\n",
        &[1, 1, 1, 0],
    );
    let mut f = ether(0x0800, &[], &ip);
    f.extend_from_slice(&[0u8; 6]); // Ethernet padding after the datagram
    let p = tcp(decode(&f, LinkType::Ethernet, Ts(7), OPTS));
    assert_eq!(p.src, "198.18.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(p.dst, "198.18.0.2".parse::<IpAddr>().unwrap());
    assert_eq!((p.sport, p.dport, p.seq, p.ack), (40000, 25, 1000, 2000));
    assert_eq!(p.payload, b"EHLO x\r\n");
    assert!(p.flags.ack() && !p.flags.syn());
    assert!(!p.bad_ip_checksum && !p.bad_tcp_checksum && !p.truncated);
}

#[test]
fn qinq_and_ipv6_extension_header() {
    let f = ether(0x88a8, &[0x8100, 0x86dd], &ipv6_tcp(b"hi"));
    let p = tcp(decode(&f, LinkType::Ethernet, Ts(1), OPTS));
    assert_eq!(p.vlan_tags, 2);
    assert_eq!(p.payload, b"hi");
    assert_eq!(p.dst, "2001:db8::2".parse::<IpAddr>().unwrap());
    assert!(!p.bad_tcp_checksum);
}

#[test]
fn bad_checksums_are_flagged_not_dropped() {
    let mut ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"data", &[]);
    let last = ip.len() - 1;
    ip[last] ^= 0xff;
    ip[8] = 63; // TTL change breaks the IP header checksum
    let f = ether(0x0800, &[], &ip);
    let p = tcp(decode(&f, LinkType::Ethernet, Ts(1), OPTS));
    assert!(p.bad_ip_checksum && p.bad_tcp_checksum);
    let p = tcp(decode(
        &f,
        LinkType::Ethernet,
        Ts(1),
        DecodeOptions {
            verify_checksums: false,
        },
    ));
    assert!(!p.bad_ip_checksum && !p.bad_tcp_checksum);
}

#[test]
fn other_link_types() {
    let ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"x", &[]);
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
    sll.extend_from_slice(&0x0800u16.to_be_bytes());
    sll.extend_from_slice(&ip);
    assert_eq!(
        tcp(decode(&sll, LinkType::LinuxSll, Ts(1), OPTS)).payload,
        b"x"
    );
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    assert_eq!(
        tcp(decode(&sll2, LinkType::LinuxSll2, Ts(1), OPTS)).payload,
        b"x"
    );
    assert_eq!(tcp(decode(&ip, LinkType::RawIp, Ts(1), OPTS)).payload, b"x");
    let v6 = ipv6_tcp(b"y");
    assert_eq!(tcp(decode(&v6, LinkType::RawIp, Ts(1), OPTS)).payload, b"y");
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    assert_eq!(
        tcp(decode(&null, LinkType::Null, Ts(1), OPTS)).payload,
        b"x"
    );
    let mut null6 = 30u32.to_le_bytes().to_vec();
    null6.extend_from_slice(&v6);
    assert_eq!(
        tcp(decode(&null6, LinkType::Null, Ts(1), OPTS)).payload,
        b"y"
    );
    let mut lo = 2u32.to_be_bytes().to_vec();
    lo.extend_from_slice(&ip);
    assert_eq!(tcp(decode(&lo, LinkType::Loop, Ts(1), OPTS)).payload, b"x");
}

#[test]
fn fragments_and_truncation() {
    let mut ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"abcdef", &[]);
    ip[6] = 0x20; // more fragments
    let f = ether(0x0800, &[], &ip);
    assert!(matches!(
        decode(&f, LinkType::Ethernet, Ts(1), OPTS),
        Decoded::Anomaly(DecodeAnomaly::Fragment)
    ));
    let ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"abcdef", &[]);
    let f = ether(0x0800, &[], &ip);
    let cut = &f[..f.len() - 2];
    let p = tcp(decode(cut, LinkType::Ethernet, Ts(1), OPTS));
    assert!(p.truncated);
    assert_eq!(p.payload, b"abcd");
    assert!(
        !p.bad_tcp_checksum,
        "incomplete segments are not checksummed"
    );
    // Cut inside the IP header: the same counter as a datagram cut short
    // (Zeek's `truncated_IP`), not a second spelling of it.
    let header_cut = &f[..14 + 10];
    let Decoded::Anomaly(a) = decode(header_cut, LinkType::Ethernet, Ts(1), OPTS) else {
        panic!("a cut IP header is an anomaly");
    };
    assert_eq!(a.name(), DecodeAnomaly::TruncatedPayload.name());
}

#[test]
fn never_panics_on_any_prefix_or_garbage() {
    let ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"payload", &[1, 1, 1, 0]);
    let frames = [
        ether(0x8100, &[0x0800], &ip),
        ether(0x86dd, &[], &ipv6_tcp(b"z")),
        ip.clone(),
    ];
    let links = LinkType::ALL;
    for f in &frames {
        for n in 0..=f.len() {
            for &l in &links {
                let _ = decode(&f[..n], l, Ts(0), OPTS);
            }
        }
        // Flip every byte in turn.
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0xa5;
            for &l in &links {
                let _ = decode(&g, l, Ts(0), OPTS);
            }
        }
    }
}

#[test]
fn ip_length_shorter_than_headers() {
    let mut ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"", &[]);
    ip[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert!(matches!(
        decode(&ip, LinkType::RawIp, Ts(1), OPTS),
        Decoded::Anomaly(DecodeAnomaly::BadIpLength)
    ));
}

#[test]
fn non_tcp_and_non_ip_are_ignored() {
    let mut ip = ipv4_tcp([198, 18, 0, 1], [198, 18, 0, 2], b"", &[]);
    ip[9] = 17;
    assert!(matches!(
        decode(&ip, LinkType::RawIp, Ts(1), OPTS),
        Decoded::Ignored
    ));
    let arp = ether(0x0806, &[], &[0u8; 28]);
    assert!(matches!(
        decode(&arp, LinkType::Ethernet, Ts(1), OPTS),
        Decoded::Ignored
    ));
}

#[test]
fn port_sets_hold_exactly_their_ports() {
    let set = super::PortSet::new(&[25, 587, 0, 65535]);
    for p in 0..=u16::MAX {
        assert_eq!(set.contains(p), [25, 587, 0, 65535].contains(&p), "{p}");
    }
    assert_eq!(set.as_slice(), [25, 587, 0, 65535]);
    assert!(!super::PortSet::new(&[]).contains(25));
}
