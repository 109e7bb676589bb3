//! The options of `cargo xtask loadtest`.

use anyhow::{Context, Result, bail};

pub const HELP: &str = "\
usage: cargo xtask loadtest [options] [-- <smtp-sensor args>]   (as root)

Replays a generated SMTP load capture with tcpreplay into a veth pair and
runs smtp-sensor live on the other end, once per rate; prints what was
offered, received, dropped and logged.

  --queues N         veth rx/tx queues (sensor capture threads)   [1]
  --workers N        sensor worker threads             [one per queue]
  --symmetric-rss    pass --symmetric-rss to the sensor
  --connections N    connections in the load capture               [30000]
  --seed S           generator seed                                [1]
  --rates LIST       packets/s, comma separated (50000,100k,1M; `top`
                     for tcpreplay --topspeed)             [50000,100000,top]
  --topspeed         top speed only; with --rates, after those rates
  --seconds S        replay time per rate (tcpreplay --duration;
                     at top speed whole passes, at least one)      [10]
  --markdown         print the table as markdown
  -- ARGS            more smtp-sensor arguments (--xdp-mode skb, --cpus 0-1,
                     --umem-frames N, --batch N, -c FILE, ...)";

/// A replay rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Pps(u64),
    Top,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub queues: u32,
    pub workers: Option<u32>,
    pub symmetric_rss: bool,
    pub connections: u64,
    pub seed: u64,
    pub rates: Vec<Rate>,
    pub seconds: u64,
    pub markdown: bool,
    pub sensor_args: Vec<String>,
}

/// `Ok(None)`: help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options {
        queues: 1,
        workers: None,
        symmetric_rss: false,
        connections: 30_000,
        seed: 1,
        rates: Vec::new(),
        seconds: 10,
        markdown: false,
        sensor_args: Vec::new(),
    };
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
            "--queues" => o.queues = positive(a, value()?)?,
            "--workers" => o.workers = Some(positive(a, value()?)?),
            "--symmetric-rss" => o.symmetric_rss = true,
            "--connections" => o.connections = positive(a, value()?)?.into(),
            "--seed" => o.seed = number(a, value()?)?,
            "--rates" => {
                for r in value()?.split(',').filter(|r| !r.is_empty()) {
                    o.rates.push(rate(r)?);
                }
            }
            "--topspeed" => topspeed = true,
            "--seconds" => o.seconds = positive(a, value()?)?.into(),
            "--markdown" => o.markdown = true,
            "--" => {
                o.sensor_args = it.cloned().collect();
                break;
            }
            other => bail!("unknown option {other}\n{HELP}"),
        }
    }
    if topspeed || o.rates.is_empty() {
        if !topspeed {
            o.rates = vec![Rate::Pps(50_000), Rate::Pps(100_000)];
        }
        if !o.rates.contains(&Rate::Top) {
            o.rates.push(Rate::Top);
        }
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

    #[test]
    fn defaults_are_two_rates_and_top_speed_on_one_queue() {
        let o = p(&[]).unwrap().unwrap();
        assert_eq!(o.queues, 1);
        assert_eq!(o.workers, None);
        assert_eq!(o.rates, [Rate::Pps(50_000), Rate::Pps(100_000), Rate::Top]);
        assert_eq!((o.connections, o.seconds), (30_000, 10));
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
            "--",
            "--xdp-mode",
            "skb",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((o.queues, o.workers, o.symmetric_rss), (2, Some(2), true));
        assert_eq!(
            o.rates,
            [Rate::Pps(25_000), Rate::Pps(1_000_000), Rate::Pps(70_000)]
        );
        assert!(o.markdown);
        assert_eq!(o.sensor_args, ["--xdp-mode", "skb"]);
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
        ] {
            let e = p(args).unwrap_err().to_string();
            assert!(e.contains(what), "{args:?}: {e}");
        }
        assert!(p(&["--help"]).unwrap().is_none());
    }
}
