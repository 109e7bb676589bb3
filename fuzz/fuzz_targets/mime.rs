//! The MIME/header parser: an arbitrary message body, line by line, through
//! the MIME tracker into a transaction (the headers the record reads:
//! addresses, Received path, X-Originating-IP, file names), then the
//! record as a log line; and each line through the pure header parsers
//! (parameters, RFC 2231 values, addresses, IP addresses, commands and
//! replies). The first byte selects the session configuration (see
//! `smtp_config`) and, with bit 4, that the body's top-level headers are
//! not read (a later body of the transaction).
//!
//! Checks beyond "no panic": the lines the tracker's `interest` says it
//! ignores change nothing (the session's body fast path steps over them),
//! `inert_prefix` stops at a line end before any line that is too long or
//! starts with a mark, and the record is a valid JSON line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_sensor::net::{ConnInfo, Ts};
use smtp_sensor::smtp::SmtpConfig;
use smtp_sensor::smtp::anomaly::SmtpAnomaly;
use smtp_sensor::smtp::lines::{inert_prefix, strip_crs};
use smtp_sensor::smtp::message::{HeaderApplier, Transaction};
use smtp_sensor::smtp::mime::{MimeTracker, decode_rfc2231, for_each_param, param};
use smtp_sensor::smtp::parser::{
    for_each_email_addr, for_each_ip_addr, for_each_mime_address, parse_bdat_arg, parse_command,
    parse_header, parse_reply, received_addr,
};
use smtp_sensor::smtp::record::MessageRecord;
use smtp_sensor_fuzz::{CheckingSink, conn, smtp_config};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let cfg = smtp_config(sel);
    let top = sel & 0x10 == 0;
    let max = cfg.limits.max_line_len;
    // Lines as the session frames them: without the line end, cut at the
    // line limit, then trailing CRs stripped.
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(|l| strip_crs(&l[..l.len().min(max)]))
        .collect();
    let c = conn();
    let all = track(&cfg, &c, top, &lines, false);
    let sparse = track(&cfg, &c, top, &lines, true);
    assert_eq!(all.0, sparse.0, "skipping ignored lines changed the record");
    assert_eq!(
        all.1, sparse.1,
        "skipping ignored lines changed the anomalies"
    );
    let mut sink = CheckingSink::new(cfg.limits.clone());
    smtp_sensor::smtp::sink::SmtpSink::record(&mut sink, &c, all.0);

    for marks in [&b""[..], b"-", b".", b".-"] {
        let n = inert_prefix(body, max, marks);
        assert!(n <= body.len());
        assert!(n == 0 || body[n - 1] == b'\n', "inert prefix ends mid-line");
        for line in body[..n].split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            assert!(text.len() <= max, "inert prefix holds a long line");
            assert!(
                !text.first().is_some_and(|b| marks.contains(b)),
                "inert prefix holds a marked line"
            );
        }
    }

    for line in &lines {
        headers_and_commands(line);
    }
});

/// The body through a tracker; `sparse`: without the lines the tracker
/// says it ignores.
fn track(
    cfg: &SmtpConfig,
    c: &ConnInfo,
    top: bool,
    lines: &[&[u8]],
    sparse: bool,
) -> (MessageRecord, Vec<SmtpAnomaly>) {
    let mut tx = Transaction::new(c);
    tx.touch(Ts(5));
    let mut anomalies = Vec::new();
    let mut mime = MimeTracker::default();
    mime.begin(top);
    for line in lines {
        if sparse
            && let Some(marks) = mime.interest().marks(false)
            && !line.first().is_some_and(|b| marks.contains(b))
        {
            // The session's fast path: stepped-over lines still go to the
            // open file, with their line end.
            if mime.file_open() {
                mime.inert_lines(&[*line, b"\n"].concat(), &mut anomalies);
            }
            continue;
        }
        let mut applier = HeaderApplier {
            tx: &mut tx,
            cfg,
            anomalies: &mut anomalies,
        };
        mime.line(line, &cfg.limits, &mut applier);
    }
    let mut applier = HeaderApplier {
        tx: &mut tx,
        cfg,
        anomalies: &mut anomalies,
    };
    mime.finish(&cfg.limits, &mut applier);
    (tx.finish(Ts(6), 1, Some("helo")), anomalies)
}

/// The pure parsers on one line.
fn headers_and_commands(line: &[u8]) {
    if let Some((name, value)) = parse_header(line) {
        assert!(!name.is_empty());
        assert!(!name.contains(&b':'));
        let _ = param(value, b"filename");
        let _ = param(value, b"boundary");
        for_each_param(value, |a, v| {
            let _ = (a.len(), v.len());
        });
        let _ = decode_rfc2231(value);
        for_each_mime_address(&String::from_utf8_lossy(value), |a| {
            assert!(!a.is_empty());
        });
        let _ = received_addr(value);
    }
    for_each_email_addr(line, |a| assert!(a.contains('@'), "address {a:?}"));
    let mut n = 0;
    for_each_ip_addr(line, true, |_| n += 1);
    // Without the wrapping check every position is tried: short lines only.
    if line.len() <= 256 {
        for_each_ip_addr(line, false, |_| {});
    }
    let cmd = parse_command(line);
    let _ = cmd;
    if let Some(r) = parse_reply(line) {
        let _ = r;
    }
    let _ = parse_bdat_arg(line);
}
