//! Packet decode: an arbitrary frame of any link type the decoder knows.
//! The first byte picks the link type (low three bits) and whether
//! checksums are verified (bit 7); the rest is the frame.
//!
//! Checks beyond "no panic": a decoded payload lies inside the frame and,
//! when the capture holds the whole segment, is its tail; verifying the
//! checksums later (as the pipeline does after the port check) gives what
//! verifying them during decode gives; both directions of a segment give
//! one flow key and one flow hash.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensor_common::flowhash::FlowHashKey;
use smtp_sensor::decode::{
    DecodeOptions, Decoded, LinkType, decode, tcp_segment, verify_checksums,
};
use smtp_sensor::flow::key::FlowKey;
use smtp_sensor::flow::{flow_hash, random_flow_key};
use smtp_sensor::net::Ts;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::ALL[usize::from(sel & 7)];
    let verify = sel & 0x80 != 0;
    let opts = DecodeOptions {
        verify_checksums: verify,
    };
    let p = match decode(frame, link, Ts(1), opts) {
        Decoded::Tcp(p) => p,
        Decoded::Ignored => return,
        Decoded::Anomaly(a) => {
            assert!(!a.name().is_empty());
            return;
        }
    };
    let (start, end) = (
        frame.as_ptr() as usize,
        frame.as_ptr() as usize + frame.len(),
    );
    let pl = p.payload.as_ptr() as usize;
    assert!(
        p.payload.is_empty() || (pl >= start && pl + p.payload.len() <= end),
        "payload outside the frame"
    );
    if let Some(seg) = tcp_segment(frame, &p) {
        assert!(!p.truncated);
        assert!(
            seg.ends_with(p.payload),
            "payload is not the segment's tail"
        );
        assert!(seg.len() >= 20 + p.payload.len());
    }
    // Decoding without checksums then verifying gives the same flags.
    let Decoded::Tcp(mut q) = decode(
        frame,
        link,
        Ts(1),
        DecodeOptions {
            verify_checksums: false,
        },
    ) else {
        panic!("decode without checksums disagrees");
    };
    assert_eq!(q.payload, p.payload);
    verify_checksums(frame, &mut q);
    if verify {
        assert_eq!(q.bad_ip_checksum, p.bad_ip_checksum);
        assert_eq!(q.bad_tcp_checksum, p.bad_tcp_checksum);
    }
    // Both directions: one key, one hash.
    let (k1, a1) = FlowKey::new(p.src, p.sport, p.dst, p.dport);
    let (k2, a2) = FlowKey::new(p.dst, p.dport, p.src, p.sport);
    assert_eq!(k1, k2);
    assert!(a1 != a2 || (p.src == p.dst && p.sport == p.dport));
    // Symmetry holds whatever the key: one per process.
    static KEY: OnceLock<FlowHashKey> = OnceLock::new();
    let key = KEY.get_or_init(random_flow_key);
    assert_eq!(
        flow_hash(key, p.src, p.sport, p.dst, p.dport),
        flow_hash(key, p.dst, p.dport, p.src, p.sport)
    );
    let ports = smtp_sensor::decode::PortSet::new(&[25, 587]);
    assert_eq!(
        p.on_port(&ports),
        [25, 587].contains(&p.sport) || [25, 587].contains(&p.dport)
    );
});
