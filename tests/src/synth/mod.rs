//! Synthetic traffic: frames built byte by byte ([`frame`]) and written to
//! pcap files ([`pcap`]); SMTP sessions are composed from these.

pub mod attacks;
pub mod content;
pub mod demo;
pub mod frame;
pub mod pcap;
pub mod rng;
pub mod scenarios;
pub mod session;
pub mod smtp;
