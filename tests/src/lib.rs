//! Test support: synthetic SMTP traffic and pcap writing.
pub mod mmdb;
pub mod synth;
