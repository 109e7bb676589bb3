//! Offline input: frames from a pcap or pcapng file (or standard input),
//! read in a streaming fashion with `pcap-parser` so memory stays constant
//! whatever the file size.
//!
//! A file that cannot be opened or is not a capture is an error naming the
//! file (exit code 2). A capture whose last record is cut short still yields
//! every complete record before it; the cut is reported in the summary and
//! on stderr, and the run counts as having read its input to the end.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, PcapBlockOwned, PcapError};

use crate::decode::LinkType;
use crate::net::Ts;

/// Initial read buffer; grown for larger records up to `MAX_BUFFER`.
const INITIAL_BUFFER: usize = 1 << 20;
/// Largest record accepted (a pcapng block); bigger means a corrupt file.
const MAX_BUFFER: usize = 64 << 20;

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapReadError {
    #[error("cannot open capture file {path}: {source}; check the path and permissions")]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "{path} is not a pcap or pcapng capture ({detail}); give a capture file written by tcpdump, Wireshark or the synth tool"
    )]
    NotACapture { path: PathBuf, detail: String },
    #[error(
        "{path}: corrupt record at byte {offset} ({detail}); the records before it were processed"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{path}: read error after byte {offset}; the records before it were processed")]
    Read { path: PathBuf, offset: u64 },
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct PcapFrame<'a> {
    pub ts: Ts,
    /// `None`: a link type the decoder does not know (counted by the caller).
    pub link: Option<LinkType>,
    pub data: &'a [u8],
    /// Length of the packet on the wire (≥ `data.len()` when the capture
    /// was cut by a snap length).
    pub wire_len: u32,
}

/// What reading the whole file found besides frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub frames: u64,
    pub bytes: u64,
    /// The last record was incomplete (file cut short).
    pub truncated_tail: bool,
    /// pcapng packets naming an interface never described.
    pub unknown_interface: u64,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: Option<LinkType>,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset: i64,
}

/// A streaming capture reader.
pub struct PcapReader {
    reader: Box<dyn PcapReaderIterator + Send>,
    path: PathBuf,
    /// Legacy pcap: link type and nanosecond timestamps.
    legacy: Option<(Option<LinkType>, bool)>,
    interfaces: Vec<Interface>,
    last_ts: Ts,
    buffer: usize,
}

impl PcapReader {
    /// Opens `path`; `-` reads standard input.
    pub fn open(path: &Path) -> Result<PcapReader, PcapReadError> {
        let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            let f = File::open(path).map_err(|source| PcapReadError::Open {
                path: path.to_owned(),
                source,
            })?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(PcapReadError::Open {
                    path: path.to_owned(),
                    source: io::Error::other("is a directory"),
                });
            }
            Box::new(f)
        };
        Self::from_reader(input, path)
    }

    /// Reads a capture from any byte source (`path` names it in errors).
    pub fn from_reader(
        input: Box<dyn Read + Send>,
        path: &Path,
    ) -> Result<PcapReader, PcapReadError> {
        let not = |detail: &str| PcapReadError::NotACapture {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let reader = match pcap_parser::create_reader(INITIAL_BUFFER, input) {
            Ok(r) => r,
            Err(PcapError::Eof) => return Err(not("the file is empty")),
            Err(PcapError::Incomplete(_)) => {
                return Err(not("the file ends inside the file header"));
            }
            Err(PcapError::ReadError) => {
                return Err(PcapReadError::Read {
                    path: path.to_owned(),
                    offset: 0,
                });
            }
            Err(_) => return Err(not("unknown file header")),
        };
        Ok(PcapReader {
            reader,
            path: path.to_owned(),
            legacy: None,
            interfaces: Vec::new(),
            last_ts: Ts(0),
            buffer: INITIAL_BUFFER,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` for every frame in file order until the end of input.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(PcapFrame<'_>),
    ) -> Result<ReadSummary, PcapReadError> {
        let mut sum = ReadSummary::default();
        loop {
            let offset = self.reader.consumed() as u64;
            match self.reader.next() {
                Ok((len, block)) => {
                    let frame = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            let link = LinkType::from_linktype(h.network.0);
                            self.legacy = Some((link, h.is_nanosecond_precision()));
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (link, nanos) = self.legacy.unwrap_or((None, false));
                            let frac = if nanos {
                                u64::from(b.ts_usec) / 1000
                            } else {
                                u64::from(b.ts_usec)
                            };
                            let ts = Ts(u64::from(b.ts_sec) * 1_000_000 + frac);
                            let data = b.data.get(..b.caplen as usize).unwrap_or(b.data);
                            Some(PcapFrame {
                                ts,
                                link,
                                data,
                                wire_len: b.origlen,
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(idb.linktype.0),
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset: idb.ts_offset(),
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.interfaces.get(epb.if_id as usize) {
                                Some(ifc) => {
                                    let raw =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    // Saturating: a corrupt block may hold any
                                    // timestamp and any interface offset.
                                    let secs = i64::try_from(raw / ifc.resolution)
                                        .unwrap_or(i64::MAX)
                                        .saturating_add(ifc.offset);
                                    let frac = raw % ifc.resolution;
                                    let us = (u128::from(frac) * 1_000_000
                                        / u128::from(ifc.resolution))
                                        as u64;
                                    let ts = Ts((secs.max(0) as u64)
                                        .saturating_mul(1_000_000)
                                        .saturating_add(us));
                                    let data =
                                        epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                                    Some(PcapFrame {
                                        ts,
                                        link: ifc.link,
                                        data,
                                        wire_len: epb.origlen,
                                    })
                                }
                                None => {
                                    sum.unknown_interface += 1;
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            match self.interfaces.first() {
                                // No timestamp of its own: the last one seen.
                                Some(ifc) => Some(PcapFrame {
                                    ts: self.last_ts,
                                    link: ifc.link,
                                    data: spb.data,
                                    wire_len: spb.origlen,
                                }),
                                None => {
                                    sum.unknown_interface += 1;
                                    None
                                }
                            }
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    if let Some(fr) = frame {
                        sum.frames += 1;
                        sum.bytes += fr.data.len() as u64;
                        self.last_ts = fr.ts;
                        f(fr);
                    }
                    self.reader.consume(len);
                }
                Err(PcapError::Eof) => return Ok(sum),
                Err(PcapError::Incomplete(_)) => {
                    if self.reader.reader_exhausted() {
                        sum.truncated_tail = true;
                        return Ok(sum);
                    }
                    self.reader.refill().map_err(|_| PcapReadError::Read {
                        path: self.path.clone(),
                        offset,
                    })?;
                }
                Err(PcapError::UnexpectedEof) => {
                    sum.truncated_tail = true;
                    return Ok(sum);
                }
                Err(PcapError::BufferTooSmall) => {
                    if self.buffer >= MAX_BUFFER {
                        return Err(PcapReadError::Corrupt {
                            path: self.path.clone(),
                            offset,
                            detail: format!("record larger than {} MiB", MAX_BUFFER >> 20),
                        });
                    }
                    self.buffer *= 2;
                    self.reader.grow(self.buffer);
                    self.reader.refill().map_err(|_| PcapReadError::Read {
                        path: self.path.clone(),
                        offset,
                    })?;
                }
                Err(PcapError::ReadError) => {
                    return Err(PcapReadError::Read {
                        path: self.path.clone(),
                        offset,
                    });
                }
                Err(e) => {
                    // A record that does not parse at the end of a file is a
                    // cut-short tail; in the middle it is corruption.
                    let detail = match e {
                        PcapError::HeaderNotRecognized => "unknown block".to_owned(),
                        _ => "unreadable record header".to_owned(),
                    };
                    if self.reader.reader_exhausted() && self.reader.data().len() < 64 {
                        sum.truncated_tail = true;
                        return Ok(sum);
                    }
                    return Err(PcapReadError::Corrupt {
                        path: self.path.clone(),
                        offset,
                        detail,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(records: &[(u32, u32, &[u8])], nanos: bool) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut v = magic.to_le_bytes().to_vec();
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (s, frac, data) in records {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&frac.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    type Read = (Vec<(Ts, Vec<u8>)>, ReadSummary);

    fn read_all(bytes: Vec<u8>) -> Result<Read, PcapReadError> {
        let mut r = PcapReader::from_reader(Box::new(io::Cursor::new(bytes)), Path::new("t.pcap"))?;
        let mut out = Vec::new();
        let sum = r.for_each(|f| {
            assert_eq!(f.link, Some(LinkType::Ethernet));
            out.push((f.ts, f.data.to_vec()));
        })?;
        Ok((out, sum))
    }

    /// Frames of any link type in `bytes`.
    fn count_any(bytes: Vec<u8>) -> Result<usize, PcapReadError> {
        let mut r = PcapReader::from_reader(Box::new(io::Cursor::new(bytes)), Path::new("t.pcap"))?;
        let mut n = 0;
        r.for_each(|_| n += 1)?;
        Ok(n)
    }

    #[test]
    fn reads_records_and_timestamps() {
        let (frames, sum) =
            read_all(legacy(&[(10, 5, b"abc"), (11, 999_999, b"de")], false)).unwrap();
        assert_eq!(
            frames,
            [
                (Ts(10_000_005), b"abc".to_vec()),
                (Ts(11_999_999), b"de".to_vec())
            ]
        );
        assert_eq!(sum.frames, 2);
        assert!(!sum.truncated_tail);
        let (frames, _) = read_all(legacy(&[(10, 5_000, b"abc")], true)).unwrap();
        assert_eq!(frames[0].0, Ts(10_000_005));
    }

    #[test]
    fn truncated_tail_keeps_complete_records() {
        let mut bytes = legacy(&[(1, 0, b"first"), (2, 0, b"second record")], false);
        bytes.truncate(bytes.len() - 4);
        let (frames, sum) = read_all(bytes).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(sum.truncated_tail);
        // Cut inside the second record's header.
        let mut bytes = legacy(&[(1, 0, b"first"), (2, 0, b"second")], false);
        bytes.truncate(24 + 16 + 5 + 7);
        let (frames, sum) = read_all(bytes).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(sum.truncated_tail);
    }

    #[test]
    fn not_a_capture() {
        for bytes in [
            Vec::new(),
            b"hello world, this is text not a pcap file at all".to_vec(),
            vec![0xd4, 0xc3],
        ] {
            let e = read_all(bytes).err().unwrap();
            assert!(matches!(e, PcapReadError::NotACapture { .. }), "{e}");
            assert!(e.to_string().contains("t.pcap"));
        }
    }

    #[test]
    fn missing_file_names_it() {
        let e = PcapReader::open(Path::new("/nonexistent/x.pcap"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/x.pcap"));
    }

    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let mut v = t.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v.extend_from_slice(&len.to_le_bytes());
        v
    }

    /// A pcapng file: section header, one Ethernet interface with
    /// `if_tsresol` and optionally `if_tsoffset`, one 4-byte packet at `ts`.
    fn pcapng(tsresol: u8, tsoffset: Option<i64>, ts: u64) -> Vec<u8> {
        let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&0u32.to_le_bytes());
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[tsresol, 0, 0, 0]);
        if let Some(off) = tsoffset {
            idb.extend_from_slice(&14u16.to_le_bytes());
            idb.extend_from_slice(&8u16.to_le_bytes());
            idb.extend_from_slice(&off.to_le_bytes());
        }
        idb.extend_from_slice(&[0, 0, 0, 0]);
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&4u32.to_le_bytes());
        epb.extend_from_slice(&4u32.to_le_bytes());
        epb.extend_from_slice(b"wxyz");
        let mut bytes = block(0x0a0d_0d0a, &shb);
        bytes.extend(block(1, &idb));
        bytes.extend(block(6, &epb));
        bytes
    }

    #[test]
    fn pcapng_with_resolution() {
        // if_tsresol = 9 (nanoseconds)
        let (frames, sum) = read_all(pcapng(9, None, 1_500_000_000_123_456_789)).unwrap();
        assert_eq!(frames, [(Ts(1_500_000_000_123_456), b"wxyz".to_vec())]);
        assert_eq!(sum.unknown_interface, 0);
        // if_tsoffset shifts by whole seconds.
        let (frames, _) = read_all(pcapng(6, Some(-100), 1_000_000_000_000_000)).unwrap();
        assert_eq!(frames[0].0, Ts(999_999_900_000_000));
    }

    #[test]
    fn pcapng_extreme_timestamps_saturate() {
        for (resol, off, ts) in [
            (0, Some(-1), 1u64 << 63),
            (0, Some(i64::MAX), u64::MAX),
            (0, Some(i64::MIN), u64::MAX),
            (0x80, Some(i64::MIN), 0),
            (9, Some(i64::MIN), u64::MAX),
        ] {
            let (frames, _) = read_all(pcapng(resol, off, ts)).unwrap();
            assert_eq!(frames.len(), 1, "{resol} {off:?} {ts}");
        }
    }

    /// Every byte of a small pcapng file set to a few hostile values in
    /// turn: the reader returns frames or an error, never panics.
    #[test]
    fn pcapng_byte_corruption_never_panics() {
        let good = pcapng(9, Some(5), 1_500_000_000_123_456_789);
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(n) = count_any(bad) {
                    assert!(n <= 1);
                }
            }
        }
        for cut in 0..good.len() {
            let _ = count_any(good[..cut].to_vec());
        }
    }
}
