//! SMTP session parser throughput (bytes/s) on a realistic transcript.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sensor_bench::transcript;
use smtp_sensor::config::Config;
use smtp_sensor::net::{ConnId, ConnInfo, Ts};
use smtp_sensor::pipeline::smtp_flow::smtp_config;
use smtp_sensor::smtp::anomaly::SmtpAnomaly;
use smtp_sensor::smtp::record::MessageRecord;
use smtp_sensor::smtp::session::SmtpSession;
use smtp_sensor::smtp::sink::{Reply, SmtpSink};

/// Counts what the session reports, so nothing is optimised away.
#[derive(Default)]
struct CountSink {
    replies: u64,
    records: u64,
}

impl SmtpSink for CountSink {
    fn reply(&mut self, _: &ConnInfo, _: &Reply<'_>) {
        self.replies += 1;
    }
    fn record(&mut self, _: &ConnInfo, r: MessageRecord) {
        self.records += u64::from(r.trans_depth > 0);
    }
    fn anomaly(&mut self, _: &ConnInfo, _: SmtpAnomaly) {}
}

fn bench(c: &mut Criterion) {
    let t = transcript();
    let bytes: usize = t.iter().map(|(_, b)| b.len()).sum();
    let cfg = Arc::new(smtp_config(&Config::default()));
    let id = ConnId {
        orig_h: "198.18.0.1"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        orig_p: 40000,
        resp_h: "198.19.0.25"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        resp_p: 25,
    };
    let conn = ConnInfo::new(id, Ts(1));
    let mut g = c.benchmark_group("smtp_session");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("transcript_3_messages", |b| {
        b.iter(|| {
            let mut sink = CountSink::default();
            let mut s = SmtpSession::new(conn, cfg.clone());
            for (dir, data) in &t {
                s.on_data(*dir, Ts(2), data, &mut sink);
            }
            s.on_close(Ts(3), &mut sink);
            assert_eq!(sink.records, 3);
            sink.replies
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
