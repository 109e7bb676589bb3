//! Classic pcap files as tcpreplay reads them: count the records, copy the
//! first N into a new file (the part of a pass a time-limited replay sent,
//! to compute what the sensor should have logged from it).
//!
//! Streams through a buffer: load captures are hundreds of MB.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Larger records than this mean a corrupt file (or one that is not pcap).
const MAX_RECORD: usize = 256 * 1024;

/// Reads records from a classic pcap file (either byte order, µs or ns).
struct Reader<R> {
    inner: R,
    big_endian: bool,
    header: [u8; 24],
}

impl<R: Read> Reader<R> {
    fn new(mut inner: R) -> Result<Self> {
        let mut header = [0u8; 24];
        inner
            .read_exact(&mut header)
            .context("too short for a pcap file header")?;
        let big_endian = match header[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
            _ => bail!("not a classic pcap file (pcapng is not supported here)"),
        };
        Ok(Reader {
            inner,
            big_endian,
            header,
        })
    }

    /// The next record (16-byte header + data) into `buf`; false at the
    /// end of the file.
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        buf.resize(16, 0);
        match self.inner.read_exact(&mut buf[..16]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let b = [buf[8], buf[9], buf[10], buf[11]];
        let incl = if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        };
        let incl = usize::try_from(incl).unwrap_or(usize::MAX);
        if incl > MAX_RECORD {
            bail!("record of {incl} bytes: corrupt pcap file");
        }
        buf.resize(16 + incl, 0);
        self.inner
            .read_exact(&mut buf[16..])
            .context("pcap file truncated inside a record")?;
        Ok(true)
    }
}

fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Reader::new(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Records in the file.
pub fn records(path: &Path) -> Result<u64> {
    let mut r = open(path)?;
    let mut buf = Vec::new();
    let mut n = 0;
    while r.next(&mut buf)? {
        n += 1;
    }
    Ok(n)
}

/// Writes the first `n` records of `src` to `dst` (fewer when `src` has
/// fewer); returns how many were written.
pub fn write_prefix(src: &Path, dst: &Path, n: u64) -> Result<u64> {
    let mut r = open(src)?;
    let f = File::create(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(&r.header)?;
    let mut buf = Vec::new();
    let mut written = 0;
    while written < n && r.next(&mut buf)? {
        w.write_all(&buf)?;
        written += 1;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", dst.display()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(big_endian: bool, lens: &[u32]) -> Vec<u8> {
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = u32b(0xa1b2_c3d4).to_vec();
        f.extend_from_slice(&[0; 20]);
        for (i, len) in lens.iter().enumerate() {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&u32b(*len));
            f.extend_from_slice(&u32b(*len));
            f.extend(std::iter::repeat_n(i as u8, *len as usize));
        }
        f
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("xtask-pcap-{}-{name}", std::process::id()))
    }

    #[test]
    fn counts_records_in_either_byte_order() {
        for be in [false, true] {
            let p = tmp(&format!("count-{be}"));
            std::fs::write(&p, pcap(be, &[60, 1514, 0])).unwrap();
            assert_eq!(records(&p).unwrap(), 3);
            let _ = std::fs::remove_file(&p);
        }
    }

    #[test]
    fn prefix_is_the_first_records_byte_for_byte() {
        let (src, dst) = (tmp("src"), tmp("dst"));
        std::fs::write(&src, pcap(false, &[60, 70, 80])).unwrap();
        assert_eq!(write_prefix(&src, &dst, 2).unwrap(), 2);
        assert_eq!(std::fs::read(&dst).unwrap(), pcap(false, &[60, 70]));
        assert_eq!(write_prefix(&src, &dst, 9).unwrap(), 3);
        let _ = std::fs::remove_file(&src);
        let _ = std::fs::remove_file(&dst);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let p = tmp("bad");
        std::fs::write(&p, b"0A0D0D0A not pcap at all.").unwrap();
        assert!(records(&p).unwrap_err().to_string().contains("pcap"));
        let mut f = pcap(false, &[100]);
        f.truncate(f.len() - 1);
        std::fs::write(&p, f).unwrap();
        let e = format!("{:#}", records(&p).unwrap_err());
        assert!(e.contains("truncated"), "{e}");
        let _ = std::fs::remove_file(&p);
    }
}
