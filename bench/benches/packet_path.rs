//! Per-packet cost (ns/packet) of decode, decode + flow table + reassembly,
//! and the whole worker path (decode, flows, SMTP sessions, detector).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sensor_bench::capture;
use smtp_sensor::anomaly::AnomalyCounts;
use smtp_sensor::config::Config;
use smtp_sensor::decode::{DecodeOptions, Decoded, LinkType, checksum, decode};
use smtp_sensor::detect::Detection;
use smtp_sensor::flow::{FlowConfig, FlowTable, StreamParser};
use smtp_sensor::net::{Direction, Ts};
use smtp_sensor::pipeline::{Worker, smtp_flow};

/// A parser that only counts the bytes it is given.
struct Count;

impl StreamParser<u64> for Count {
    fn on_data(&mut self, _: Direction, _: Ts, data: &[u8], n: &mut u64) {
        *n += data.len() as u64;
    }
    fn on_gap(&mut self, _: Direction, _: Ts, _: u64, _: &mut u64) {}
    fn on_close(&mut self, _: Ts, _: &mut u64) {}
}

fn bench(c: &mut Criterion) {
    let frames = capture(200);
    let mut g = c.benchmark_group("packet_path");
    g.throughput(Throughput::Elements(frames.len() as u64));
    for verify in [false, true] {
        let opts = DecodeOptions {
            verify_checksums: verify,
        };
        let name = if verify { "decode_checksums" } else { "decode" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0u64;
                for (ts, f) in &frames {
                    if let Decoded::Tcp(p) = decode(f, LinkType::Ethernet, *ts, opts) {
                        n += p.payload.len() as u64;
                    }
                }
                n
            })
        });
    }
    let opts = DecodeOptions {
        verify_checksums: false,
    };
    g.bench_function("decode_flow_reassembly", |b| {
        b.iter(|| {
            let mut table: FlowTable<Count> = FlowTable::new(FlowConfig::default());
            let mut bytes = 0u64;
            let mut an = AnomalyCounts::new();
            for (ts, f) in &frames {
                if let Decoded::Tcp(p) = decode(f, LinkType::Ethernet, *ts, opts) {
                    table.process(&p, &mut bytes, &mut an, &mut |_| Count);
                }
            }
            table.flush_all(Ts(u64::MAX / 2), &mut bytes, &mut an);
            bytes
        })
    });
    let cfg = Config::default();
    let det = Detection::from_config(&cfg).map(Arc::new);
    if let Ok(det) = det {
        let factory = smtp_flow::factory(&cfg);
        g.bench_function("worker_full_smtp", |b| {
            b.iter(|| {
                let mut w = Worker::new(
                    0,
                    FlowConfig::from_config(&cfg),
                    det.clone(),
                    factory.clone(),
                );
                for (ts, f) in &frames {
                    if let Decoded::Tcp(p) = decode(f, LinkType::Ethernet, *ts, opts) {
                        w.packet(&p);
                        let _ = w.partial();
                    }
                }
                w.finish(Ts(u64::MAX / 2)).records.len()
            })
        });
    }
    g.finish();
    // The checksum alone, over a pure ACK, a command, a load-capture-sized
    // and a full-size segment.
    let mut g = c.benchmark_group("checksum");
    let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
    for n in [20usize, 60, 250, 1400] {
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("{n}B"), |b| {
            b.iter(|| checksum::fold(checksum::sum(std::hint::black_box(&data[..n]), 0)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
