//! The SMTP session fed an arbitrary two-direction transcript: client and
//! server bytes in any order, gaps (up to `u64::MAX` bytes), with the
//! default limits or tiny ones, and the three Received-path rules.
//!
//! Checks beyond "no panic": every reply and record keeps within the
//! limits, every record is one valid JSON line and one TSV line of the
//! right width, and handing a data step over in two pieces (a
//! [`Step::Split`]) changes no record and no anomaly count.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use smtp_sensor_fuzz::{Session, feed_plan, run_session, smtp_config};

fuzz_target!(|input: Session| {
    let cfg = Arc::new(smtp_config(input.config));
    let plan = feed_plan(&input.steps);
    let whole = run_session(&cfg, &plan, false);
    if plan.iter().any(|(_, at)| at.is_some()) {
        let split = run_session(&cfg, &plan, true);
        assert_eq!(whole.records, split.records, "records differ when split");
        // The same anomalies, counted alike; their order may differ: when
        // one piece of client bytes ends a cut server line and cuts a long
        // client line, which of the two is seen first depends on where the
        // piece was cut. Counts and weird.log rows (one per name) do not.
        let names = |a: &[smtp_sensor::smtp::anomaly::SmtpAnomaly]| {
            let mut v: Vec<&str> = a.iter().map(|x| x.name()).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(
            names(&whole.anomalies),
            names(&split.anomalies),
            "anomalies differ when split"
        );
    }
});
