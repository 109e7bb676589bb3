//! One configuration of the sensor's live threads (`--configs 1q,2q-sym`):
//! rx queues, workers and whether RSS is symmetric, and what follows from
//! it for the sender (one lane per queue, split the way such a NIC would).

use anyhow::{Result, bail};

/// Queues, workers and RSS of one live configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// veth rx/tx queues: the sensor's capture threads.
    pub queues: u32,
    /// Worker threads; `None`: one per queue (the sensor's default).
    pub workers: Option<u32>,
    /// `--symmetric-rss`: both directions of a connection arrive on one
    /// queue, so a capture thread can be its own worker.
    pub symmetric_rss: bool,
    /// Spread frames over the lanes by directed 4-tuple (`-tuple`), as a
    /// NIC with the default Toeplitz key does, instead of by connection.
    pub tuple_split: bool,
}

impl Layout {
    /// Workers the sensor runs.
    pub fn workers(&self) -> u32 {
        self.workers.unwrap_or(self.queues)
    }

    /// How the replayer spreads frames over its lanes: by connection,
    /// unless `-tuple` asks for the directed 4-tuple.
    ///
    /// By connection also for the hand-over configuration (`2q`): frames
    /// still cross to their hash owner whenever the owner is not the
    /// receiving queue, so the hand-over is what is measured. A 4-tuple
    /// split puts the two directions of a connection in different lanes,
    /// and one sender thread sends lanes one call (a quarter second) at a
    /// time: one direction then runs up to a call ahead of the other, a
    /// reordering no NIC does (the sensor pairs commands and replies in
    /// arrival order and loses about 1 % of the records that way).
    pub fn split(&self) -> &'static str {
        if self.tuple_split { "tuple" } else { "flow" }
    }

    /// `<N>q[-<M>w][-sym][-tuple]`: `1q`, `2q-sym`, `2q`, `4q-2w-sym`,
    /// `2q-tuple`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut parts = spec.split('-');
        let queues = parts
            .next()
            .and_then(|q| q.strip_suffix('q'))
            .and_then(|q| q.parse::<u32>().ok())
            .filter(|&q| q > 0);
        let Some(queues) = queues else {
            bail!("--configs: {spec}: must start with the queue count, e.g. 2q");
        };
        let mut l = Layout {
            queues,
            workers: None,
            symmetric_rss: false,
            tuple_split: false,
        };
        for p in parts {
            match (p, p.strip_suffix('w').and_then(|w| w.parse::<u32>().ok())) {
                ("sym", _) if !l.symmetric_rss => l.symmetric_rss = true,
                ("tuple", _) if !l.tuple_split => l.tuple_split = true,
                (_, Some(w)) if w > 0 && l.workers.is_none() && !l.symmetric_rss => {
                    l.workers = Some(w);
                }
                _ => bail!(
                    "--configs: {spec}: expected <N>q[-<M>w][-sym][-tuple], e.g. 2q-sym or 2q-1w"
                ),
            }
        }
        Ok(l)
    }

    /// The name of the configuration in the tables: `2q 2w sym drv
    /// --umem-frames 16384`: queues, workers, RSS, the XDP mode as
    /// attached, and any further sensor arguments but the mode.
    pub fn label(&self, xdp_mode: &str, sensor_args: &[String]) -> String {
        let mut s = format!("{}q {}w", self.queues, self.workers());
        if self.symmetric_rss {
            s.push_str(" sym");
        }
        if self.tuple_split {
            s.push_str(" tuple");
        }
        s.push(' ');
        s.push_str(match xdp_mode {
            "driver" => "drv",
            "generic" => "skb",
            other => other,
        });
        let mut it = sensor_args.iter();
        while let Some(a) = it.next() {
            if a == "--xdp-mode" {
                it.next();
            } else if !a.starts_with("--xdp-mode=") {
                s.push(' ');
                s.push_str(a);
            }
        }
        s
    }

    /// CPUs for (sender, sensor) when the run pins them (`pin`): with one
    /// queue on a machine of two or more CPUs, the sender on CPU 0 (veth
    /// runs the receiving side's XDP program and the AF_XDP copy on the
    /// sending CPU, so that is the NIC's share of the work) and the whole
    /// sensor, capture and log writer alike, on the others: "one core for
    /// the sensor" on this two-core machine. With several queues the sender
    /// must run on each queue's CPU in turn: nothing is pinned.
    pub fn pinning(&self, pin: bool, cpus: usize) -> Option<(usize, String)> {
        (pin && self.queues == 1 && cpus >= 2).then(|| {
            let sensor = if cpus == 2 {
                "1".to_owned()
            } else {
                format!("1-{}", cpus - 1)
            };
            (0, sensor)
        })
    }

    /// The sensor arguments this configuration adds.
    pub fn sensor_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(w) = self.workers {
            a.extend(["--workers".to_owned(), w.to_string()]);
        }
        if self.symmetric_rss {
            a.push("--symmetric-rss".to_owned());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn specs_name_queues_workers_and_rss() {
        let l = |q, w, s| Layout {
            queues: q,
            workers: w,
            symmetric_rss: s,
            tuple_split: false,
        };
        assert_eq!(Layout::parse("1q").unwrap(), l(1, None, false));
        assert_eq!(Layout::parse("2q-sym").unwrap(), l(2, None, true));
        assert_eq!(Layout::parse("2q-1w").unwrap(), l(2, Some(1), false));
        assert_eq!(Layout::parse("4q-2w-sym").unwrap(), l(4, Some(2), true));
        for bad in [
            "",
            "q",
            "0q",
            "2",
            "2q-",
            "2q-0w",
            "2q-sym-sym",
            "2q-sym-2w",
            "2q-x",
        ] {
            let e = Layout::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--configs"), "{bad}: {e}");
        }
    }

    #[test]
    fn split_is_by_connection_unless_asked() {
        assert_eq!(Layout::parse("1q").unwrap().split(), "flow");
        assert_eq!(Layout::parse("2q-sym").unwrap().split(), "flow");
        assert_eq!(Layout::parse("2q").unwrap().split(), "flow");
        let t = Layout::parse("2q-tuple").unwrap();
        assert_eq!(t.split(), "tuple");
        assert_eq!(t.label("driver", &[]), "2q 2w tuple drv");
        assert!(Layout::parse("2q-tuple-tuple").is_err());
    }

    #[test]
    fn one_queue_runs_pin_sender_and_sensor_apart() {
        let one = Layout::parse("1q").unwrap();
        assert_eq!(one.pinning(true, 2), Some((0, "1".to_owned())));
        assert_eq!(one.pinning(true, 8), Some((0, "1-7".to_owned())));
        assert_eq!(one.pinning(false, 2), None);
        assert_eq!(one.pinning(true, 1), None);
        assert_eq!(Layout::parse("2q-sym").unwrap().pinning(true, 2), None);
    }

    #[test]
    fn label_names_queues_workers_and_mode() {
        let l = Layout::parse("2q-sym").unwrap();
        assert_eq!(l.label("driver", &[]), "2q 2w sym drv");
        assert_eq!(l.sensor_args(), ["--symmetric-rss"]);
        let l = Layout::parse("2q-1w").unwrap();
        let extra = strings(&["--xdp-mode", "skb", "--umem-frames", "16384"]);
        assert_eq!(l.label("generic", &extra), "2q 1w skb --umem-frames 16384");
        assert_eq!(l.sensor_args(), ["--workers", "1"]);
    }
}
