//! Offline input: frames from a pcap or pcapng file (or standard input).
//!
//! Two ways in, one block handling (`Blocks`):
//! - streaming ([`PcapReader::from_reader`]): `pcap-parser`'s buffered
//!   reader over any byte source (standard input, a pipe, a FIFO), memory
//!   constant whatever the length;
//! - mapped ([`PcapReader::from_mapped`]): a regular file mapped read-only
//!   ([`MappedCapture`]), its records parsed in place and every frame
//!   borrowed straight from the mapping, without a copy. Pages well behind
//!   the cursor are given back to the kernel, so the resident set stays flat
//!   whatever the file size.
//!
//! `pipeline::input::open` decides which one a run takes. Both give the same
//! frames, the same [`ReadSummary`] and the same errors.
//!
//! A file that cannot be opened or is not a capture is an error naming the
//! file (exit code 2). A capture whose last record is cut short still yields
//! every complete record before it; the cut is reported in the summary and
//! on stderr, and the run counts as having read its input to the end.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};
use pcap_parser::nom::{self, IResult, Needed};
use pcap_parser::pcap::{
    LegacyPcapBlock, PcapHeader, parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified,
    parse_pcap_header,
};
use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, PcapBlockOwned, PcapError};

use super::prefetch;
use crate::decode::LinkType;
use crate::net::Ts;

/// Initial read buffer; grown for larger records up to `MAX_BUFFER`.
const INITIAL_BUFFER: usize = 1 << 20;
/// Largest record accepted (a pcapng block); bigger means a corrupt file.
const MAX_BUFFER: usize = 64 << 20;
/// The mapped reader reports progress and looks at the stop request each
/// time it has gone this many bytes further (like the streaming reader,
/// which does both on every read of its buffer).
const WATCH_EVERY: usize = 1 << 20;
/// The mapped reader gives back to the kernel, in steps of this size, the
/// pages more than this far behind its cursor: mapped file pages count in
/// the resident set, so this bounds what the mapping adds to it (about two
/// steps, whatever the file size). About a thousand `madvise` calls per GB.
const RELEASE_EVERY: usize = 1 << 20;

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
    /// A compressed capture that could not be decompressed (corrupt, or
    /// refused as a decompression bomb).
    #[error("{path}: {detail}; the records before it were processed")]
    Decompress { path: PathBuf, detail: String },
}

/// One captured frame, borrowed from the reader's buffer or the mapping.
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

/// Called by the mapped reader with the byte offset it has reached, about
/// every MiB and at the end; `false` ends the reading there, as at the end
/// of the file.
pub type Watch = Box<dyn FnMut(u64) -> bool + Send>;

/// A capture file mapped read-only into memory, for
/// [`PcapReader::from_mapped`].
///
/// A mapping shows the file as it is on disk while it is read, so the file
/// must not change under it: if another process truncates it (or rewrites
/// it shorter) while it is mapped, touching a page past the new end raises
/// SIGBUS and the run dies; bytes rewritten in place may be seen half old,
/// half new. Only ever parse captures nobody else is modifying (see
/// docs/OPERATIONS.md). A file still being appended to (`tcpdump -w`) is
/// read up to its size when it was mapped; its last record may then count
/// as cut short.
pub struct MappedCapture {
    map: Mmap,
}

impl MappedCapture {
    /// Maps all of `file` read-only.
    pub fn new(file: &File) -> io::Result<MappedCapture> {
        // SAFETY: a read-only mapping, only ever read as plain bytes (any
        // value is a valid `u8`, and every length and offset in it is
        // checked by the parser before use). What Rust cannot see is another
        // process changing the file meanwhile; the type's documentation and
        // docs/OPERATIONS.md rule that out.
        let map = unsafe { Mmap::map(file)? };
        // Read once, front to back: aggressive read-ahead, and the kernel
        // may drop pages soon after they were read. Only advice: a kernel
        // that ignores it changes nothing but speed.
        if !map.is_empty() {
            let _ = map.advise(Advice::Sequential);
        }
        Ok(MappedCapture { map })
    }
}

/// The state a capture's blocks build up (link type, interfaces, the last
/// timestamp) and the one place that turns blocks into frames, whichever
/// path read them.
#[derive(Default)]
struct Blocks {
    /// Legacy pcap: link type and nanosecond timestamps.
    legacy: Option<(Option<LinkType>, bool)>,
    interfaces: Vec<Interface>,
    last_ts: Ts,
}

impl Blocks {
    /// Takes in one block: returns the frame it carries, if any, counted in
    /// `sum`; any other block updates the state.
    fn frame<'a>(
        &mut self,
        block: PcapBlockOwned<'a>,
        sum: &mut ReadSummary,
    ) -> Option<PcapFrame<'a>> {
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
                        let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        // Saturating: a corrupt block may hold any
                        // timestamp and any interface offset.
                        let secs = i64::try_from(raw / ifc.resolution)
                            .unwrap_or(i64::MAX)
                            .saturating_add(ifc.offset);
                        let frac = raw % ifc.resolution;
                        let us = (u128::from(frac) * 1_000_000 / u128::from(ifc.resolution)) as u64;
                        let ts = Ts((secs.max(0) as u64)
                            .saturating_mul(1_000_000)
                            .saturating_add(us));
                        let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
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
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => match self.interfaces.first() {
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
            },
            PcapBlockOwned::NG(_) => None,
        };
        if let Some(fr) = &frame {
            sum.frames += 1;
            sum.bytes += fr.data.len() as u64;
            self.last_ts = fr.ts;
        }
        frame
    }
}

/// What a record that does not parse is called in a `Corrupt` error.
fn corrupt_detail(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::HeaderNotRecognized => "unknown block".to_owned(),
        _ => "unreadable record header".to_owned(),
    }
}

fn too_large() -> String {
    format!("record larger than {} MiB", MAX_BUFFER >> 20)
}

/// A legacy pcap record parser (byte order and format variant).
type LegacyParse = fn(&[u8]) -> IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>>;

#[derive(Clone, Copy)]
enum Format {
    Legacy(LegacyParse),
    /// pcapng, in the byte order of the current section.
    Ng {
        big_endian: bool,
    },
}

/// Where the records come from.
enum Source {
    Stream {
        reader: Box<dyn PcapReaderIterator + Send>,
        /// Current size of the reader's buffer.
        buffer: usize,
    },
    Mapped(Mapped),
}

struct Mapped {
    map: Mmap,
    format: Format,
    /// Legacy pcap: the file header, handed out as the first block.
    header: Option<PcapHeader>,
    /// Bytes of the file consumed.
    pos: usize,
    /// The buffer size the streaming reader would have grown to by now: a
    /// record too large for it is `Corrupt` on both paths.
    buffer: usize,
    /// The pages before this offset have been given back to the kernel.
    released: usize,
    /// Cache lines ahead of the cursor already requested.
    ahead: prefetch::Ahead,
    watch: Watch,
}

/// A capture reader: streaming from any byte source, or over a mapped file.
pub struct PcapReader {
    source: Source,
    path: PathBuf,
    blocks: Blocks,
}

impl PcapReader {
    /// Opens `path`, streaming; `-` reads standard input.
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
            source: Source::Stream {
                reader,
                buffer: INITIAL_BUFFER,
            },
            path: path.to_owned(),
            blocks: Blocks::default(),
        })
    }

    /// Reads a capture in place from a mapped file (`path` names it in
    /// errors); `watch` is told how far reading got and can stop it.
    pub fn from_mapped(
        map: MappedCapture,
        path: &Path,
        watch: Watch,
    ) -> Result<PcapReader, PcapReadError> {
        let not = |detail: &str| PcapReadError::NotACapture {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let map = map.map;
        if map.is_empty() {
            return Err(not("the file is empty"));
        }
        // What the streaming reader recognises the file by: its first
        // buffer, probed for pcapng first, then pcap.
        let first = &map[..map.len().min(INITIAL_BUFFER)];
        let (format, header) = if parse_sectionheaderblock(first).is_ok() {
            (Format::Ng { big_endian: false }, None)
        } else {
            match parse_pcap_header(first) {
                Ok((_, h)) => {
                    let parse: LegacyParse = if h.is_modified_format() {
                        parse_pcap_frame_modified
                    } else if h.is_bigendian() {
                        parse_pcap_frame_be
                    } else {
                        parse_pcap_frame
                    };
                    (Format::Legacy(parse), Some(h))
                }
                Err(nom::Err::Incomplete(_)) => {
                    return Err(not("the file ends inside the file header"));
                }
                Err(_) => return Err(not("unknown file header")),
            }
        };
        Ok(PcapReader {
            source: Source::Mapped(Mapped {
                map,
                format,
                header,
                pos: 0,
                buffer: INITIAL_BUFFER,
                released: 0,
                ahead: prefetch::Ahead::default(),
                watch,
            }),
            path: path.to_owned(),
            blocks: Blocks::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the records are read in place from a mapped file.
    pub fn mapped(&self) -> bool {
        matches!(self.source, Source::Mapped(_))
    }

    /// Calls `f` for every frame in file order until the end of input.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(PcapFrame<'_>),
    ) -> Result<ReadSummary, PcapReadError> {
        match &mut self.source {
            Source::Stream { reader, buffer } => {
                stream_each(reader, buffer, &mut self.blocks, &self.path, &mut f)
            }
            Source::Mapped(m) => m.each(&mut self.blocks, &self.path, &mut f),
        }
    }
}

/// The streaming path of [`PcapReader::for_each`].
fn stream_each(
    reader: &mut Box<dyn PcapReaderIterator + Send>,
    buffer: &mut usize,
    blocks: &mut Blocks,
    path: &Path,
    f: &mut impl FnMut(PcapFrame<'_>),
) -> Result<ReadSummary, PcapReadError> {
    let mut sum = ReadSummary::default();
    loop {
        let offset = reader.consumed() as u64;
        match reader.next() {
            Ok((len, block)) => {
                if let Some(fr) = blocks.frame(block, &mut sum) {
                    f(fr);
                }
                reader.consume(len);
            }
            Err(PcapError::Eof) => return Ok(sum),
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    sum.truncated_tail = true;
                    return Ok(sum);
                }
                reader.refill().map_err(|_| PcapReadError::Read {
                    path: path.to_owned(),
                    offset,
                })?;
            }
            Err(PcapError::UnexpectedEof) => {
                sum.truncated_tail = true;
                return Ok(sum);
            }
            Err(PcapError::BufferTooSmall) => {
                if *buffer >= MAX_BUFFER {
                    return Err(PcapReadError::Corrupt {
                        path: path.to_owned(),
                        offset,
                        detail: too_large(),
                    });
                }
                *buffer *= 2;
                reader.grow(*buffer);
                reader.refill().map_err(|_| PcapReadError::Read {
                    path: path.to_owned(),
                    offset,
                })?;
            }
            Err(PcapError::ReadError) => {
                return Err(PcapReadError::Read {
                    path: path.to_owned(),
                    offset,
                });
            }
            Err(e) => {
                // A record that does not parse at the end of a file is a
                // cut-short tail; in the middle it is corruption.
                let detail = corrupt_detail(&e);
                if reader.reader_exhausted() && reader.data().len() < 64 {
                    sum.truncated_tail = true;
                    return Ok(sum);
                }
                return Err(PcapReadError::Corrupt {
                    path: path.to_owned(),
                    offset,
                    detail,
                });
            }
        }
    }
}

impl Mapped {
    /// The mapped path of [`PcapReader::for_each`]: the records parsed where
    /// they lie, every frame a slice of the mapping.
    ///
    /// The outcomes are the streaming reader's: that reader sees a record
    /// that does not parse only once its buffer holds every byte left in the
    /// file, or once it can grow no more; here every byte left is always in
    /// view, and [`Mapped::buffer`] follows how far that buffer would have
    /// grown, so a record too large for it is `Corrupt` here too.
    fn each(
        &mut self,
        blocks: &mut Blocks,
        path: &Path,
        f: &mut impl FnMut(PcapFrame<'_>),
    ) -> Result<ReadSummary, PcapReadError> {
        let mut sum = ReadSummary::default();
        let data: &[u8] = &self.map;
        let corrupt = |offset: usize, detail: String| PcapReadError::Corrupt {
            path: path.to_owned(),
            offset: offset as u64,
            detail,
        };
        let mut watch_at = self.pos.saturating_add(WATCH_EVERY);
        loop {
            let pos = self.pos;
            if pos >= watch_at {
                watch_at = pos.saturating_add(WATCH_EVERY);
                if !(self.watch)(pos as u64) {
                    return Ok(sum);
                }
                release(&self.map, &mut self.released, pos);
            }
            self.ahead.advance(data, pos);
            let rest = data.get(pos..).unwrap_or_default();
            let parsed = if let Some(h) = self.header.take() {
                Ok((h.size(), PcapBlockOwned::from(h)))
            } else if rest.is_empty() {
                (self.watch)(pos as u64);
                return Ok(sum);
            } else {
                match self.format {
                    Format::Legacy(parse) => parse(rest)
                        .map(|(left, b)| (rest.len() - left.len(), PcapBlockOwned::from(b))),
                    Format::Ng { big_endian } => {
                        let parse = if big_endian {
                            parse_block_be
                        } else {
                            parse_block_le
                        };
                        parse(rest).map(|(left, b)| {
                            if let Block::SectionHeader(shb) = &b {
                                self.format = Format::Ng {
                                    big_endian: shb.big_endian(),
                                };
                            }
                            (rest.len() - left.len(), PcapBlockOwned::from(b))
                        })
                    }
                }
            };
            match parsed {
                Ok((len, block)) => {
                    // The streaming reader grows its buffer for a record
                    // that does not fit, up to MAX_BUFFER.
                    while len >= self.buffer {
                        if self.buffer >= MAX_BUFFER {
                            return Err(corrupt(pos, too_large()));
                        }
                        self.buffer *= 2;
                    }
                    if let Some(fr) = blocks.frame(block, &mut sum) {
                        f(fr);
                    }
                    self.pos = pos + len;
                }
                Err(nom::Err::Incomplete(needed)) => {
                    let needed = match needed {
                        Needed::Size(n) => n.get(),
                        Needed::Unknown => 0,
                    };
                    if self.tail_too_large(rest.len(), needed) {
                        return Err(corrupt(pos, too_large()));
                    }
                    sum.truncated_tail = true;
                    return Ok(sum);
                }
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    return Err(corrupt(pos, corrupt_detail(&e)));
                }
            }
        }
    }

    /// A record that wants `needed` more bytes than the `rest` of the file:
    /// would the streaming reader have called it a cut-short tail (false)
    /// or too large (true)? It reads on, doubling its buffer each time it is
    /// full, until it has every byte left (then a cut-short tail, unless it
    /// still wants more than its largest buffer) or it can grow no more.
    fn tail_too_large(&self, rest: usize, needed: usize) -> bool {
        let mut buffer = self.buffer;
        loop {
            if rest <= buffer {
                return buffer >= MAX_BUFFER && rest.saturating_add(needed) >= buffer;
            }
            if buffer >= MAX_BUFFER {
                return true;
            }
            buffer *= 2;
        }
    }
}

/// Gives back to the kernel the pages of `map` more than [`RELEASE_EVERY`]
/// behind `pos`, in whole steps, from `released` on: mapped file pages count
/// in the resident set, and would otherwise add up to the whole file.
fn release(map: &Mmap, released: &mut usize, pos: usize) {
    let end = (pos / RELEASE_EVERY).saturating_sub(1) * RELEASE_EVERY;
    if end <= *released {
        return;
    }
    // SAFETY: MADV_DONTNEED on a read-only shared file mapping drops the
    // page table entries only; a later access faults the same file bytes
    // back in from the page cache, so nothing that reads the mapping can see
    // other contents. And nothing reads that range any more: the frames
    // handed out are borrowed only for the duration of each callback,
    // `Blocks` keeps no slice of a block, and the range ends a whole step
    // before the record under the cursor. Only advice: should the kernel
    // refuse, the pages simply stay.
    let _ = unsafe {
        map.unchecked_advise_range(UncheckedAdvice::DontNeed, *released, end - *released)
    };
    *released = end;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(records: &[(u32, u32, &[u8])], nanos: bool) -> Vec<u8> {
        legacy_in(records, nanos, false)
    }

    /// A legacy pcap file (Ethernet), little- or big-endian.
    fn legacy_in(records: &[(u32, u32, &[u8])], nanos: bool, big: bool) -> Vec<u8> {
        let u32b = |x: u32| {
            if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        };
        let u16b = |x: u16| {
            if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        };
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut v = u32b(magic).to_vec();
        v.extend_from_slice(&u16b(2));
        v.extend_from_slice(&u16b(4));
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&u32b(65535));
        v.extend_from_slice(&u32b(1));
        for (s, frac, data) in records {
            v.extend_from_slice(&u32b(*s));
            v.extend_from_slice(&u32b(*frac));
            v.extend_from_slice(&u32b(data.len() as u32));
            v.extend_from_slice(&u32b(data.len() as u32 + 100));
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

    /// Everything one reading gives, to compare the two paths.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        frames: Vec<(Ts, Option<LinkType>, Vec<u8>, u32)>,
        /// The summary, or the error's `Debug` (variant, offset, detail).
        result: Result<ReadSummary, String>,
    }

    fn outcome(reader: Result<PcapReader, PcapReadError>) -> Outcome {
        let mut frames = Vec::new();
        let result = reader
            .and_then(|mut r| {
                r.for_each(|f| frames.push((f.ts, f.link, f.data.to_vec(), f.wire_len)))
            })
            .map_err(|e| format!("{e:?}"));
        Outcome { frames, result }
    }

    /// A file of the system's temporary directory, unique to this process
    /// and `name`; removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let p = std::env::temp_dir().join(format!("pcap-{}-{name}", std::process::id()));
            std::fs::write(&p, bytes).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn streamed(p: &Path) -> Outcome {
        let f = File::open(p).unwrap();
        outcome(PcapReader::from_reader(Box::new(f), p))
    }

    fn mapped(p: &Path) -> Outcome {
        let f = File::open(p).unwrap();
        let map = MappedCapture::new(&f).unwrap();
        outcome(PcapReader::from_mapped(map, p, Box::new(|_| true)))
    }

    /// Reads the file at `p` both ways, asserts the same outcome and
    /// returns it.
    fn both_file(p: &Path) -> Outcome {
        let s = streamed(p);
        let m = mapped(p);
        assert_eq!(s, m, "{}", p.display());
        s
    }

    fn both(name: &str, bytes: &[u8]) -> Outcome {
        let t = TempFile::new(name, bytes);
        both_file(&t.0)
    }

    #[test]
    fn mapped_legacy_matches_streaming() {
        let recs: &[(u32, u32, &[u8])] = &[(10, 5, b"abc"), (11, 999_999, b"de"), (12, 0, b"")];
        let o = both("legacy-us", &legacy(recs, false));
        let ts: Vec<_> = o.frames.iter().map(|f| f.0).collect();
        assert_eq!(ts, [Ts(10_000_005), Ts(11_999_999), Ts(12_000_000)]);
        assert_eq!(o.frames[0].1, Some(LinkType::Ethernet));
        assert_eq!(o.frames[0].2, b"abc");
        assert_eq!(o.frames[0].3, 103);
        let sum = o.result.unwrap();
        assert_eq!((sum.frames, sum.bytes, sum.truncated_tail), (3, 5, false));

        let o = both("legacy-ns", &legacy(&[(10, 5_000, b"abc")], true));
        assert_eq!(o.frames[0].0, Ts(10_000_005));

        let o = both("legacy-be", &legacy_in(recs, true, true));
        assert_eq!(o.frames.len(), 3);
        assert_eq!(o.frames[1].0, Ts(11_000_999));
        assert_eq!(o.frames[1].2, b"de");
    }

    #[test]
    fn mapped_pcapng_matches_streaming() {
        let o = both("ng-ns", &pcapng(9, None, 1_500_000_000_123_456_789));
        assert_eq!(o.frames[0].0, Ts(1_500_000_000_123_456));
        assert_eq!(o.frames[0].2, b"wxyz");
        let o = both("ng-off", &pcapng(6, Some(-100), 1_000_000_000_000_000));
        assert_eq!(o.frames[0].0, Ts(999_999_900_000_000));

        // A simple packet (the last timestamp), an enhanced packet naming
        // an interface never described, a second section without any.
        let mut bytes = pcapng(6, None, 7_000_001);
        let mut spb = 9u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"simple\0\0");
        bytes.extend(block(3, &spb));
        let mut epb = 5u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&[0; 8]);
        epb.extend_from_slice(&4u32.to_le_bytes());
        epb.extend_from_slice(&4u32.to_le_bytes());
        epb.extend_from_slice(b"lost");
        bytes.extend(block(6, &epb));
        let section = pcapng(6, None, 1);
        let shb_len = u32::from_le_bytes(section[4..8].try_into().unwrap()) as usize;
        bytes.extend_from_slice(&section[..shb_len]);
        bytes.extend(block(3, &spb));
        let o = both("ng-mixed", &bytes);
        assert_eq!(o.frames.len(), 2);
        assert_eq!(o.frames[1].0, Ts(7_000_001));
        assert_eq!(o.frames[1].2, b"simple\0\0");
        assert_eq!(o.frames[1].3, 9);
        assert_eq!(o.result.unwrap().unknown_interface, 2);
    }

    #[test]
    fn mapped_cut_short_matches_streaming() {
        let bytes = legacy(&[(1, 0, b"first"), (2, 0, b"second record")], false);
        let last = 24 + 16 + 5;
        for cut in last + 1..bytes.len() {
            let o = both(&format!("cut-legacy-{cut}"), &bytes[..cut]);
            assert_eq!(o.frames.len(), 1, "{cut}");
            assert!(o.result.unwrap().truncated_tail, "{cut}");
        }
        let bytes = pcapng(9, None, 5);
        let last = bytes.len() - 36;
        for cut in last + 1..bytes.len() {
            let o = both(&format!("cut-ng-{cut}"), &bytes[..cut]);
            assert!(o.frames.is_empty());
            assert!(o.result.unwrap().truncated_tail, "{cut}");
        }
    }

    #[test]
    fn mapped_not_a_capture_matches_streaming() {
        for (i, bytes) in [
            Vec::new(),
            b"hello world, this is text not a pcap file at all".to_vec(),
            vec![0xd4, 0xc3],
            vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0],
            pcapng(9, None, 0)[..20].to_vec(),
        ]
        .into_iter()
        .enumerate()
        {
            let o = both(&format!("garbage-{i}"), &bytes);
            let e = o.result.unwrap_err();
            assert!(e.starts_with("NotACapture"), "{e}");
        }
    }

    #[test]
    fn mapped_corruption_in_the_middle_matches_streaming() {
        // A block whose length is below any block's header, then more.
        let mut bytes = pcapng(9, None, 5);
        let at = bytes.len();
        bytes.extend_from_slice(&6u32.to_le_bytes());
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend(pcapng(9, None, 6));
        let o = both("corrupt-middle", &bytes);
        assert_eq!(o.frames.len(), 1);
        let e = o.result.unwrap_err();
        assert!(e.starts_with("Corrupt"), "{e}");
        assert!(e.contains(&format!("offset: {at},")), "{e}");
    }

    /// Every byte of a small pcapng file set to a few hostile values in
    /// turn, and every cut: both paths give the same frames and outcome.
    #[test]
    fn mapped_byte_corruption_matches_streaming() {
        let good = pcapng(9, Some(5), 1_500_000_000_123_456_789);
        let t = TempFile::new("fuzz", &good);
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                std::fs::write(&t.0, &bad).unwrap();
                both_file(&t.0);
            }
        }
        for cut in 0..good.len() {
            std::fs::write(&t.0, &good[..cut]).unwrap();
            both_file(&t.0);
        }
    }

    /// A legacy file: two frames, then a record header claiming `caplen`
    /// bytes, then `rest` bytes of zeros (a sparse file).
    fn huge_record(name: &str, caplen: u32, rest: u64) -> TempFile {
        let mut bytes = legacy(&[(1, 0, b"first"), (2, 0, b"second")], false);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&caplen.to_le_bytes());
        bytes.extend_from_slice(&caplen.to_le_bytes());
        let len = bytes.len() as u64;
        let t = TempFile::new(name, &bytes);
        let f = std::fs::OpenOptions::new().write(true).open(&t.0).unwrap();
        f.set_len(len + rest).unwrap();
        t
    }

    #[test]
    fn mapped_large_records_match_streaming() {
        // Larger than the first buffer: the streaming reader grows it.
        let big = vec![0x5a; 3 << 20];
        let o = both(
            "big",
            &legacy(&[(1, 0, b"a"), (2, 0, &big), (3, 0, b"c")], false),
        );
        assert_eq!(o.frames.len(), 3);
        assert_eq!(o.frames[1].2.len(), 3 << 20);
        // Claiming far more than the file holds: cut short when the rest of
        // the file is small, too large for the buffer when it is not.
        let offset = 24 + 16 + 5 + 16 + 6;
        for (rest, corrupt) in [(10 << 20, false), (40 << 20, true), (70 << 20, true)] {
            let t = huge_record(&format!("huge-{rest}"), 100 << 20, rest);
            let o = both_file(&t.0);
            assert_eq!(o.frames.len(), 2);
            match o.result {
                Ok(sum) => assert!(!corrupt && sum.truncated_tail),
                Err(e) => {
                    assert!(corrupt, "{e}");
                    assert!(e.contains(&format!("offset: {offset},")), "{e}");
                    assert!(e.contains("larger than 64 MiB"), "{e}");
                }
            }
        }
        // A whole record of 65 MiB: too large for the streaming reader.
        let t = huge_record("whole", 65 << 20, 65 << 20);
        let o = both_file(&t.0);
        assert!(o.result.unwrap_err().contains("larger than 64 MiB"));
    }

    #[test]
    fn mapped_watch_sees_progress_and_stops() {
        let data = vec![0xab; 1000];
        let recs: Vec<(u32, u32, &[u8])> = (0..3000).map(|i| (i, 0, &data[..])).collect();
        let bytes = legacy(&recs, false);
        let t = TempFile::new("watch", &bytes);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let read = |stop_after: usize| {
            seen.lock().unwrap().clear();
            let f = File::open(&t.0).unwrap();
            let map = MappedCapture::new(&f).unwrap();
            let log = seen.clone();
            let watch = Box::new(move |pos| {
                let mut log = log.lock().unwrap();
                log.push(pos);
                log.len() < stop_after
            });
            let mut r = PcapReader::from_mapped(map, &t.0, watch).unwrap();
            assert!(r.mapped());
            r.for_each(|_| {}).unwrap()
        };
        let sum = read(usize::MAX);
        assert_eq!(sum.frames, 3000);
        let log = seen.lock().unwrap().clone();
        assert_eq!(log.last(), Some(&(bytes.len() as u64)));
        assert!(
            log.len() >= 3 && log.windows(2).all(|w| w[0] < w[1]),
            "{log:?}"
        );
        // Told to stop at the first look: about a MiB read, no more.
        let sum = read(1);
        assert!(sum.frames > 0 && sum.frames < 1100, "{sum:?}");
        assert!(!sum.truncated_tail);
    }
}
