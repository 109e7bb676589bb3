//! What the fuzz targets share: the input format of the SMTP session target
//! (a two-direction transcript with gaps), a sink that checks the session's
//! bounds and writes every record as a log line, and the stream every
//! reassembly input is cut from.
//!
//! The session input is decoded from the front, one step at a time, so a
//! seed is an SMTP conversation written out almost as it is (see
//! `seeds/make_seeds.py`) and libFuzzer's mutations stay local.

use std::net::IpAddr;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use smtp_sensor::net::{ConnId, ConnInfo, Direction, Ts};
use smtp_sensor::output::writer::{format_json, format_tsv};
use smtp_sensor::smtp::anomaly::SmtpAnomaly;
use smtp_sensor::smtp::files::{DEFAULT_HASH_MAX_BYTES, FileConfig};
use smtp_sensor::smtp::record::{ConnRecord, ListField, MessageRecord};
use smtp_sensor::smtp::sink::{Reply, SmtpSink};
use smtp_sensor::smtp::{PathCapture, SmtpConfig, SmtpLimits};

/// The connection every target's session belongs to.
pub fn conn() -> ConnInfo {
    let id = ConnId {
        orig_h: "198.18.0.1".parse().expect("literal"),
        orig_p: 40000,
        resp_h: "198.19.0.25".parse().expect("literal"),
        resp_p: 25,
    };
    ConnInfo::new(id, Ts(1))
}

/// The session configuration an input's first byte selects: bit 0 tiny
/// limits, bits 1-2 the Received-path rule, bit 3 198.18.0.0/15 local,
/// bit 5 a hash cap of 7 bytes.
pub fn smtp_config(sel: u8) -> SmtpConfig {
    SmtpConfig {
        limits: if sel & 1 != 0 {
            SmtpLimits::tiny()
        } else {
            SmtpLimits::default()
        },
        mail_path_capture: match (sel >> 1) & 3 {
            0 => PathCapture::Local,
            1 => PathCapture::Remote,
            _ => PathCapture::All,
        },
        local_nets: if sel & 8 != 0 {
            vec!["198.18.0.0/15".parse().expect("literal")]
        } else {
            Vec::new()
        },
        // Bit 5: a hash cap short inputs reach.
        files: FileConfig {
            hash_max_bytes: if sel & 0x20 != 0 { 7 } else { DEFAULT_HASH_MAX_BYTES },
            ..FileConfig::default()
        },
        // Extraction writes files: not from a fuzzer.
        extract: None,
    }
}

/// One step of a session transcript.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes from the client (`Orig`) or the server (`Resp`).
    Data(Direction, Vec<u8>),
    /// Bytes of a direction lost (capture loss).
    Gap(Direction, u64),
    /// The next data step is handed over in two pieces, split here.
    Split(usize),
}

/// Bytes shown as text (`cargo fuzz fmt session <input>`).
impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Data(dir, d) => write!(f, "Data({dir:?}, \"{}\")", d.escape_ascii()),
            Step::Gap(dir, n) => write!(f, "Gap({dir:?}, {n})"),
            Step::Split(at) => write!(f, "Split({at})"),
        }
    }
}

/// The session target's input: a configuration byte, then steps until the
/// input ends. Each step starts with a byte `h`:
///
/// - `h & 3 == 0 | 1`: data from the client (0) or the server (1); its
///   length is the next byte, or the next two (little-endian) when
///   `h & 4`; then that many bytes (fewer if the input ends).
/// - `h & 3 == 2`: a gap in direction `h >> 2 & 1`, of the next two bytes'
///   length (little-endian), or of `u64::MAX` bytes when `h & 8`.
/// - `h & 3 == 3`: the next data step is handed over in two pieces, split
///   at the byte given next ([`Step::Split`]).
#[derive(Clone, Debug)]
pub struct Session {
    pub config: u8,
    pub steps: Vec<Step>,
}

fn le16(u: &mut Unstructured<'_>) -> arbitrary::Result<u16> {
    let b = u.bytes(2.min(u.len()))?;
    Ok(u16::from(b.first().copied().unwrap_or(0)) | u16::from(b.get(1).copied().unwrap_or(0)) << 8)
}

impl<'a> Arbitrary<'a> for Session {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let config = u8::arbitrary(u)?;
        let mut steps = Vec::new();
        while !u.is_empty() {
            let h = u8::arbitrary(u)?;
            match h & 3 {
                kind @ (0 | 1) => {
                    let dir = if kind == 0 {
                        Direction::Orig
                    } else {
                        Direction::Resp
                    };
                    let len = if h & 4 != 0 {
                        usize::from(le16(u)?)
                    } else {
                        usize::from(u8::arbitrary(u)?)
                    };
                    let data = u.bytes(len.min(u.len()))?;
                    steps.push(Step::Data(dir, data.to_vec()));
                }
                2 => {
                    let dir = if h & 4 != 0 {
                        Direction::Resp
                    } else {
                        Direction::Orig
                    };
                    let len = if h & 8 != 0 {
                        u64::MAX
                    } else {
                        u64::from(le16(u)?)
                    };
                    steps.push(Step::Gap(dir, len));
                }
                _ => steps.push(Step::Split(usize::from(u8::arbitrary(u)?))),
            }
        }
        Ok(Session { config, steps })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// The steps as the session is fed them: data chunks, each with the
/// point it is split at (`None`: whole), and gaps; a [`Step::Split`]
/// applies to the next data step.
pub fn feed_plan(steps: &[Step]) -> Vec<(Step, Option<usize>)> {
    let mut out = Vec::new();
    let mut split = None;
    for s in steps {
        match s {
            Step::Split(at) => split = Some(*at),
            Step::Data(..) => out.push((s.clone(), split.take())),
            Step::Gap(..) => out.push((s.clone(), None)),
        }
    }
    out
}

/// A sink that checks what the session reports against the limits, and
/// writes every record in both log formats (the JSON line must parse).
pub struct CheckingSink {
    pub limits: SmtpLimits,
    pub records: Vec<MessageRecord>,
    pub anomalies: Vec<SmtpAnomaly>,
    pub replies: Vec<(u16, String)>,
    line: Vec<u8>,
}

impl CheckingSink {
    pub fn new(limits: SmtpLimits) -> Self {
        CheckingSink {
            limits,
            records: Vec::new(),
            anomalies: Vec::new(),
            replies: Vec::new(),
            line: Vec::new(),
        }
    }
}

impl SmtpSink for CheckingSink {
    fn reply(&mut self, _conn: &ConnInfo, r: &Reply<'_>) {
        assert!(
            r.text.len() <= self.limits.max_reply_len.max(512),
            "reply text of {} bytes",
            r.text.len()
        );
        assert!((100..1000).contains(&r.code), "reply code {}", r.code);
        assert!(r.rcpts.len() <= self.limits.max_rcptto);
        self.replies.push((r.code, r.text.to_owned()));
    }

    fn record(&mut self, conn: &ConnInfo, record: MessageRecord) {
        let l = &self.limits;
        assert!(record.list(ListField::Rcptto).len() <= l.max_rcptto);
        assert!(record.list(ListField::To).len() <= l.max_to);
        assert!(record.list(ListField::Cc).len() <= l.max_cc);
        assert!(record.list(ListField::Files).len() <= l.max_files);
        // The path holds the two connection addresses before any relay.
        assert!(
            record.path.len() <= l.max_path + 2,
            "path {:?}",
            record.path
        );
        let row = ConnRecord {
            conn: *conn,
            record,
        };
        self.line.clear();
        format_json(&row, &mut self.line);
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&self.line) {
            panic!(
                "smtp.log line is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.line)
            );
        }
        self.line.clear();
        format_tsv(&row, &mut self.line);
        let tabs = self.line.iter().filter(|&&b| b == b'\t').count();
        assert_eq!(
            tabs + 1,
            <ConnRecord as smtp_sensor::output::LogRecord>::COLUMNS.len(),
            "TSV line {:?}",
            String::from_utf8_lossy(&self.line)
        );
        assert!(!self.line[..self.line.len().saturating_sub(1)].contains(&b'\n'));
        self.records.push(row.record);
    }

    fn anomaly(&mut self, _conn: &ConnInfo, a: SmtpAnomaly) {
        let _ = a.name();
        self.anomalies.push(a);
    }
}

/// Runs `plan` through a fresh session; `split`: honour the split points.
pub fn run_session(
    cfg: &Arc<SmtpConfig>,
    plan: &[(Step, Option<usize>)],
    split: bool,
) -> CheckingSink {
    use smtp_sensor::smtp::SmtpSession;
    let mut s = SmtpSession::new(conn(), cfg.clone());
    let mut sink = CheckingSink::new(cfg.limits.clone());
    for (i, (step, at)) in plan.iter().enumerate() {
        let ts = Ts(10 + i as u64);
        match step {
            Step::Data(dir, d) => match at {
                Some(at) if split => {
                    let (a, b) = d.split_at((*at).min(d.len()));
                    s.on_data(*dir, ts, a, &mut sink);
                    s.on_data(*dir, ts, b, &mut sink);
                }
                _ => s.on_data(*dir, ts, d, &mut sink),
            },
            Step::Gap(dir, len) => s.on_gap(*dir, ts, *len, &mut sink),
            Step::Split(_) => {}
        }
    }
    s.on_close(Ts(10 + plan.len() as u64), &mut sink);
    sink
}

/// Byte `off` of the stream every reassembly input is cut from: not
/// periodic over any short distance, so a byte delivered at the wrong
/// offset shows.
pub fn stream_byte(off: u64) -> u8 {
    let x = off.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8 ^ off as u8
}

/// `len` stream bytes from `off`.
pub fn stream(off: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| stream_byte(off + i)).collect()
}

/// An address of the test networks, from a small index.
pub fn addr(i: u8) -> IpAddr {
    if i & 0x80 != 0 {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u16::from(i & 3),
        ))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, i & 3))
    }
}
