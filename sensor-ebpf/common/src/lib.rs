//! Definitions shared by the XDP program (`sensor-ebpf`) and the userspace
//! sensor: map names and their index/key/value types, counter indices,
//! configuration slots, and the packet header walk both sides use to decide
//! what an SMTP frame is. Nothing here is declared a second time elsewhere.
//!
//! The crate is `no_std` and builds for `bpfel-unknown-none` as well as the
//! host. The `user` feature is for userspace-only conveniences.
#![no_std]

mod counters;
pub mod flowhash;
pub mod maps;
pub mod parse;
pub mod replay;

pub use maps::{ConfigSlot, Counter};
pub use parse::{
    Fragment, L4Location, PacketBytes, ParseError, Verdict, classify, locate_l4_from_ethernet,
    locate_l4_from_ethertype,
};
