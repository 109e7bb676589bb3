//! The command-line contract (SEMANTICS.md): exit codes, one-line errors
//! naming the file, truncated captures, standard input, Zeek TSV output.
//! Runs the real `smtp-sensor` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sensor_tests::scratch::Scratch;
use sensor_tests::sensor_bin::sensor_bin;
use sensor_tests::synth::pcap::write_pcap;
use sensor_tests::synth::scenarios;

/// A scratch directory for one test, removed when the test ends.
fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("cli-{name}"))
}

fn run(args: &[&str]) -> Output {
    Command::new(sensor_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn basic_pcap(dir: &Path) -> PathBuf {
    let (_, frames) = scenarios::golden()
        .into_iter()
        .find(|(n, _)| *n == "pipelining")
        .unwrap();
    let p = dir.join("in.pcap");
    write_pcap(&p, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    p
}

#[test]
fn missing_file_is_exit_2_naming_it() {
    let d = scratch("missing");
    let o = run(&[
        "-r",
        "/nonexistent/dir/x.pcap",
        "-l",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("/nonexistent/dir/x.pcap"));
}

#[test]
fn not_a_capture_and_empty_file_are_exit_2() {
    let d = scratch("notpcap");
    let text = d.join("notes.txt");
    std::fs::write(&text, "this is not a capture file, just some text\n").unwrap();
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    for f in [&text, &empty] {
        let o = run(&["-r", f.to_str().unwrap(), "-l", d.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        let lines = stderr_lines(&o);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(f.to_str().unwrap()), "{lines:?}");
    }
}

#[test]
fn bad_config_value_is_exit_2() {
    let d = scratch("badcfg");
    let p = basic_pcap(d.path());
    let o = run(&[
        "-r",
        p.to_str().unwrap(),
        "-l",
        d.path().to_str().unwrap(),
        "--set",
        "spam_threshold=lots",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("spam_threshold"), "{lines:?}");
    let o = run(&["-r", p.to_str().unwrap(), "-l", "/nonexistent/logs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_lines(&o)[0].contains("/nonexistent/logs"));
}

#[test]
fn truncated_capture_keeps_complete_messages_and_exits_0() {
    let d = scratch("trunc");
    let p = basic_pcap(d.path());
    let full = std::fs::read(&p).unwrap();
    let cut = d.join("cut.pcap");
    // Cut inside the last record (the final ACK of the close).
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let o = run(&[
        "-r",
        cut.to_str().unwrap(),
        "-l",
        d.path().to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("cut.pcap") && lines[0].contains("warning"));
    let log = std::fs::read_to_string(d.join("smtp.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        3,
        "all three transactions precede the cut"
    );
}

#[test]
fn every_cut_of_a_capture_is_handled() {
    let d = scratch("cuts");
    let p = basic_pcap(d.path());
    let full = std::fs::read(&p).unwrap();
    let cut = d.join("cut.pcap");
    let step = full.len() / 25;
    for n in (0..full.len())
        .step_by(step.max(1))
        .chain([1, 23, 24, 25, 39, 40])
    {
        std::fs::write(&cut, &full[..n]).unwrap();
        let o = run(&[
            "-r",
            cut.to_str().unwrap(),
            "-l",
            d.path().to_str().unwrap(),
            "-q",
        ]);
        let code = o.status.code();
        // Up to the file header: not a capture. After: exit 0.
        let want = if n < 24 { 2 } else { 0 };
        assert_eq!(code, Some(want), "cut at {n}: {:?}", stderr_lines(&o));
    }
}

#[test]
fn stdin_and_zeek_format() {
    let d = scratch("stdin");
    let p = basic_pcap(d.path());
    let o = Command::new(sensor_bin())
        .args([
            "-r",
            "-",
            "-l",
            d.path().to_str().unwrap(),
            "--log-format",
            "zeek",
            "-q",
        ])
        .stdin(std::fs::File::open(&p).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    let log = std::fs::read_to_string(d.join("smtp.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "#separator \\x09");
    assert_eq!(lines[4], "#path\tsmtp");
    assert!(lines[6].starts_with(
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\thelo"
    ));
    assert!(lines[7].starts_with("#types\ttime\tstring\taddr\tport"));
    assert!(lines.last().unwrap().starts_with("#close\t"));
    let rows: Vec<&&str> = lines.iter().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 3);
    // Zeek's 26 columns, then last_error, files and community_id.
    assert!(rows.iter().all(|r| r.split('\t').count() == 29));
    let notice = std::fs::read_to_string(d.join("notice.log")).unwrap();
    assert!(notice.contains("#path\tnotice"));
    // files.log beside it, in the same format, one row per fuid.
    let files = std::fs::read_to_string(d.join("files.log")).unwrap();
    assert!(files.contains("#path\tfiles"));
    // `fuids` in Zeek's place, the 26th column.
    let at = lines[6].split('\t').skip(1).position(|c| c == "fuids");
    assert_eq!(at, Some(25), "{}", lines[6]);
    let fuids: usize = rows
        .iter()
        .map(|r| r.split('\t').nth(25).unwrap_or("(empty)"))
        .filter(|f| *f != "(empty)")
        .map(|f| f.split(',').count())
        .sum();
    let file_rows = files.lines().filter(|l| !l.starts_with('#')).count();
    assert!(file_rows > 0);
    assert_eq!(file_rows, fuids);
}

#[test]
fn summary_names_anomalies() {
    let d = scratch("summary");
    let p = basic_pcap(d.path());
    let o = run(&[
        "-r",
        p.to_str().unwrap(),
        "-l",
        d.path().to_str().unwrap(),
        "--workers",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("packets"), "{err}");
    assert!(err.contains("3 smtp.log records"), "{err}");
}

/// SIGTERM ends a run reading a pipe that stays open without data (a
/// capture tool feeding `-r -` on a quiet link): exit 0, and every
/// connection read so far is in smtp.log, the one still open included.
#[test]
fn sigterm_ends_a_run_on_an_idle_pipe_and_flushes() {
    use sensor_tests::synth::smtp::{Ending, SmtpConversation};
    use std::io::Write;
    use std::time::{Duration, Instant};

    let dir = scratch("sigterm-pipe");
    let conv = |port: u16, ending| {
        SmtpConversation::builder()
            .client(std::net::SocketAddr::from(([198, 18, 0, 2], port)))
            .server(std::net::SocketAddr::from(([198, 19, 0, 25], 25)))
            .start(smtp_sensor::net::Ts::from_secs(1_700_000_000))
            .mail("a@example.com")
            .rcpt("b@example.net")
            .ending(ending)
            .build()
            .frames()
    };
    let mut frames = conv(40500, Ending::Quit);
    frames.extend(conv(40501, Ending::Open));
    let pcap = dir.write("in.pcap", []);
    write_pcap(&pcap, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let bytes = std::fs::read(&pcap).unwrap();

    let mut child = Command::new(sensor_bin())
        .args(["-r", "-", "-l"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes).unwrap();
    stdin.flush().unwrap();
    // The pipe stays open: without the signal the run would never end.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("smtp-sensor -r - did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "exit {status}: {err}");
    assert!(err.contains("stopped by a signal"), "{err}");
    let log = std::fs::read_to_string(dir.join("smtp.log")).unwrap();
    let mut ports: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id.orig_p"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [40500, 40501], "{log}");
}

/// A live-capture option given with `-r` is refused (exit 2, naming both),
/// not silently ignored: nothing is read and no log is written.
#[test]
fn live_only_option_offline_is_refused() {
    let dir = scratch("live-only");
    let pcap = basic_pcap(dir.path());
    let stats = dir.join("stats.json");
    let o = run(&[
        "-r",
        pcap.to_str().unwrap(),
        "-l",
        dir.path().to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("'--read <FILE>...' cannot be used with '--stats-json <FILE>'"),
        "{err}"
    );
    assert!(!dir.join("smtp.log").exists());
    assert!(!stats.exists());
}

/// A gzip or zstd capture (named anything), from a file or standard input,
/// gives exactly the smtp.log of the plain capture.
#[test]
fn compressed_captures_give_the_same_logs() {
    use std::io::Write;
    let dir = scratch("compressed");
    let plain = basic_pcap(dir.path());
    let bytes = std::fs::read(&plain).unwrap();
    let logs = |name: &str, input: &[&str], stdin: Option<&[u8]>| -> String {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        let mut cmd = Command::new(sensor_bin());
        cmd.args(input)
            .arg("-l")
            .arg(&out)
            .arg("-q")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(out.join("smtp.log")).unwrap()
    };
    let want = logs("plain", &["-r", plain.to_str().unwrap()], None);
    assert_eq!(want.lines().count(), 3, "{want}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&bytes[..], 3).unwrap();
    for (name, data) in [("gz", gz), ("zst", zst)] {
        let f = dir.join(format!("capture-{name}"));
        std::fs::write(&f, &data).unwrap();
        assert_eq!(
            logs(&format!("{name}-file"), &["-r", f.to_str().unwrap()], None),
            want,
            "{name}"
        );
        assert_eq!(
            logs(&format!("{name}-stdin"), &["-r", "-"], Some(&data)),
            want,
            "{name}"
        );
    }

    // A corrupt one: exit 2 and a line that says so.
    let f = dir.join("bad.gz");
    std::fs::write(&f, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
    let o = run(&[
        "-r",
        f.to_str().unwrap(),
        "-l",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gzip stream is corrupt"), "{err}");
}

/// Several captures are one stream of time: a connection split across two
/// files (one of them gzip) is logged exactly as from the whole capture;
/// files out of time order are read, with a warning.
#[test]
fn several_captures_are_one_stream() {
    use std::io::Write;
    let dir = scratch("several");
    let (_, frames) = scenarios::golden()
        .into_iter()
        .find(|(n, _)| *n == "pipelining")
        .unwrap();
    let whole = dir.join("whole.pcap");
    write_pcap(&whole, frames.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let (head, tail) = frames.split_at(frames.len() / 2);
    let a = dir.join("a.pcap");
    write_pcap(&a, head.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let b_plain = dir.join("b.pcap");
    write_pcap(&b_plain, tail.iter().map(|(t, f)| (*t, f.as_slice()))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&b_plain).unwrap()).unwrap();
    let b = dir.join("b.pcap.gz");
    std::fs::write(&b, gz.finish().unwrap()).unwrap();

    let logs = |name: &str, inputs: &[&Path]| -> (String, String) {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        let mut args: Vec<&str> = vec!["-r"];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        args.extend(["-l", out.to_str().unwrap()]);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{name}: {err}");
        (std::fs::read_to_string(out.join("smtp.log")).unwrap(), err)
    };
    let (want, _) = logs("whole", &[&whole]);
    assert_eq!(want.lines().count(), 3, "{want}");
    let (split, err) = logs("split", &[&a, &b]);
    assert_eq!(split, want);
    assert!(err.contains(&format!("{} packets", frames.len())), "{err}");
    assert!(!err.contains("time order"), "{err}");

    // Out of order: read as given, and said so.
    let (_, err) = logs("reversed", &[&b, &a]);
    assert!(
        err.contains("a.pcap starts before the capture before it ended"),
        "{err}"
    );

    // A bad file anywhere in the list stops the run before it starts.
    let missing = dir.join("missing.pcap");
    let o = run(&[
        "-r",
        a.to_str().unwrap(),
        missing.to_str().unwrap(),
        "-l",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.pcap"));
    assert!(!dir.join("smtp.log").exists());
    let o = run(&["-r", "-", "-", "-l", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only once"));
}

/// A capture of Zeek's corpus, in place.
fn corpus_pcap(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/zeek")
        .join(dir)
        .join(file)
}

/// Lines of `text` as JSON objects; panics naming a line that is not one.
fn json_objects(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(m)) => m,
            other => panic!("not a JSON object line {l:?}: {other:?}"),
        })
        .collect()
}

/// `-l -`: every log's JSON lines on standard output, each naming its log
/// in `_path`, the same records the log files get; the summary stays on
/// standard error.
#[test]
fn logs_on_standard_output() {
    let d = scratch("stdout");
    for (corpus, pcap, paths) in [
        ("basic", "smtp.pcap", &["smtp", "files"][..]),
        (
            "mail-transactions-invalid",
            "smtp-mail-transactions-invalid.pcap",
            &["smtp", "weird"][..],
        ),
    ] {
        let pcap = corpus_pcap(corpus, pcap);
        let pcap = pcap.to_str().unwrap();
        let o = run(&["-r", pcap, "-l", "-"]);
        assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
        assert!(
            !o.stderr.is_empty(),
            "the summary goes to standard error, not into the logs"
        );
        let text = String::from_utf8(o.stdout).unwrap();
        // Zeek's extension fields come first.
        for l in text.lines() {
            assert!(l.starts_with("{\"_path\":\""), "{corpus}: {l}");
            assert!(l.contains("\",\"_write_ts\":"), "{corpus}: {l}");
        }
        let lines = json_objects(&text);
        // The same run into a directory, with the extension fields asked for.
        let dir = d.join(corpus);
        std::fs::create_dir_all(&dir).unwrap();
        let o = run(&[
            "-r",
            pcap,
            "-l",
            dir.to_str().unwrap(),
            "--set",
            "log_path_fields=true",
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
        let without_write_ts = |mut m: serde_json::Map<String, serde_json::Value>| {
            let w = m.remove("_write_ts").and_then(|w| w.as_f64());
            assert!(w.is_some_and(|w| w > 1.7e9), "_write_ts: {w:?}");
            m
        };
        for path in paths {
            let on_stdout: Vec<_> = lines
                .iter()
                .filter(|l| l.get("_path").and_then(|p| p.as_str()) == Some(path))
                .cloned()
                .map(without_write_ts)
                .collect();
            assert!(!on_stdout.is_empty(), "{corpus}: no {path} lines");
            let file = std::fs::read_to_string(dir.join(format!("{path}.log"))).unwrap();
            let in_file: Vec<_> = json_objects(&file)
                .into_iter()
                .map(without_write_ts)
                .collect();
            assert_eq!(on_stdout, in_file, "{corpus}: {path}");
        }
        for l in &lines {
            let p = l.get("_path").and_then(|p| p.as_str()).unwrap_or("");
            assert!(
                ["smtp", "files", "notice", "weird"].contains(&p),
                "{corpus}: {l:?}"
            );
        }
    }
    // No log file is written beside the binary's working directory.
    let o = Command::new(sensor_bin())
        .args(["-r", corpus_pcap("basic", "smtp.pcap").to_str().unwrap()])
        .arg("--log-stdout")
        .arg("-q")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    assert!(o.stderr.is_empty(), "{:?}", stderr_lines(&o));
    assert!(!d.join("smtp.log").exists());
    assert!(json_objects(&String::from_utf8(o.stdout).unwrap()).len() > 1);
}

/// Zeek TSV cannot interleave on one stream: refused, one line, exit 2.
#[test]
fn standard_output_takes_json_only() {
    let pcap = corpus_pcap("basic", "smtp.pcap");
    let o = run(&[
        "-r",
        pcap.to_str().unwrap(),
        "-l",
        "-",
        "--log-format",
        "zeek",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("JSON lines only"), "{lines:?}");
}

/// `log_path_fields` in Zeek TSV: `_path` and `_write_ts` lead `#fields`,
/// `#types` and every row, as Zeek writes its extension fields.
#[test]
fn path_fields_in_zeek_tsv() {
    let d = scratch("path-fields-tsv");
    let pcap = corpus_pcap("basic", "smtp.pcap");
    let o = run(&[
        "-r",
        pcap.to_str().unwrap(),
        "-l",
        d.path().to_str().unwrap(),
        "--log-format",
        "zeek",
        "--set",
        "log_path_fields=true",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", stderr_lines(&o));
    for log in ["smtp", "files"] {
        let text = std::fs::read_to_string(d.join(format!("{log}.log"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[6].starts_with("#fields\t_path\t_write_ts\tts\t"),
            "{}",
            lines[6]
        );
        assert!(
            lines[7].starts_with("#types\tstring\ttime\ttime\t"),
            "{}",
            lines[7]
        );
        let width = lines[6].split('\t').count() - 1;
        let rows: Vec<&&str> = lines.iter().filter(|l| !l.starts_with('#')).collect();
        assert!(!rows.is_empty(), "{log}");
        for r in rows {
            let f: Vec<&str> = r.split('\t').collect();
            assert_eq!(f.len(), width, "{r}");
            assert_eq!(f[0], log);
            assert!(f[1].parse::<f64>().is_ok_and(|t| t > 1.7e9), "{r}");
        }
    }
}
