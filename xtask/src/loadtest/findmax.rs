//! `--find-max`: the highest rate a configuration takes without loss.
//!
//! Top speed first: if nothing is lost there, the sender, not the sensor,
//! is the limit, and the maximum is what it offered. Otherwise the maximum
//! lies between 0 (taken as lossless) and the rate offered at top speed
//! (lossy): bisect on the paced rate until the bracket is within
//! [`TOLERANCE`] of its top, at most [`PROBES`] paced runs (on this
//! machine each run is seconds of sending plus the sensor's start and
//! stop, so a handful is what a search can afford).
//!
//! The search only sees what a run offered and whether it lost anything;
//! running the sensor is the caller's `measure`.

use anyhow::Result;

use super::args::Rate;

/// Paced runs after the top-speed one, at most.
pub const PROBES: usize = 5;
/// The search stops once `hi - lo <= TOLERANCE × hi`.
pub const TOLERANCE: f64 = 0.10;
/// Paced rates are rounded to this many frames per second.
const STEP: u64 = 1000;

/// What one run showed.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The rate the sender offered (at top speed: what it managed).
    pub offered_pps: f64,
    /// What was lost (see `Row::loss`); `None`: nothing.
    pub loss: Option<String>,
}

/// What bounded the maximum.
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    /// Top speed lost nothing: the sender could not go faster.
    Sender,
    /// The lowest rate that lost something, and what it lost.
    Loss { at_pps: f64, what: String },
}

/// The result of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Index (in the order measured) of the fastest lossless run; `None`
    /// when every run lost something.
    pub best: Option<usize>,
    pub limit: Limit,
}

/// Searches with `measure` (which runs the configuration at a rate; its
/// errors, an interrupt among them, end the search).
pub fn search(mut measure: impl FnMut(Rate) -> Result<Probe>) -> Result<Found> {
    let top = measure(Rate::Top)?;
    let Some(what) = top.loss else {
        return Ok(Found {
            best: Some(0),
            limit: Limit::Sender,
        });
    };
    let mut lossy = (top.offered_pps, what);
    let mut lo = 0.0_f64;
    let mut hi = top.offered_pps;
    let mut best = None;
    for n in 1..=PROBES {
        if hi - lo <= TOLERANCE * hi {
            break;
        }
        let mid = (((lo + hi) / 2.0 / STEP as f64).round() as u64).max(1) * STEP;
        if (mid as f64) <= lo || (mid as f64) >= hi {
            break;
        }
        let p = measure(Rate::Pps(mid))?;
        match p.loss {
            None => {
                lo = mid as f64;
                best = Some(n);
            }
            Some(what) => {
                hi = mid as f64;
                lossy = (p.offered_pps, what);
            }
        }
    }
    Ok(Found {
        best,
        limit: Limit::Loss {
            at_pps: lossy.0,
            what: lossy.1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sensor that loses above `max` pps behind a sender that manages
    /// `top` pps; records the rates asked.
    fn fake(max: f64, top: f64, asked: &mut Vec<Rate>) -> impl FnMut(Rate) -> Result<Probe> + '_ {
        move |rate| {
            asked.push(rate);
            let offered = match rate {
                Rate::Top => top,
                Rate::Pps(r) => (r as f64).min(top),
            };
            Ok(Probe {
                offered_pps: offered,
                loss: (offered > max).then(|| "socket drops (5)".to_owned()),
            })
        }
    }

    #[test]
    fn a_lossless_top_speed_is_the_senders_limit() {
        let mut asked = Vec::new();
        let f = search(fake(3e6, 1.5e6, &mut asked)).unwrap();
        assert_eq!(
            f,
            Found {
                best: Some(0),
                limit: Limit::Sender
            }
        );
        assert_eq!(asked, [Rate::Top]);
    }

    #[test]
    fn bisection_brackets_the_maximum_within_the_tolerance() {
        let mut asked = Vec::new();
        let f = search(fake(700_000.0, 1_600_000.0, &mut asked)).unwrap();
        // 800k lossy, 400k ok, 600k ok, 700k ok; then [700k, 800k] is
        // within 12.5 %: one more, 750k, lossy.
        assert_eq!(
            asked,
            [
                Rate::Top,
                Rate::Pps(800_000),
                Rate::Pps(400_000),
                Rate::Pps(600_000),
                Rate::Pps(700_000),
                Rate::Pps(750_000),
            ]
        );
        assert_eq!(f.best, Some(4));
        assert_eq!(
            f.limit,
            Limit::Loss {
                at_pps: 750_000.0,
                what: "socket drops (5)".to_owned()
            }
        );
    }

    #[test]
    fn the_search_stops_early_once_the_bracket_is_narrow() {
        let mut asked = Vec::new();
        let f = search(fake(1_000_000.0, 1_050_000.0, &mut asked)).unwrap();
        // 525k, 788k, 919k ok: [919k, 1050k] is within 12.5 %, then 985k
        // ok: within 10 %.
        assert_eq!(asked.len(), 5, "{asked:?}");
        assert_eq!(f.best, Some(4));
        assert!(matches!(f.limit, Limit::Loss { at_pps, .. } if at_pps == 1_050_000.0));
    }

    #[test]
    fn loss_at_every_rate_finds_nothing() {
        let mut asked = Vec::new();
        let f = search(fake(0.0, 1_000_000.0, &mut asked)).unwrap();
        assert_eq!(asked.len(), 1 + PROBES);
        assert_eq!(f.best, None);
        assert!(matches!(f.limit, Limit::Loss { at_pps, .. } if at_pps == 32_000.0));
    }

    #[test]
    fn errors_end_the_search() {
        let e = search(|_| anyhow::bail!("interrupted")).unwrap_err();
        assert_eq!(e.to_string(), "interrupted");
    }
}
