//! smtp-sensor: a passive SMTP sensor.
//!
//! The module layout follows the data flow:
//! capture → decode → flow → smtp → detect → output, wired together in
//! `pipeline`. The same pipeline runs online (AF_XDP) and offline (pcap), so
//! offline tests exercise the real path.

pub mod affinity;
pub mod anomaly;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod fleet;
pub mod flow;
pub mod manual;
pub mod metrics;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod service;
pub mod signals;
pub mod smtp;
pub mod telemetry;
