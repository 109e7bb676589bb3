//! Compressed captures for `-r`: a gzip (`.pcap.gz`, several members as
//! `cat a.gz b.gz` makes them included) or zstd (`.pcap.zst`, several
//! frames included) capture is recognised by its magic bytes, whatever its
//! name, and decompressed as it is read.
//!
//! What the file's author controls is bounded: the decompressed stream may
//! be at most [`MAX_RATIO`] times the compressed bytes read so far once it
//! passes [`RATIO_GRACE`] (a decompression bomb ends the run with a clear
//! error, after the records before it were processed), and a zstd frame
//! may not ask for a window above 2^[`ZSTD_WINDOW_LOG_MAX`] bytes (the
//! decoder's memory). Memory stays bounded either way: the stream is
//! decoded in small pieces, never held whole.

use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

/// Largest decompressed/compressed ratio accepted. Real captures compress
/// 3–20× (repetitive synthetic traffic under zstd -19: ≈ 100×); a stream of
/// zeros reaches ≈ 1 000× with gzip (deflate's limit) and 30 000× with zstd.
pub const MAX_RATIO: u64 = 500;
/// Decompressed bytes before the ratio is checked: a small file may expand
/// a lot without costing anything.
pub const RATIO_GRACE: u64 = 64 << 20;
/// zstd window: 128 MiB (zstd's own default limit for streaming).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// How a capture file is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of the file.
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Why decompression stopped, for the run's error message (the pcap
/// reader only reports "read error after byte N").
#[derive(Clone, Debug, Default)]
pub struct DecodeFailure(Arc<OnceLock<String>>);

impl DecodeFailure {
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn set(&self, why: String) {
        let _ = self.0.set(why);
    }
}

/// Counts the compressed bytes read.
struct Counting<R> {
    inner: R,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// The decompressed stream, within the ratio limit.
struct Bounded {
    decoder: Box<dyn Read + Send>,
    compressed: Arc<std::sync::atomic::AtomicU64>,
    out: u64,
    kind: Compression,
    failure: DecodeFailure,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.decoder.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let why = format!("the {} stream is corrupt ({e})", self.kind.name());
                self.failure.set(why.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        };
        self.out += n as u64;
        let compressed = self
            .compressed
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        if self.out > RATIO_GRACE && self.out / compressed > MAX_RATIO {
            let why = format!(
                "the {} stream expands more than {MAX_RATIO} times ({} bytes from {compressed}): refused as a decompression bomb",
                self.kind.name(),
                self.out
            );
            self.failure.set(why.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        Ok(n)
    }
}

/// `input` decompressed as `kind` says (as it is for `None`).
pub fn decompress(
    input: Box<dyn Read + Send>,
    kind: Compression,
    failure: DecodeFailure,
) -> io::Result<Box<dyn Read + Send>> {
    let compressed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting {
        inner: input,
        read: compressed.clone(),
    };
    let decoder: Box<dyn Read + Send> = match kind {
        Compression::None => return Ok(Box::new(counting)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counting)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(counting)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    };
    Ok(Box::new(Bounded {
        decoder,
        compressed,
        out: 0,
        kind,
        failure,
    }))
}

/// Reads up to `n` bytes from the front of `r` (fewer at end of input)
/// and gives back a reader that still yields them first.
pub fn peek(mut r: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    let again = Peeked {
        head: head.clone(),
        pos: 0,
        inner: r,
    };
    Ok((head, Box::new(again)))
}

/// The peeked bytes, then the rest. The read that hands out the peeked
/// bytes also reads on into the rest of the buffer: the pcap reader looks
/// at its first read alone for the file header, which four bytes are not.
struct Peeked {
    head: Vec<u8>,
    pos: usize,
    inner: Box<dyn Read + Send>,
}

impl Read for Peeked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pending = self.head.get(self.pos..).unwrap_or_default();
        if pending.is_empty() {
            return self.inner.read(buf);
        }
        let n = pending.len().min(buf.len());
        let (front, rest) = buf.split_at_mut(n);
        front.copy_from_slice(&pending[..n]);
        self.pos += n;
        if self.pos < self.head.len() || rest.is_empty() {
            return Ok(n);
        }
        // An error here comes back at the next call; these bytes first.
        Ok(n + self.inner.read(rest).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(kind: Compression, data: Vec<u8>) -> (io::Result<Vec<u8>>, DecodeFailure) {
        let failure = DecodeFailure::default();
        let mut r = decompress(Box::new(io::Cursor::new(data)), kind, failure.clone()).unwrap();
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (res, failure)
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(Compression::sniff(&gzip(b"x")), Compression::Gzip);
        let z = zstd::encode_all(&b"x"[..], 3).unwrap();
        assert_eq!(Compression::sniff(&z), Compression::Zstd);
        assert_eq!(
            Compression::sniff(&0xa1b2_c3d4u32.to_le_bytes()),
            Compression::None
        );
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn concatenated_members_and_frames_are_one_stream() {
        let mut g = gzip(b"hello ");
        g.extend(gzip(b"world"));
        assert_eq!(read_all(Compression::Gzip, g).0.unwrap(), b"hello world");
        let mut z = zstd::encode_all(&b"hello "[..], 3).unwrap();
        z.extend(zstd::encode_all(&b"world"[..], 3).unwrap());
        assert_eq!(read_all(Compression::Zstd, z).0.unwrap(), b"hello world");
    }

    #[test]
    fn bombs_are_refused_with_a_reason() {
        // 200 MiB of zeros: ≈ 200 KiB of gzip, ≈ 7 KiB of zstd.
        let zeros = vec![0u8; 200 << 20];
        for (kind, data) in [
            (Compression::Gzip, gzip(&zeros)),
            (Compression::Zstd, zstd::encode_all(&zeros[..], 3).unwrap()),
        ] {
            let (res, failure) = read_all(kind, data);
            match res {
                Ok(v) => panic!("{kind:?}: {} bytes accepted", v.len()),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            }
            let why = failure.get().unwrap();
            assert!(why.contains("decompression bomb"), "{why}");
        }
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let mut g = gzip(&vec![7u8; 100_000]);
        let mid = g.len() / 2;
        g[mid] ^= 0xff;
        g.truncate(g.len() - 4);
        let (res, failure) = read_all(Compression::Gzip, g);
        assert!(res.is_err());
        assert!(failure.get().unwrap().contains("gzip stream is corrupt"));
        let (res, failure) = read_all(
            Compression::Zstd,
            vec![0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff],
        );
        assert!(res.is_err());
        assert!(failure.get().unwrap().contains("zstd"));
    }

    #[test]
    fn a_huge_zstd_window_is_refused() {
        let data = vec![1u8; 1 << 20];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(30).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        let (res, failure) = read_all(Compression::Zstd, z);
        assert!(res.is_err(), "a 1 GiB window was accepted");
        assert!(failure.get().is_some());
    }

    #[test]
    fn peek_gives_the_bytes_back() {
        let (head, mut r) = peek(Box::new(io::Cursor::new(b"abcdef".to_vec())), 4).unwrap();
        assert_eq!(head, b"abcd");
        // One read hands out the peeked bytes and what follows them.
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"abcdef");
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        let (_, mut r) = peek(Box::new(io::Cursor::new(b"abcdef".to_vec())), 4).unwrap();
        let mut small = [0u8; 3];
        assert_eq!(r.read(&mut small).unwrap(), 3);
        let mut all = small.to_vec();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"abcdef");
        let (head, _) = peek(Box::new(io::Cursor::new(b"ab".to_vec())), 4).unwrap();
        assert_eq!(head, b"ab");
    }
}
