//! The options of `cargo xtask loadtest`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::layout::Layout;

pub const HELP: &str = "\
usage: cargo xtask loadtest [options] [-- <smtp-sensor args>]   (as root)

Generates an SMTP capture, replays it into a veth pair with smtp-replay
(or tcpreplay) and runs smtp-sensor live on the other end, once per
configuration and rate; prints what was offered, received, dropped and
logged, beside what the same capture costs offline.

  --configs LIST     configurations, comma separated:
                     <N>q[-<M>w][-sym][-tuple] (N queues, M workers [one
                     per queue], -sym: the sensor's --symmetric-rss,
                     -tuple: the replayer spreads frames over the queues
                     by directed 4-tuple instead of by connection: one
                     direction then runs up to a call ahead of the other),
                     e.g. 1q,2q-sym,2q                               [1q]
  --queues N         one configuration: veth rx/tx queues (capture
  --workers N          threads), worker threads, --symmetric-rss
  --symmetric-rss      (shorthand for --configs; not with it)
  --sender S         replay (smtp-replay: live-frames XDP, millions of
                     frames/s) or tcpreplay (≈ 0.35 Mpps)         [replay]
  --capture C        load (many short connections: synth load) or bulk
                     (few connections of large messages, full-size
                     frames: synth bulk)                            [load]
  --connections N    connections in the capture [load 30000, bulk 640]
  --seed S           generator seed                                [1]
  --rates LIST       packets/s, comma separated (50000,100k,1M; `top`
                     for top speed)                     [50000,100000,top]
                     smtp-replay spaces bursts of frames evenly (in
                     the kernel, by its clock), one call of 250 ms per
                     lane at a time
  --burst N          smtp-replay, paced: frames per burst at most (what
                     arrives in 50 µs; 1 spaces every frame alone)  [64]
  --topspeed         top speed only; with --rates, after those rates
  --find-max         per configuration, the highest rate without loss:
                     top speed, then a bisection on the rate (not with
                     --rates or --topspeed)
  --seconds S        replay time per rate (passes are whole: at least
                     one)                                          [10]
  --markdown         print the tables as markdown
  --no-pin           do not pin: by default, with one queue, the sender
                     (and the kernel's receive work it drives) runs on
                     CPU 0 and the whole sensor on the other CPUs
  --plot FILE.svg    draw received rate and CPU per frame against the
                     offered rate, one series per configuration
  --sensor PATH      the smtp-sensor binary to measure (live and offline)
                     instead of this tree's release build: to compare
                     two builds on the same capture and sender
  -- ARGS            more smtp-sensor arguments (--xdp-mode skb, --cpus 0-1,
                     --umem-frames N, --batch N, -c FILE, ...)";

/// A replay rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Pps(u64),
    Top,
}

/// The program that offers the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderKind {
    /// `smtp-replay`: BPF_PROG_RUN live frames, fast enough to overload
    /// the sensor.
    Replay,
    /// tcpreplay, for comparison with earlier figures.
    Tcpreplay,
}

impl SenderKind {
    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            SenderKind::Replay => "smtp-replay",
            SenderKind::Tcpreplay => "tcpreplay",
        }
    }
}

/// The generated capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// `synth load`: many interleaved short connections.
    Load,
    /// `synth bulk`: few connections with large messages.
    Bulk,
}

impl CaptureKind {
    /// The `synth` subcommand.
    pub fn name(self) -> &'static str {
        match self {
            CaptureKind::Load => "load",
            CaptureKind::Bulk => "bulk",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Configurations, measured one after the other.
    pub layouts: Vec<Layout>,
    pub sender: SenderKind,
    pub capture: CaptureKind,
    /// `None`: the generator's default.
    pub connections: Option<u64>,
    pub seed: u64,
    /// Rates to measure (empty with `find_max`).
    pub rates: Vec<Rate>,
    pub find_max: bool,
    pub seconds: u64,
    pub markdown: bool,
    pub plot: Option<PathBuf>,
    /// Pin sender and sensor to CPUs of their own (one-queue configurations).
    pub pin: bool,
    /// `None`: the release build of this tree.
    pub sensor: Option<PathBuf>,
    /// smtp-replay's `--burst` (its default when `None`).
    pub burst: Option<u32>,
    pub sensor_args: Vec<String>,
}

/// Connections of the load capture unless told otherwise (a pass of
/// ≈ 1.2 M frames, 300 MB).
const LOAD_CONNECTIONS: u64 = 30_000;

/// `Ok(None)`: help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        layouts: Vec::new(),
        sender: SenderKind::Replay,
        capture: CaptureKind::Load,
        connections: None,
        seed: 1,
        rates: Vec::new(),
        find_max: false,
        seconds: 10,
        markdown: false,
        plot: None,
        pin: true,
        sensor: None,
        burst: None,
        sensor_args: Vec::new(),
    };
    let mut single = Layout {
        queues: 1,
        workers: None,
        symmetric_rss: false,
        tuple_split: false,
    };
    let mut shorthand = false;
    let mut topspeed = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--configs" => {
                for spec in value()?.split(',').filter(|s| !s.is_empty()) {
                    o.layouts.push(Layout::parse(spec)?);
                }
            }
            "--queues" => {
                single.queues = positive(a, value()?)?;
                shorthand = true;
            }
            "--workers" => {
                single.workers = Some(positive(a, value()?)?);
                shorthand = true;
            }
            "--symmetric-rss" => {
                single.symmetric_rss = true;
                shorthand = true;
            }
            "--sender" => {
                o.sender = match value()? {
                    "replay" | "smtp-replay" => SenderKind::Replay,
                    "tcpreplay" => SenderKind::Tcpreplay,
                    v => bail!("--sender: replay or tcpreplay, not {v}"),
                }
            }
            "--capture" => {
                o.capture = match value()? {
                    "load" => CaptureKind::Load,
                    "bulk" => CaptureKind::Bulk,
                    v => bail!("--capture: load or bulk, not {v}"),
                }
            }
            "--connections" => o.connections = Some(positive(a, value()?)?.into()),
            "--seed" => o.seed = number(a, value()?)?,
            "--rates" => {
                for r in value()?.split(',').filter(|r| !r.is_empty()) {
                    o.rates.push(rate(r)?);
                }
            }
            "--topspeed" => topspeed = true,
            "--find-max" => o.find_max = true,
            "--seconds" => o.seconds = positive(a, value()?)?.into(),
            "--markdown" => o.markdown = true,
            "--no-pin" => o.pin = false,
            "--plot" => o.plot = Some(PathBuf::from(value()?)),
            "--sensor" => o.sensor = Some(PathBuf::from(value()?)),
            "--burst" => o.burst = Some(positive(a, value()?)?),
            "--" => {
                o.sensor_args = it.cloned().collect();
                break;
            }
            other => bail!("unknown option {other}\n{HELP}"),
        }
    }
    match (o.layouts.is_empty(), shorthand) {
        (false, true) => {
            bail!("--configs or --queues/--workers/--symmetric-rss, not both")
        }
        (true, _) => o.layouts.push(single),
        (false, false) => {}
    }
    if o.find_max {
        if topspeed || !o.rates.is_empty() {
            bail!("--find-max chooses the rates itself: not with --rates or --topspeed");
        }
    } else if topspeed || o.rates.is_empty() {
        if !topspeed {
            o.rates = vec![Rate::Pps(50_000), Rate::Pps(100_000)];
        }
        if !o.rates.contains(&Rate::Top) {
            o.rates.push(Rate::Top);
        }
    }
    if o.capture == CaptureKind::Load && o.connections.is_none() {
        o.connections = Some(LOAD_CONNECTIONS);
    }
    Ok(Some(o))
}

fn number(name: &str, v: &str) -> Result<u64> {
    v.parse()
        .with_context(|| format!("{name}: not a number: {v}"))
}

fn positive(name: &str, v: &str) -> Result<u32> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{name}: not a positive number: {v}"),
    }
}

/// `50000`, `50k`, `1M`, `top`.
fn rate(s: &str) -> Result<Rate> {
    if s == "top" {
        return Ok(Rate::Top);
    }
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(n) if n > 0 => Ok(Rate::Pps(n)),
        _ => bail!("--rates: not a rate (packets/s, or `top`): {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<Options>> {
        parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn layout(queues: u32, workers: Option<u32>, symmetric_rss: bool) -> Layout {
        Layout {
            queues,
            workers,
            symmetric_rss,
            tuple_split: false,
        }
    }

    #[test]
    fn defaults_are_two_rates_and_top_speed_on_one_queue() {
        let o = p(&[]).unwrap().unwrap();
        assert_eq!(o.layouts, [layout(1, None, false)]);
        assert_eq!(o.rates, [Rate::Pps(50_000), Rate::Pps(100_000), Rate::Top]);
        assert_eq!((o.connections, o.seconds), (Some(30_000), 10));
        assert_eq!(o.sender, SenderKind::Replay);
        assert_eq!(o.capture, CaptureKind::Load);
        assert!(!o.find_max && o.plot.is_none() && o.sensor.is_none());
    }

    #[test]
    fn options_and_sensor_args() {
        let o = p(&[
            "--queues",
            "2",
            "--workers",
            "2",
            "--symmetric-rss",
            "--rates",
            "25k,1M,70000",
            "--seconds",
            "5",
            "--markdown",
            "--sensor",
            "/tmp/other-build",
            "--",
            "--xdp-mode",
            "skb",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.layouts, [layout(2, Some(2), true)]);
        assert_eq!(
            o.rates,
            [Rate::Pps(25_000), Rate::Pps(1_000_000), Rate::Pps(70_000)]
        );
        assert!(o.markdown);
        assert_eq!(o.sensor, Some(PathBuf::from("/tmp/other-build")));
        assert_eq!(o.sensor_args, ["--xdp-mode", "skb"]);
    }

    #[test]
    fn configs_sender_capture_find_max_and_plot() {
        let o = p(&[
            "--configs",
            "1q,2q-sym,2q",
            "--sender",
            "tcpreplay",
            "--capture",
            "bulk",
            "--find-max",
            "--plot",
            "/tmp/x.svg",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            o.layouts,
            [
                layout(1, None, false),
                layout(2, None, true),
                layout(2, None, false)
            ]
        );
        assert_eq!(o.sender, SenderKind::Tcpreplay);
        assert_eq!(o.capture, CaptureKind::Bulk);
        // The bulk capture's size is the generator's to choose.
        assert_eq!(o.connections, None);
        assert!(o.find_max);
        assert!(o.rates.is_empty(), "{:?}", o.rates);
        assert_eq!(o.plot.as_deref(), Some(std::path::Path::new("/tmp/x.svg")));
        let o = p(&["--capture", "bulk", "--connections", "50"])
            .unwrap()
            .unwrap();
        assert_eq!(o.connections, Some(50));
    }

    #[test]
    fn topspeed_alone_or_added() {
        assert_eq!(p(&["--topspeed"]).unwrap().unwrap().rates, [Rate::Top]);
        let o = p(&["--rates", "1000", "--topspeed"]).unwrap().unwrap();
        assert_eq!(o.rates, [Rate::Pps(1000), Rate::Top]);
    }

    #[test]
    fn bad_values_are_errors_naming_the_option() {
        for (args, what) in [
            (&["--queues", "0"][..], "--queues"),
            (&["--rates", "fast"][..], "--rates"),
            (&["--seconds"][..], "--seconds"),
            (&["--frobnicate"][..], "unknown option"),
            (&["--sender", "scapy"][..], "--sender"),
            (&["--capture", "huge"][..], "--capture"),
            (&["--configs", "2x"][..], "--configs"),
            (&["--configs", "2q", "--queues", "2"][..], "not both"),
            (&["--find-max", "--rates", "1k"][..], "--find-max"),
            (&["--topspeed", "--find-max"][..], "--find-max"),
        ] {
            let e = p(args).unwrap_err().to_string();
            assert!(e.contains(what), "{args:?}: {e}");
        }
        assert!(p(&["--help"]).unwrap().is_none());
    }
}
