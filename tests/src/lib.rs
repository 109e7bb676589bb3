//! Test support: synthetic SMTP traffic and pcap writing.
pub mod live_sensor;
pub mod logs;
pub mod mmdb;
pub mod netns;
pub mod offline;
pub mod scratch;
pub mod sensor_bin;
pub mod synth;
