//! Internet checksums (RFC 1071) for IPv4 headers and TCP segments.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to
/// `acc` (not folded). Sums 32-bit words into a 64-bit accumulator (the
/// same value modulo 0xffff, as 2^16 ≡ 1), a loop the compiler vectorises:
/// the checksum is on the per-packet path.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    let mut wide: u64 = 0;
    for w in &mut words {
        if let [a, b, c, d] = w {
            wide += u64::from(u32::from_be_bytes([*a, *b, *c, *d]));
        }
    }
    // `wide` overflows only past 16 GiB of data; a segment is under 64 KiB.
    let mut acc = acc.wrapping_add((wide & 0xffff_ffff) + (wide >> 32));
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        if let [a, b] = p {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
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
