//! The Prometheus endpoint (`--metrics-addr`): the run's [`Telemetry`]
//! rendered at scrape time as OpenMetrics text, or as the Prometheus text
//! format 0.0.4 for a scraper that asks for it, served over HTTP/1.1 from a
//! thread of its own.
//!
//! The packet path never sees this module: it only bumps the counters in
//! [`Telemetry`]; a scrape reads them (relaxed atomics and the workers'
//! published snapshots). Tokio runs here, on the `metrics` thread, and
//! nowhere on the packet path.
//!
//! [`Telemetry`]: crate::telemetry::Telemetry

mod exposition;
mod format;
mod process;
mod server;

use std::net::SocketAddr;

pub use exposition::Exposition;
pub use format::{Format, OPENMETRICS, PROMETHEUS_TEXT, to_prometheus_text};
pub use process::ProcessStats;
pub use server::{MetricsServer, spawn};

/// What can go wrong starting or running the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listening socket could not be opened (address in use, not local,
    /// no permission for a low port).
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime of the metrics thread could not be built.
    #[error("cannot start the metrics runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The `metrics` thread could not be started.
    #[error("cannot start the metrics thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Encoding the exposition failed (a scrape answers 500).
    #[error("cannot render the metrics")]
    Render(#[from] std::fmt::Error),
}
