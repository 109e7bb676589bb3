//! Internet checksums (RFC 1071) for IPv4 headers and TCP segments.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to
/// `acc` (not folded). Processes 8 bytes per step: the checksum is on the
/// per-packet path.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_be_bytes(w);
        acc = acc.wrapping_add(v >> 32).wrapping_add(v & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: 0 means "checks out" when the
/// summed data includes its checksum field.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Whether a TCP segment (header + payload) checks out with its pseudo
/// header.
pub fn tcp_ok(src: IpAddr, dst: IpAddr, segment: &[u8]) -> bool {
    let len = segment.len() as u64;
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum(&d.octets(), sum(&s.octets(), 0)) + u64::from(super::parse::IPPROTO_TCP) + len
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum(&d.octets(), sum(&s.octets(), 0)) + u64::from(super::parse::IPPROTO_TCP) + len
        }
        _ => return false,
    };
    acc = sum(segment, acc);
    fold(acc) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example words.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(!fold(sum(&data, 0)), 0xddf2);
    }

    #[test]
    fn odd_length_and_chunk_boundaries_agree_with_bytewise() {
        let data: Vec<u8> = (0..=200u8).collect();
        for n in 0..data.len() {
            let mut acc = 0u64;
            let mut i = 0;
            while i + 1 < n {
                acc += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
                i += 2;
            }
            if n % 2 == 1 {
                acc += u64::from(data[n - 1]) << 8;
            }
            assert_eq!(fold(sum(&data[..n], 0)), fold(acc), "len {n}");
        }
    }
}
