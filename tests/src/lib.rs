//! Test support: synthetic SMTP traffic and pcap writing.
pub mod mmdb;
pub mod netns;
pub mod synth;
