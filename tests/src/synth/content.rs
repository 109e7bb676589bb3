//! Attachment content for MIME tests: bytes that sniff as no text, and
//! their base64 as a mail body carries it.

use base64::Engine;

/// Bytes that look like no text: every value, in a scrambled order
/// (xorshift from `seed`), the same for the same arguments.
pub fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Base64 of `bytes` (standard alphabet) in 76-character lines joined by
/// CRLF, without a line end after the last.
pub fn base64_lines(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    b64.as_bytes()
        .chunks(76)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_76_characters_and_decode_back() {
        let b = binary(1000, 7);
        let text = base64_lines(&b);
        assert!(text.split("\r\n").all(|l| l.len() <= 76));
        let joined: String = text.split("\r\n").collect();
        let back = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        assert_eq!(back, b);
    }
}
