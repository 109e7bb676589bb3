//! What an SMTP session needs to know from the sensor configuration: the
//! limits and the rule for following Received headers.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::files::FileConfig;
use super::limits::SmtpLimits;
use crate::output::extract::ExtractTx;

/// Which Received-header addresses keep the path walk going
/// (SEMANTICS "Received path"): the walk stops after the first address that
/// is neither private nor inside the capture set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathCapture {
    /// Capture set = `local_nets`: stop at the first public outside address.
    #[default]
    Local,
    /// Capture set = everything outside `local_nets`: stop at the first
    /// public local address.
    Remote,
    /// Never stop early (Zeek's default `ALL_HOSTS`).
    All,
}

impl PathCapture {
    pub const fn as_str(self) -> &'static str {
        match self {
            PathCapture::Local => "local",
            PathCapture::Remote => "remote",
            PathCapture::All => "all",
        }
    }
}

impl fmt::Display for PathCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value given for `mail_path_capture` is none of the three names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown mail_path_capture value {0:?}; use \"local\", \"remote\" or \"all\"")]
pub struct PathCaptureError(pub String);

impl FromStr for PathCapture {
    type Err = PathCaptureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(PathCapture::Local),
            "remote" => Ok(PathCapture::Remote),
            "all" => Ok(PathCapture::All),
            _ => Err(PathCaptureError(s.to_string())),
        }
    }
}

/// Configuration shared (behind an `Arc`) by every SMTP session of a worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmtpConfig {
    pub limits: SmtpLimits,
    pub mail_path_capture: PathCapture,
    /// CIDRs that are "local" (`is_local_addr`).
    pub local_nets: Vec<IpNet>,
    /// Hashing of the message's files (files.log).
    pub files: FileConfig,
    /// Where extracted files' bytes go; `None`: extraction is off.
    pub extract: Option<ExtractTx>,
}

impl SmtpConfig {
    /// True if `addr` is inside one of `local_nets`.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local_nets.iter().any(|n| n.contains(&addr))
    }

    /// True if `addr` is in the capture set of `mail_path_capture`.
    pub fn in_capture_set(&self, addr: IpAddr) -> bool {
        match self.mail_path_capture {
            PathCapture::Local => self.is_local(addr),
            PathCapture::Remote => !self.is_local(addr),
            PathCapture::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_capture_parses_names_case_insensitively() {
        assert_eq!("local".parse(), Ok(PathCapture::Local));
        assert_eq!("REMOTE".parse(), Ok(PathCapture::Remote));
        assert_eq!(" all ".parse(), Ok(PathCapture::All));
        assert!("none".parse::<PathCapture>().is_err());
        assert_eq!(PathCapture::default(), PathCapture::Local);
    }

    #[test]
    fn capture_set_follows_local_nets() {
        let cfg = SmtpConfig {
            local_nets: vec!["198.18.0.0/15".parse().unwrap()],
            ..SmtpConfig::default()
        };
        let inside: IpAddr = "198.18.1.1".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(cfg.in_capture_set(inside));
        assert!(!cfg.in_capture_set(outside));
        let remote = SmtpConfig {
            mail_path_capture: PathCapture::Remote,
            ..cfg.clone()
        };
        assert!(!remote.in_capture_set(inside));
        assert!(remote.in_capture_set(outside));
        let all = SmtpConfig {
            mail_path_capture: PathCapture::All,
            ..cfg
        };
        assert!(all.in_capture_set(inside) && all.in_capture_set(outside));
    }
}
