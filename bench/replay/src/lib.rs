//! `smtp-replay`: a pcap replayer that can saturate the sensor on a veth
//! pair.
//!
//! tcpreplay into a veth tops out at about 0.35 Mpps on the project's
//! machines; the sensor's live path needs to be driven several times
//! harder. This replayer puts the capture into BPF maps ([`table`]) and has
//! a small XDP program of its own (`sensor-ebpf/src/bin/replay-xdp.rs`)
//! write frame after frame into the kernel's test packet and send it with
//! `XDP_TX`, driven by `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`
//! ([`sender`]): millions of frames per second from one core, in capture
//! order, paced in bursts or at top speed ([`run`]). Every pass after the
//! first can shift the addresses (like tcpreplay's `--unique-ip`) so passes
//! are new connections. It only sends captures between test hosts
//! (198.18.0.0/15, 2001:db8::/32).
//!
//! The receiving end must run its XDP program in native (driver) mode:
//! veth hands `XDP_TX` frames only to a native program (with a generic one
//! they are dropped and counted as `xdp_xmit_errors` in `ethtool -S`).

pub mod report;
pub mod run;
pub mod sender;
pub mod table;
