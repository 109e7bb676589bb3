//! Internet checksums (RFC 1071) for IPv4 headers and TCP segments.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to
/// `acc` (not folded, but kept far from overflow).
///
/// The sum is byte-order independent (RFC 1071 §2(B)): it is taken over
/// native little-endian 32-bit words into 64-bit accumulators with no byte
/// swapping on the way (plain loads and adds, which the compiler turns
/// into vector code even for baseline x86-64), folded to 16 bits and
/// swapped once at the end. The checksum is on the per-packet path of every
/// offline SMTP segment.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    // Four lanes so the adds do not wait on each other; a lane overflows
    // only past 2^32 words (16 GiB), a segment is under 64 KiB.
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            if let Ok(w) = <[u8; 4]>::try_from(w) {
                *lane += u64::from(u32::from_le_bytes(w));
            }
        }
    }
    let mut wide: u64 = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        if let Ok(w) = <[u8; 4]>::try_from(w) {
            wide += u64::from(u32::from_le_bytes(w));
        }
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for p in &mut pairs {
        if let [a, b] = p {
            wide += u64::from(u16::from_le_bytes([*a, *b]));
        }
    }
    // An odd last byte is the high byte of a big-endian word: in the
    // little-endian view, the low byte of its word.
    if let [last] = pairs.remainder() {
        wide += u64::from(*last);
    }
    // 2^32 ≡ 2^16 ≡ 1 (mod 0xffff): fold 64 → 16 bits.
    let mut x = (wide & 0xffff_ffff) + (wide >> 32);
    while x > 0xffff {
        x = (x & 0xffff) + (x >> 16);
    }
    acc + u64::from((x as u16).swap_bytes())
}

/// Folds a sum to 16 bits and complements it: 0 means "checks out" when the
/// summed data includes its checksum field.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The pseudo-header words of an address, summed.
fn addr_sum(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(v4) => {
            let x = u64::from(u32::from(v4));
            (x >> 16) + (x & 0xffff)
        }
        IpAddr::V6(v6) => v6.segments().iter().map(|&w| u64::from(w)).sum(),
    }
}

/// Whether a TCP segment (header + payload) checks out with its pseudo
/// header.
pub fn tcp_ok(src: IpAddr, dst: IpAddr, segment: &[u8]) -> bool {
    if src.is_ipv4() != dst.is_ipv4() {
        return false;
    }
    let len = segment.len() as u64;
    let pseudo = addr_sum(src) + addr_sum(dst) + u64::from(super::parse::IPPROTO_TCP) + len;
    fold(sum(segment, pseudo)) == 0
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
    fn carries_of_long_runs_of_ones_fold_correctly() {
        let data = [0xffu8; 1500];
        let mut acc = 0u64;
        for p in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
        }
        assert_eq!(fold(sum(&data, 0)), fold(acc));
        assert_eq!(fold(sum(&data[..1499], 7)), fold(acc - 0xff + 7));
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
