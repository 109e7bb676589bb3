//! files.log: the generator's messages with attachments in base64,
//! quoted-printable and 8bit, nested multiparts, an attached message and
//! RFC 2231 names, through the real offline pipeline. Each file's hashes
//! are checked against the RustCrypto hashes of the bytes the test
//! encoded (the encoders here and the `base64` crate, not the sensor's
//! decoders), its size, type and name against what was sent; smtp.log's
//! `fuids` must name exactly the message's files.log rows. A second part
//! feeds the same conversations to the SMTP session cut at every offset
//! of the message: no cut may change a hash.

use sensor_tests::synth::content::{base64_lines, binary};
use std::net::SocketAddr;

use md5::Digest as _;
use sensor_tests::offline::run_frames_with;
use sensor_tests::synth::session::{Effect, Side};
use sensor_tests::synth::smtp::{Message, SmtpConversation};
use serde_json::Value;
use smtp_sensor::net::{ConnId, ConnInfo, Direction, Ts};
use smtp_sensor::smtp::anomaly::SmtpAnomaly;
use smtp_sensor::smtp::files::FileInfo;
use smtp_sensor::smtp::record::MessageRecord;
use smtp_sensor::smtp::sink::{Reply, SmtpSink};
use smtp_sensor::smtp::{SmtpConfig, SmtpSession};

fn client() -> SocketAddr {
    "198.18.0.10:40000".parse().unwrap()
}

fn server() -> SocketAddr {
    "198.19.0.25:25".parse().unwrap()
}

/// Quoted-printable of `bytes`: CRLFs of the original become line breaks,
/// every byte but printable ASCII (and `=`, space, tab) becomes `=XX`,
/// lines are broken softly before 76 characters, and the last line ends
/// in a soft break so the decoded bytes are exactly `bytes`.
fn quoted_printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    let segments: Vec<&[u8]> = split_crlf(bytes);
    for (i, seg) in segments.iter().enumerate() {
        let mut col = 0;
        for &b in *seg {
            let enc = if (33..=126).contains(&b) && b != b'=' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if col + enc.len() > 73 {
                out.push_str("=\r\n");
                col = 0;
            }
            col += enc.len();
            out.push_str(&enc);
        }
        if i + 1 < segments.len() {
            out.push_str("\r\n");
        }
    }
    out.push('=');
    out
}

fn split_crlf(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            out.push(&bytes[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&bytes[start..]);
    out
}

/// The hashes of `bytes`, as files.log writes them.
fn hashes(bytes: &[u8]) -> [String; 3] {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    [
        hex(&md5::Md5::digest(bytes)),
        hex(&sha1::Sha1::digest(bytes)),
        hex(&sha2::Sha256::digest(bytes)),
    ]
}

/// What one file must look like in files.log.
struct Expect {
    depth: u64,
    mime_type: &'static str,
    filename: Option<&'static str>,
    content: Vec<u8>,
}

/// A PNG's first bytes and then noise: sniffed as image/png whatever the
/// part's Content-Type says.
fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend(binary(3000, 7));
    b
}

/// Text with Latin-1 and UTF-8 bytes, trailing blanks, a long line, a
/// line starting with `.` (dot-stuffed on the wire) and one starting `--`.
fn text() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice("Grüße aus Köln, trailing blanks:  \t\r\n".as_bytes());
    t.extend_from_slice(b"latin-1 \xe9t\xe9\r\n");
    t.extend_from_slice(&b"x".repeat(300));
    t.extend_from_slice(b"\r\n.starts with a dot\r\n-- not a boundary\r\n\r\nend");
    t
}

/// The encoded message: a multipart/mixed with a text body, a base64 PNG,
/// a quoted-printable text (RFC 2231 name), an 8bit part, a nested
/// multipart/alternative, and an attached message with a base64 part of
/// its own; the `Expect`ed files in order.
fn rich() -> (Message, Vec<Expect>) {
    let png = png();
    let qp = text();
    let eight = "8bit: naïve café\r\nsecond line\r\n".as_bytes().to_vec();
    let inner = binary(1000, 99);
    let body = format!(
        "preamble\r\n\
         --OUTER\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello,\r\nsee the attachments.\r\n\
         --OUTER\r\n\
         Content-Type: application/octet-stream; name=\"ignored.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"logo.png\"\r\n\
         \r\n\
         {png}\r\n\
         --OUTER\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\n\
         Content-Transfer-Encoding: Quoted-Printable\r\n\
         Content-Disposition: attachment;\r\n\
         \tfilename*0*=UTF-8''r%C3%A9sum%C3%A9;\r\n\
         \tfilename*1=\".txt\"\r\n\
         \r\n\
         {qp}\r\n\
         --OUTER\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {eight}\r\n\
         --OUTER\r\n\
         Content-Type: multipart/alternative; boundary=\"ALT\"\r\n\
         \r\n\
         --ALT\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         plain alternative\r\n\
         --ALT\r\n\
         Content-Type: text/html\r\n\
         \r\n\
         <html><body>html alternative</body></html>\r\n\
         --ALT--\r\n\
         --OUTER\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: attachment; filename=\"forwarded.eml\"\r\n\
         \r\n\
         From: <inner@example.org>\r\n\
         Subject: inner\r\n\
         Content-Type: multipart/mixed; boundary=\"INNER\"\r\n\
         \r\n\
         --INNER\r\n\
         Content-Type: application/x-data\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=inner.dat\r\n\
         \r\n\
         {inner64}\r\n\
         --INNER--\r\n\
         --OUTER--\r\n\
         epilogue\r\n",
        png = base64_lines(&png),
        qp = quoted_printable(&qp),
        eight = String::from_utf8(eight.clone()).unwrap(),
        inner64 = base64_lines(&inner),
    );
    let msg = Message::new()
        .header("From", "<alice@example.com>")
        .header("To", "<bob@example.net>")
        .header("Subject", "files")
        .header("MIME-Version", "1.0")
        .header("Content-Type", "multipart/mixed; boundary=\"OUTER\"")
        .body(&body);
    // Entities in order: 1 OUTER, 2 text, 3 png, 4 qp, 5 8bit, 6 ALT,
    // 7 plain, 8 html, 9 message/rfc822, 10 its top entity (INNER),
    // 11 inner.dat.
    // An 8bit part in a multipart keeps every line end but the last (the
    // one before the boundary): the text here ends in CRLF, and the empty
    // line after it gives it back, so the file is the text as it is.
    let eight_decoded = eight.clone();
    let expect = vec![
        Expect {
            depth: 2,
            mime_type: "text/plain",
            filename: None,
            content: b"Hello,\r\nsee the attachments.".to_vec(),
        },
        Expect {
            depth: 3,
            mime_type: "image/png",
            filename: Some("logo.png"),
            content: png,
        },
        Expect {
            depth: 4,
            mime_type: "text/plain",
            filename: Some("résumé.txt"),
            content: qp,
        },
        Expect {
            depth: 5,
            mime_type: "text/plain",
            filename: None,
            content: eight_decoded,
        },
        Expect {
            depth: 7,
            mime_type: "text/plain",
            filename: None,
            content: b"plain alternative".to_vec(),
        },
        Expect {
            depth: 8,
            mime_type: "text/html",
            filename: None,
            content: b"<html><body>html alternative</body></html>".to_vec(),
        },
        Expect {
            depth: 11,
            mime_type: "application/x-data",
            filename: Some("inner.dat"),
            content: inner,
        },
    ];
    (msg, expect)
}

fn conversation(msg: Message) -> SmtpConversation {
    SmtpConversation::builder()
        .client(client())
        .server(server())
        .start(Ts::from_secs(1_000))
        .mss(1460)
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .message(msg)
        .build()
}

/// Zeek's hash-all-files set (the sensor's default is SHA-256 only): the
/// tests check all three hashes.
fn all_hashes() -> smtp_sensor::config::Config {
    smtp_sensor::config::Config::load(None, &["file_hashes=md5,sha1,sha256".to_owned()])
        .expect("file_hashes applies")
}

fn all_hashes_smtp() -> SmtpConfig {
    let mut c = SmtpConfig::default();
    c.files.hashes = smtp_sensor::smtp::files::HashSet::ALL;
    c
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn check_file(row: &Value, want: &Expect) {
    let what = format!("depth {}: {row}", want.depth);
    assert_eq!(row["depth"], want.depth, "{what}");
    assert_eq!(row["source"], "SMTP", "{what}");
    assert_eq!(row["mime_type"], want.mime_type, "{what}");
    match want.filename {
        Some(n) => assert_eq!(row["filename"], n, "{what}"),
        None => assert!(row.get("filename").is_none(), "{what}"),
    }
    assert_eq!(row["seen_bytes"], want.content.len() as u64, "{what}");
    assert_eq!(row["missing_bytes"], 0, "{what}");
    assert_eq!(row["timedout"], false, "{what}");
    assert_eq!(row["is_orig"], true, "{what}");
    assert_eq!(
        row["analyzers"],
        serde_json::json!(["MD5", "SHA1", "SHA256"])
    );
    let [md5, sha1, sha256] = hashes(&want.content);
    assert_eq!(row["md5"], md5.as_str(), "{what}");
    assert_eq!(row["sha1"], sha1.as_str(), "{what}");
    assert_eq!(row["sha256"], sha256.as_str(), "{what}");
    let fuid = row["fuid"].as_str().expect("fuid");
    assert_eq!(fuid.len(), 18, "{what}");
    assert!(fuid.starts_with('F') && fuid[1..].bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn every_part_is_a_file_with_the_hashes_of_its_decoded_bytes() {
    let (msg, expect) = rich();
    let (dir, _) = run_frames_with(
        &all_hashes(),
        "golden-files-rich",
        &conversation(msg).frames(),
        1,
    );
    let smtp = json_lines(&std::fs::read_to_string(dir.join("smtp.log")).unwrap());
    let files = json_lines(&std::fs::read_to_string(dir.join("files.log")).unwrap());
    assert_eq!(smtp.len(), 1);
    assert_eq!(files.len(), expect.len(), "{files:#?}");
    for (row, want) in files.iter().zip(&expect) {
        check_file(row, want);
        assert_eq!(row["uid"], smtp[0]["uid"]);
        assert_eq!(row["id.orig_h"], "198.18.0.10");
        assert_eq!(row["id.resp_p"], 25);
    }
    // smtp.log names the same files, in order, and the file names.
    let fuids: Vec<&Value> = files.iter().map(|r| &r["fuid"]).collect();
    assert_eq!(
        smtp[0]["fuids"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        fuids
    );
    assert_eq!(
        smtp[0]["files"],
        serde_json::json!(["logo.png", "résumé.txt", "forwarded.eml", "inner.dat"])
    );
    // Zeek TSV: the same rows, the #fields line in Zeek's order.
    let frames = conversation(rich().0).frames();
    let dir2 = sensor_tests::scratch::Scratch::new("golden-files-tsv");
    let pcap = dir2.join("in.pcap");
    sensor_tests::synth::pcap::write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice())))
        .unwrap();
    let opts = smtp_sensor::pipeline::RunOptions {
        log_dir: dir2.path().to_path_buf(),
        format: smtp_sensor::output::LogFormat::Zeek,
        workers: 2,
        decode: smtp_sensor::decode::DecodeOptions::default(),
    };
    smtp_sensor::pipeline::run_offline(&all_hashes(), &pcap, &opts).unwrap();
    let tsv = std::fs::read_to_string(dir2.join("files.log")).unwrap();
    assert!(tsv.contains(
        "#fields\tts\tfuid\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tsource\tdepth\tanalyzers\tmime_type\tfilename\tduration\tlocal_orig\tis_orig\tseen_bytes\ttotal_bytes\tmissing_bytes\toverflow_bytes\ttimedout\tparent_fuid\tmd5\tsha1\tsha256\tcommunity_id\n"
    ));
    let rows: Vec<&str> = tsv.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), expect.len());
    for (row, want) in rows.iter().zip(&expect) {
        let sha1 = &hashes(&want.content)[1];
        assert!(row.contains(sha1.as_str()), "{row}");
    }
}

#[test]
fn hashes_follow_the_config_and_the_cap() {
    let (msg, expect) = rich();
    let frames = conversation(msg).frames();
    let dir = sensor_tests::scratch::Scratch::new("golden-files-cfg");
    let pcap = dir.join("in.pcap");
    sensor_tests::synth::pcap::write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice())))
        .unwrap();
    let run = |sets: &[&str]| {
        // Zeek's set first; the test's own settings override it.
        let sets: Vec<String> = std::iter::once("file_hashes=md5,sha1,sha256")
            .chain(sets.iter().copied())
            .map(str::to_owned)
            .collect();
        let cfg = smtp_sensor::config::Config::load(None, &sets).unwrap();
        let opts = smtp_sensor::pipeline::RunOptions {
            log_dir: dir.path().to_path_buf(),
            format: smtp_sensor::output::LogFormat::Json,
            workers: 1,
            decode: smtp_sensor::decode::DecodeOptions::default(),
        };
        let summary = smtp_sensor::pipeline::run_offline(&cfg, &pcap, &opts).unwrap();
        let rows = json_lines(&std::fs::read_to_string(dir.join("files.log")).unwrap());
        (rows, summary)
    };
    let (rows, _) = run(&["file_hashes=sha256"]);
    for (row, want) in rows.iter().zip(&expect) {
        assert_eq!(row["analyzers"], serde_json::json!(["SHA256"]));
        assert!(row.get("md5").is_none() && row.get("sha1").is_none());
        assert_eq!(row["sha256"], hashes(&want.content)[2].as_str());
    }
    let (rows, _) = run(&["file_hashes=[]"]);
    assert_eq!(rows.len(), expect.len());
    assert!(
        rows.iter()
            .all(|r| r.get("sha256").is_none() && r["analyzers"] == serde_json::json!([]))
    );
    // A cap of 1000 bytes: the larger file (the PNG) loses its hashes
    // (counted), the others keep them, inner.dat of exactly 1000 bytes
    // too; sizes are whole either way.
    let (rows, summary) = run(&["file_hash_max_bytes=1000"]);
    let mut cut = 0;
    for (row, want) in rows.iter().zip(&expect) {
        assert_eq!(row["seen_bytes"], want.content.len() as u64);
        if want.content.len() > 1000 {
            cut += 1;
            assert!(row.get("sha1").is_none(), "{row}");
        } else {
            assert_eq!(row["sha1"], hashes(&want.content)[1].as_str());
        }
    }
    assert_eq!(cut, 1);
    assert!(expect.iter().any(|e| e.content.len() == 1000));
    assert_eq!(
        summary.anomalies.get("mime_file_hash_truncated"),
        cut,
        "{:?}",
        summary.anomalies
    );
}

#[test]
fn a_gap_inside_a_part_counts_its_missing_bytes() {
    let data = binary(20_000, 3);
    let msg = Message::new()
        .header("From", "<alice@example.com>")
        .header("Subject", "gap")
        .header("Content-Type", "application/octet-stream")
        .header("Content-Transfer-Encoding", "base64")
        .body(&format!("{}\r\n", base64_lines(&data)));
    // Client data segments: greeting answer EHLO, MAIL, RCPT, DATA, then
    // the message in 1000-byte segments; lose one in its middle.
    let conv = SmtpConversation::builder()
        .client(client())
        .server(server())
        .start(Ts::from_secs(1_000))
        .mss(1000)
        .effect(Effect::Drop {
            side: Side::Client,
            n: 14,
        })
        .mail("alice@example.com")
        .rcpt("bob@example.net")
        .message(msg)
        .build();
    let (dir, _) = run_frames_with(&all_hashes(), "golden-files-gap", &conv.frames(), 1);
    let files = json_lines(&std::fs::read_to_string(dir.join("files.log")).unwrap());
    assert_eq!(files.len(), 1, "{files:?}");
    let f = &files[0];
    assert_eq!(f["missing_bytes"], 1000, "{f}");
    // The bytes before the gap were seen; a file with a hole has no hashes.
    let seen = f["seen_bytes"].as_u64().unwrap();
    assert!(seen > 0 && seen < data.len() as u64, "{f}");
    assert_eq!(seen % 3, 0, "whole base64 groups: {f}");
    assert!(f.get("sha1").is_none(), "{f}");
    assert_eq!(f["depth"], 1);
    assert_eq!(f["mime_type"], "application/octet-stream");
}

/// A sink that keeps the session's records.
#[derive(Default)]
struct Records {
    records: Vec<MessageRecord>,
    anomalies: Vec<SmtpAnomaly>,
}

impl SmtpSink for Records {
    fn reply(&mut self, _: &ConnInfo, _: &Reply<'_>) {}
    fn record(&mut self, _: &ConnInfo, r: MessageRecord) {
        self.records.push(r);
    }
    fn anomaly(&mut self, _: &ConnInfo, a: SmtpAnomaly) {
        self.anomalies.push(a);
    }
}

/// The conversation's turns: `(side, bytes)`, in order.
fn turns(c: &SmtpConversation) -> Vec<(Side, Vec<u8>)> {
    let mut out: Vec<(Side, Vec<u8>)> = Vec::new();
    for s in c.session().segments() {
        if s.payload.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((side, bytes)) if *side == s.from => bytes.extend_from_slice(&s.payload),
            _ => out.push((s.from, s.payload)),
        }
    }
    out
}

/// Runs a session over `turns`, the client turn `cut_turn` handed in as
/// the pieces `cut` makes of it; the files of its records.
fn session_files(
    turns: &[(Side, Vec<u8>)],
    cut_turn: usize,
    cut: &dyn Fn(&[u8]) -> Vec<Vec<u8>>,
) -> Vec<FileInfo> {
    let id = ConnId {
        orig_h: client().ip(),
        orig_p: client().port(),
        resp_h: server().ip(),
        resp_p: server().port(),
    };
    let conn = ConnInfo::new(id, Ts(1));
    let mut s = SmtpSession::new(conn, std::sync::Arc::new(all_hashes_smtp()));
    let mut sink = Records::default();
    for (t, (side, bytes)) in turns.iter().enumerate() {
        let dir = match side {
            Side::Client => Direction::Orig,
            Side::Server => Direction::Resp,
        };
        let ts = Ts(1_000 + t as u64);
        if t == cut_turn {
            for piece in cut(bytes) {
                s.on_data(dir, ts, &piece, &mut sink);
            }
        } else {
            s.on_data(dir, ts, bytes, &mut sink);
        }
    }
    s.on_close(Ts(9_999), &mut sink);
    assert!(
        !sink.anomalies.iter().any(|a| matches!(
            a,
            SmtpAnomaly::IllegalEncoding | SmtpAnomaly::MissingClosingBoundary
        )),
        "{:?}",
        sink.anomalies
    );
    sink.records.into_iter().flat_map(|r| r.files).collect()
}

#[test]
fn no_segmentation_changes_a_hash() {
    let (msg, expect) = rich();
    let conv = conversation(msg);
    let turns = turns(&conv);
    // The client turn that carries the message: the longest.
    let data_turn = (0..turns.len()).max_by_key(|&t| turns[t].1.len()).unwrap();
    let whole = session_files(&turns, usize::MAX, &|b| vec![b.to_vec()]);
    assert_eq!(whole.len(), expect.len());
    for (f, want) in whole.iter().zip(&expect) {
        assert_eq!(f.seen_bytes, want.content.len() as u64);
        let sha1: String = f
            .hashes
            .sha1
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha1, hashes(&want.content)[1]);
    }
    let len = turns[data_turn].1.len();
    // Two pieces, cut at every offset.
    for at in 1..len {
        let got = session_files(&turns, data_turn, &|b| {
            vec![b[..at].to_vec(), b[at..].to_vec()]
        });
        assert_eq!(got, whole, "cut at {at} of {len}");
    }
    // Every byte on its own, and pieces of 2..=7 bytes.
    for n in 1..=7 {
        let got = session_files(&turns, data_turn, &|b| {
            b.chunks(n).map(<[u8]>::to_vec).collect()
        });
        assert_eq!(got, whole, "pieces of {n}");
    }
}

#[test]
fn a_connection_that_ends_inside_a_part_times_the_file_out() {
    let data = binary(3000, 5);
    let msg = Message::new()
        .header("From", "<alice@example.com>")
        .header("Content-Type", "multipart/mixed; boundary=B")
        .body(&format!(
            "--B\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64_lines(&data)
        ));
    let conv = conversation(msg);
    let mut turns = turns(&conv);
    // Keep the conversation up to the message, without its final `.`.
    let data_turn = (0..turns.len()).max_by_key(|&t| turns[t].1.len()).unwrap();
    turns.truncate(data_turn + 1);
    let bytes = &mut turns[data_turn].1;
    let end = bytes.len() - b".\r\n".len();
    bytes.truncate(end);
    let files = session_files_lenient(&turns);
    assert_eq!(files.len(), 1);
    assert!(files[0].timedout);
    assert_eq!(files[0].seen_bytes, data.len() as u64);
    assert_eq!(
        files[0].hashes.sha256.map(|d| d.to_vec()),
        Some(sha2::Sha256::digest(&data).to_vec())
    );
}

/// [`session_files`] without the anomaly check (for truncated input).
fn session_files_lenient(turns: &[(Side, Vec<u8>)]) -> Vec<FileInfo> {
    let id = ConnId {
        orig_h: client().ip(),
        orig_p: client().port(),
        resp_h: server().ip(),
        resp_p: server().port(),
    };
    let mut s = SmtpSession::new(
        ConnInfo::new(id, Ts(1)),
        std::sync::Arc::new(all_hashes_smtp()),
    );
    let mut sink = Records::default();
    for (t, (side, bytes)) in turns.iter().enumerate() {
        let dir = match side {
            Side::Client => Direction::Orig,
            Side::Server => Direction::Resp,
        };
        s.on_data(dir, Ts(1_000 + t as u64), bytes, &mut sink);
    }
    s.on_close(Ts(9_999), &mut sink);
    assert!(
        sink.anomalies
            .contains(&SmtpAnomaly::MissingClosingBoundary)
    );
    sink.records.into_iter().flat_map(|r| r.files).collect()
}
