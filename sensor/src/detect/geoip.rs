//! Country lookups in a MaxMind database (GeoIP2/GeoLite2 Country or City).
//!
//! The database is read and verified once, at startup, so a missing, corrupt
//! or wrong kind of file is a clear error naming the file before any traffic
//! is read, never a failure at the first lookup.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use maxminddb::{PathElement, Reader};

use crate::config::CountryCode;

/// Why the GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("cannot read GeoIP database {path}: {source}; check geoip_db")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "GeoIP database {path} is not a valid MaxMind DB file ({reason}); \
         set geoip_db to a GeoIP2/GeoLite2 Country or City .mmdb"
    )]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "GeoIP database {path} is a {db_type:?} database, which has no country data; \
         set geoip_db to a GeoIP2/GeoLite2 Country or City .mmdb"
    )]
    WrongType { path: PathBuf, db_type: String },
}

/// A notice's `remote_location` (Zeek's `geo_location` record).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Location {
    pub country_code: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// An open country database, shared read-only by all workers.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
    /// Lookups that failed on bad data inside the database (counted, and
    /// treated as "no country").
    lookup_errors: AtomicU64,
}

impl std::fmt::Debug for GeoIp {
    /// The path and type, not the database bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .field("lookup_errors", &self.lookup_errors())
            .finish()
    }
}

impl GeoIp {
    /// Reads and verifies the database at `path`. Its `database_type` must
    /// mention Country or City (GeoIP2-Country, GeoLite2-City, …), the two
    /// schemas that carry `country.iso_code`.
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(bytes, path)
    }

    /// As [`open`](Self::open), from bytes already read; `path` names them in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<GeoIp, GeoIpError> {
        let invalid = |e: maxminddb::MaxMindDbError| GeoIpError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        let db_type = reader.metadata().database_type.clone();
        if !(db_type.contains("Country") || db_type.contains("City")) {
            return Err(GeoIpError::WrongType {
                path: path.to_owned(),
                db_type,
            });
        }
        // Walks the whole tree and data section once: a truncated or
        // corrupt file fails here, not at some lookup later.
        reader.verify().map_err(invalid)?;
        Ok(GeoIp {
            reader,
            path: path.to_owned(),
            lookup_errors: AtomicU64::new(0),
        })
    }

    /// `country.iso_code` of `addr` (as Zeek's `lookup_location`), `None`
    /// when the address is not in the database or has no country.
    pub fn country(&self, addr: IpAddr) -> Option<CountryCode> {
        let path = [PathElement::Key("country"), PathElement::Key("iso_code")];
        let found = self
            .reader
            .lookup(addr)
            .and_then(|r| r.decode_path::<&str>(&path));
        match found {
            Ok(code) => code.and_then(CountryCode::parse),
            Err(_) => {
                self.lookup_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Where `addr` is, as Zeek's `lookup_location` gives it for a notice's
    /// `remote_location`: the country code, the first (largest) subdivision's
    /// code as the region, the city's English name and the coordinates, each
    /// present only when the database has it (a Country database has no
    /// region, city or coordinates). `None` when it has none of them.
    pub fn location(&self, addr: IpAddr) -> Option<Location> {
        use PathElement::{Index, Key};
        let found = match self.reader.lookup(addr) {
            Ok(r) => r,
            Err(_) => {
                self.lookup_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let mut bad = false;
        let mut text = |path: &[PathElement<'_>]| -> Option<String> {
            match found.decode_path::<&str>(path) {
                Ok(v) => v.map(str::to_owned),
                Err(_) => {
                    bad = true;
                    None
                }
            }
        };
        let country_code = text(&[Key("country"), Key("iso_code")]);
        let region = text(&[Key("subdivisions"), Index(0), Key("iso_code")]);
        let city = text(&[Key("city"), Key("names"), Key("en")]);
        let mut number = |path: &[PathElement<'_>]| -> Option<f64> {
            match found.decode_path::<f64>(path) {
                Ok(v) => v,
                Err(_) => {
                    bad = true;
                    None
                }
            }
        };
        let latitude = number(&[Key("location"), Key("latitude")]);
        let longitude = number(&[Key("location"), Key("longitude")]);
        if bad {
            self.lookup_errors.fetch_add(1, Ordering::Relaxed);
        }
        let l = Location {
            country_code,
            region,
            city,
            latitude,
            longitude,
        };
        (l != Location::default()).then_some(l)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Lookups that hit bad data in the database so far.
    pub fn lookup_errors(&self) -> u64 {
        self.lookup_errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MaxMind's test databases in `../shared/data/mmdb` beside the
    /// checkout (CI has it too). Tests that must run without it live in
    /// `tests/tests/detect_geoip.rs` with a database they write themselves.
    fn shared_db(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/mmdb")
            .join(name)
    }

    fn cc(db: &GeoIp, ip: &str) -> Option<String> {
        db.country(ip.parse().unwrap()).map(|c| c.to_string())
    }

    #[test]
    fn real_maxmind_test_databases_give_known_countries() {
        for name in [
            "GeoIP2-Country-Test.mmdb",
            "GeoLite2-Country-Test.mmdb",
            "GeoIP2-City-Test.mmdb",
        ] {
            let db = GeoIp::open(&shared_db(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cc(&db, "81.2.69.142").as_deref(), Some("GB"), "{name}");
            assert_eq!(cc(&db, "89.160.20.112").as_deref(), Some("SE"), "{name}");
            assert_eq!(cc(&db, "67.43.156.1").as_deref(), Some("BT"), "{name}");
            assert_eq!(cc(&db, "216.160.83.57").as_deref(), Some("US"), "{name}");
            // MaxMind's GeoLite2 test data has no country for this block.
            let cn = (name != "GeoLite2-Country-Test.mmdb").then(|| "CN".to_owned());
            assert_eq!(cc(&db, "175.16.199.7"), cn, "{name}");
            assert_eq!(cc(&db, "2001:218::1").as_deref(), Some("JP"), "{name}");
            assert_eq!(cc(&db, "198.18.0.1"), None, "{name}");
            assert_eq!(cc(&db, "127.0.0.1"), None, "{name}");
            assert_eq!(db.lookup_errors(), 0);
        }
    }

    #[test]
    fn locations_come_from_the_city_database_and_only_countries_from_a_country_one() {
        let city = GeoIp::open(&shared_db("GeoIP2-City-Test.mmdb")).unwrap();
        let l = city.location("81.2.69.142".parse().unwrap()).unwrap();
        assert_eq!(l.country_code.as_deref(), Some("GB"));
        assert_eq!(l.region.as_deref(), Some("ENG"));
        assert_eq!(l.city.as_deref(), Some("London"));
        assert!(
            l.latitude.is_some_and(|v| (v - 51.5142).abs() < 0.01),
            "{l:?}"
        );
        assert!(
            l.longitude.is_some_and(|v| (v + 0.0931).abs() < 0.01),
            "{l:?}"
        );
        assert_eq!(city.location("198.18.0.1".parse().unwrap()), None);
        let country = GeoIp::open(&shared_db("GeoIP2-Country-Test.mmdb")).unwrap();
        let l = country.location("81.2.69.142".parse().unwrap()).unwrap();
        assert_eq!(
            l,
            Location {
                country_code: Some("GB".into()),
                ..Location::default()
            }
        );
        assert_eq!(city.lookup_errors() + country.lookup_errors(), 0);
    }

    #[test]
    fn missing_database_names_the_file() {
        let e = GeoIp::open(Path::new("/nonexistent/GeoX.mmdb")).unwrap_err();
        assert!(matches!(e, GeoIpError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/GeoX.mmdb"), "{e}");
    }

    #[test]
    fn garbage_and_truncated_databases_are_rejected_at_open() {
        let p = Path::new("bad.mmdb");
        let e = GeoIp::from_bytes(b"not an mmdb at all".to_vec(), p).unwrap_err();
        assert!(matches!(e, GeoIpError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("bad.mmdb"));

        let real = std::fs::read(shared_db("GeoIP2-Country-Test.mmdb")).unwrap();
        // Cut the search tree in half but keep the metadata: the reader
        // opens it; verification must refuse it.
        let meta_at = real
            .windows(14)
            .rposition(|w| w == b"\xab\xcd\xefMaxMind.com")
            .unwrap();
        let mut cut = real[..meta_at / 2].to_vec();
        cut.extend_from_slice(&real[meta_at..]);
        assert!(GeoIp::from_bytes(cut, p).is_err());
        // Flipped bytes all through the tree and data.
        let mut flipped = real.clone();
        for b in flipped.iter_mut().take(meta_at).step_by(7) {
            *b ^= 0xa5;
        }
        assert!(GeoIp::from_bytes(flipped, p).is_err());
    }
}
