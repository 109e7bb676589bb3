//! Errors of live capture, each saying what to try next.

use std::path::PathBuf;

/// Why live capture could not start or had to stop. (aya's errors are
/// boxed: they are large and rare.)
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "this smtp-sensor binary has no XDP program embedded (it was built without the eBPF \
         toolchain); run `cargo xtask setup`, then rebuild with `cargo xtask build`"
    )]
    ProgramNotBuilt,

    #[error("network interface {0:?} not found; list interfaces with `ip link`")]
    InterfaceNotFound(String),

    #[error("cannot watch the state of {iface} over rtnetlink: {source}")]
    LinkWatch {
        iface: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{what}: permission denied; live capture needs root or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN + CAP_NET_RAW"
    )]
    PermissionDenied { what: String },

    #[error("cannot load the XDP program object: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    #[error(
        "the kernel rejected the XDP program: {0}; live capture needs Linux >= 5.10 with BPF enabled"
    )]
    Verifier(#[source] Box<aya::programs::ProgramError>),

    #[error(
        "the XDP program object has no {kind} named {name:?}; rebuild with `cargo xtask build`"
    )]
    MissingObject {
        kind: &'static str,
        name: &'static str,
    },

    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("attaching XDP to {iface} in {mode} mode failed: {source}; {hint}")]
    Attach {
        iface: String,
        mode: &'static str,
        hint: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("cannot start the eBPF log reader: {0}")]
    Logger(#[source] Box<aya_log::Error>),

    #[error(
        "AF_XDP socket on {iface} rx queue {queue}: {op} failed: {source}; check the queue exists \
         (`ethtool -l {iface}`, or pass --queues) and that no other program holds it"
    )]
    Socket {
        iface: String,
        queue: u32,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot count rx queues of {iface} ({path}): {source}; pass --queues N")]
    Queues {
        iface: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid capture option: {0}")]
    Option(String),

    #[error("cannot install the SIGINT/SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),

    #[error("the capture thread of rx queue {0} panicked; the XDP program was detached")]
    ThreadPanicked(u32),

    #[error("cannot write the stats file {path}: {source}")]
    StatsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CaptureError {
    /// Maps an errno-style failure to [`CaptureError::PermissionDenied`]
    /// when it is EPERM, so the message names the capabilities. (EACCES is
    /// not mapped: the verifier uses it for rejected programs.)
    pub(crate) fn permission_or(errno: Option<i32>, what: &str, other: Self) -> Self {
        match errno {
            Some(libc::EPERM) => CaptureError::PermissionDenied {
                what: what.to_string(),
            },
            _ => other,
        }
    }
}
