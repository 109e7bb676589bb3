//! A small MaxMind DB (`.mmdb`) writer for tests, so GeoIP tests run
//! without MaxMind's test files.
//!
//! It writes format version 2.0 with 24-bit records and an IPv6 search tree
//! (IPv4 networks live under `::/96`, where readers look for them). Data
//! values are maps, arrays, UTF-8 strings and unsigned integers — what the
//! Country and City schemas use. The crates.io writers were young 0.1
//! releases with extra dependencies; this one is ~200 lines and is also the
//! tool for making deliberately broken databases.
//!
//! Spec: <https://maxmind.github.io/MaxMind-DB/>.

use std::net::IpAddr;

/// A value of the data section.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Array(Vec<Value>),
    /// Keys in the order given.
    Map(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }

    pub fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// `{"country": {"iso_code": iso}}`, the part of the Country and City
    /// schemas a country lookup reads.
    pub fn country(iso: &str) -> Value {
        Value::map(vec![(
            "country",
            Value::map(vec![
                ("iso_code", Value::str(iso)),
                ("geoname_id", Value::U32(1)),
                ("names", Value::map(vec![("en", Value::str(iso))])),
            ]),
        )])
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::U16(n) => uint(out, 5, u64::from(*n)),
            Value::U32(n) => uint(out, 6, u64::from(*n)),
            Value::U64(n) => uint(out, 9, *n),
            Value::Map(pairs) => {
                control(out, 7, pairs.len());
                for (k, v) in pairs {
                    Value::Str(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Value::Array(items) => {
                control(out, 11, items.len());
                for v in items {
                    v.encode(out);
                }
            }
        }
    }
}

/// Writes a control byte (and extended-type and size bytes).
fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => {
            let v = (size - 65_821) as u32;
            (31, v.to_be_bytes()[1..].to_vec())
        }
    };
    if ty <= 7 {
        out.push((ty << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(ty - 7);
    }
    out.extend_from_slice(&extra);
}

fn uint(out: &mut Vec<u8>, ty: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rec {
    Empty,
    Node(usize),
    /// Offset into the data section.
    Data(usize),
}

/// Builds a database in memory; `to_bytes` gives the file.
#[derive(Clone, Debug)]
pub struct MmdbWriter {
    database_type: String,
    nodes: Vec<[Rec; 2]>,
    data: Vec<u8>,
}

impl MmdbWriter {
    /// `database_type` as MaxMind names it, e.g. `GeoIP2-Country`.
    pub fn new(database_type: &str) -> Self {
        MmdbWriter {
            database_type: database_type.to_owned(),
            nodes: vec![[Rec::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Maps the network `cidr` (`"81.2.69.0/24"`, `"2001:db8::/32"`) to
    /// `value`. Insert wider networks before narrower ones inside them.
    /// Panics on a malformed CIDR literal (a bug in the test).
    pub fn insert(&mut self, cidr: &str, value: &Value) -> &mut Self {
        let (addr, len) = cidr.split_once('/').expect("CIDR with /len");
        let addr: IpAddr = addr.parse().expect("CIDR address");
        let len: usize = len.parse().expect("CIDR prefix length");
        let (bits, len) = match addr {
            IpAddr::V4(a) => (u128::from(a.to_bits()), len + 96),
            IpAddr::V6(a) => (a.to_bits(), len),
        };
        assert!((1..=128).contains(&len), "prefix length");
        let offset = self.data.len();
        value.encode(&mut self.data);
        let mut node = 0;
        for i in 0..len {
            let bit = ((bits >> (127 - i)) & 1) as usize;
            if i + 1 == len {
                self.nodes[node][bit] = Rec::Data(offset);
                break;
            }
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n,
                other => {
                    // Empty, or a wider network's data that now splits.
                    let fill = if matches!(other, Rec::Data(_)) {
                        other
                    } else {
                        Rec::Empty
                    };
                    self.nodes.push([fill; 2]);
                    let n = self.nodes.len() - 1;
                    self.nodes[node][bit] = Rec::Node(n);
                    n
                }
            };
        }
        self
    }

    /// The `.mmdb` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let mut out = Vec::with_capacity(node_count * 6 + self.data.len() + 256);
        let rec = |r: Rec| -> u32 {
            let v = match r {
                Rec::Empty => node_count,
                Rec::Node(n) => n,
                Rec::Data(off) => node_count + 16 + off,
            };
            assert!(v < 1 << 24, "database too large for 24-bit records");
            v as u32
        };
        for [l, r] in &self.nodes {
            out.extend_from_slice(&rec(*l).to_be_bytes()[1..]);
            out.extend_from_slice(&rec(*r).to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        Value::map(vec![
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_700_000_000)),
            ("database_type", Value::str(&self.database_type)),
            (
                "description",
                Value::map(vec![("en", Value::str("smtp-sensor test database"))]),
            ),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count as u32)),
            ("record_size", Value::U16(24)),
        ])
        .encode(&mut out);
        out
    }
}

/// Separates the data section from the metadata.
pub const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// A Country database with `(cidr, iso_code)` entries.
pub fn country_db(database_type: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = MmdbWriter::new(database_type);
    for (cidr, iso) in entries {
        w.insert(cidr, &Value::country(iso));
    }
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uints_encode_per_spec() {
        let mut out = Vec::new();
        control(&mut out, 2, 3);
        assert_eq!(out, [0x43]);
        out.clear();
        control(&mut out, 2, 29);
        assert_eq!(out, [0x5d, 0]);
        out.clear();
        control(&mut out, 11, 2);
        assert_eq!(out, [0x02, 0x04]);
        out.clear();
        uint(&mut out, 6, 0);
        assert_eq!(out, [0xc0]);
        out.clear();
        uint(&mut out, 5, 0x1234);
        assert_eq!(out, [0xa2, 0x12, 0x34]);
    }
}
