//! Writes generated frames to a classic pcap file (microsecond timestamps,
//! Ethernet link type), the input of the golden tests and of tcpreplay in
//! the live tests.
//!
//! Serialisation is pcap-parser's (`serialize` feature): the same crate the
//! sensor reads captures with, so writer and reader agree on the format.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use pcap_parser::{LegacyPcapBlock, Linktype, PcapHeader, ToVec};
use smtp_sensor::net::Ts;

/// Largest frame a record may hold; also the file's snaplen.
pub const SNAPLEN: u32 = 65_535;

/// Why a pcap could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PcapWriteError {
    #[error("cannot write pcap {path}: {source}; check the directory exists and is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise a pcap record for {path}: {detail}")]
    Serialize { path: PathBuf, detail: String },
    #[error("frame of {len} bytes is over the snaplen {SNAPLEN}; build a smaller frame")]
    FrameTooLarge { len: usize },
}

/// A pcap file being written. Records are buffered; call [`finish`] to
/// flush and see write errors (dropping flushes too, ignoring errors).
///
/// [`finish`]: PcapWriter::finish
pub struct PcapWriter {
    out: BufWriter<File>,
    path: PathBuf,
    records: u64,
}

impl PcapWriter {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, PcapWriteError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| PcapWriteError::Io {
            path: path.clone(),
            source,
        };
        let file = File::create(&path).map_err(io)?;
        let mut out = BufWriter::new(file);
        let mut header = PcapHeader::new();
        header.snaplen = SNAPLEN;
        header.network = Linktype::ETHERNET;
        let bytes = header.to_vec_raw().map_err(|e| PcapWriteError::Serialize {
            path: path.clone(),
            detail: format!("{e:?}"),
        })?;
        out.write_all(&bytes).map_err(io)?;
        Ok(PcapWriter {
            out,
            path,
            records: 0,
        })
    }

    /// Appends one frame captured at `ts`.
    pub fn write(&mut self, ts: Ts, frame: &[u8]) -> Result<(), PcapWriteError> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|l| *l <= SNAPLEN)
            .ok_or(PcapWriteError::FrameTooLarge { len: frame.len() })?;
        let us = ts.micros();
        let block = LegacyPcapBlock {
            ts_sec: u32::try_from(us / 1_000_000).unwrap_or(u32::MAX),
            ts_usec: (us % 1_000_000) as u32,
            caplen: len,
            origlen: len,
            data: frame,
        };
        let bytes = block.to_vec_raw().map_err(|e| PcapWriteError::Serialize {
            path: self.path.clone(),
            detail: format!("{e:?}"),
        })?;
        self.out
            .write_all(&bytes)
            .map_err(|source| PcapWriteError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the file; returns the number of records.
    pub fn finish(mut self) -> Result<u64, PcapWriteError> {
        self.out.flush().map_err(|source| PcapWriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.records)
    }
}

/// Writes `frames` to `path` in one go; returns the number of records.
pub fn write_pcap<'a>(
    path: impl AsRef<Path>,
    frames: impl IntoIterator<Item = (Ts, &'a [u8])>,
) -> Result<u64, PcapWriteError> {
    let mut w = PcapWriter::create(path)?;
    for (ts, f) in frames {
        w.write(ts, f)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};

    #[test]
    fn written_file_reads_back_with_same_frames_and_times() {
        let dir = std::env::temp_dir().join(format!("synth-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let frames: Vec<(Ts, Vec<u8>)> = vec![
            (Ts::from_micros(1_700_000_000_123_456), vec![1u8; 60]),
            (Ts::from_micros(1_700_000_001_000_001), vec![2u8; 1514]),
        ];
        let n = write_pcap(&path, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
        assert_eq!(n, 2);

        let file = File::open(&path).unwrap();
        let mut reader = LegacyPcapReader::new(65536, file).unwrap();
        let mut got = Vec::new();
        loop {
            match reader.next() {
                Ok((off, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            assert_eq!(h.network, Linktype::ETHERNET);
                        }
                        PcapBlockOwned::Legacy(b) => got.push((
                            u64::from(b.ts_sec) * 1_000_000 + u64::from(b.ts_usec),
                            b.data.to_vec(),
                        )),
                        PcapBlockOwned::NG(_) => panic!("unexpected pcapng block"),
                    }
                    reader.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
                Err(e) => panic!("read error {e:?}"),
            }
        }
        assert_eq!(got.len(), 2);
        for ((ts, f), (gts, gf)) in frames.iter().zip(&got) {
            assert_eq!(ts.micros(), *gts);
            assert_eq!(f, gf);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oversized_frame_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("synth-pcap-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = PcapWriter::create(dir.join("big.pcap")).unwrap();
        let big = vec![0u8; SNAPLEN as usize + 1];
        assert!(matches!(
            w.write(Ts::from_secs(1), &big),
            Err(PcapWriteError::FrameTooLarge { .. })
        ));
        assert_eq!(w.records(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
