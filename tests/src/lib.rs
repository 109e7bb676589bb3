//! Test support: synthetic SMTP traffic and pcap writing.
pub mod mmdb;
pub mod live_sensor;
pub mod netns;
pub mod sensor_bin;
pub mod synth;
