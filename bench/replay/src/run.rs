//! The send loop: how many frames each lane sends per call, when, and when
//! to stop.
//!
//! A call costs a page-pool setup in the kernel (tens of milliseconds), so
//! frames go out in large calls: paced (`--pps`) as one burst per lane
//! every [`ROUND`] (the frames due by the round's end), or at top speed in
//! calls of about [`TOP_CALL`] worth of frames at the rate measured so far.
//! Lanes advance in proportion to their share of the capture, so they end
//! their passes together.
//!
//! Passes are whole: a run stops at the end of a pass, after `--loop` passes
//! or the first pass boundary after `--seconds`. The frames sent are then
//! exactly `passes × capture`, which makes what a receiver should log
//! computable from one offline run of the capture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sender::{CallEnd, SendError};

/// Interval between paced bursts.
pub const ROUND: Duration = Duration::from_millis(100);
/// Aimed duration of one call at top speed.
pub const TOP_CALL: Duration = Duration::from_millis(250);
/// Frames of the first call at top speed, before a rate is known.
const FIRST_TOP_CALL: u64 = 1 << 18;

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Frames per second, in bursts of one [`ROUND`].
    Pps(u64),
    /// As fast as the kernel runs the program.
    Top,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub rate: Rate,
    /// Passes at most; `None`: until `seconds` (or a signal).
    pub passes: Option<u64>,
    /// No pass starts after this much time.
    pub seconds: Option<Duration>,
}

/// Where frames go: the kernel ([`crate::sender::Sender`]), or a test's
/// recorder.
pub trait Wire {
    /// Sends the next `n` frames of `lane`.
    fn send(&mut self, lane: usize, n: u32) -> Result<CallEnd, SendError>;
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sent {
    /// Frames per lane.
    pub per_lane: Vec<u64>,
    /// Calls made.
    pub calls: u64,
    /// From the first call to the end of the last.
    pub elapsed: Duration,
    /// Stopped by a signal (the last pass is partial).
    pub interrupted: bool,
}

impl Sent {
    pub fn frames(&self) -> u64 {
        self.per_lane.iter().sum()
    }
}

/// Sends `plan` over `wire`; `lanes` gives each lane's frames per pass.
/// `stop` ends the run early (the signal handler's flag).
pub fn run(
    wire: &mut impl Wire,
    lanes: &[u64],
    plan: &Plan,
    stop: &AtomicBool,
) -> Result<Sent, SendError> {
    let total: u64 = lanes.iter().sum();
    let mut sent = Sent {
        per_lane: vec![0; lanes.len()],
        ..Sent::default()
    };
    if total == 0 {
        return Ok(sent);
    }
    let max_passes = plan.passes.unwrap_or(u64::MAX);
    // Per lane: the frame it stops at, one pass further each time a pass
    // ends while passes and time are left.
    let mut goal: Vec<u64> = lanes.to_vec();
    let start = Instant::now();
    let mut round = 0u32;
    let mut top_call = FIRST_TOP_CALL;
    'run: loop {
        let elapsed = start.elapsed();
        let time_up = plan.seconds.is_some_and(|s| elapsed >= s);
        // Lanes whose pass ended: another pass, unless time is up or the
        // pass count is reached.
        for (g, (&n, &s)) in goal.iter_mut().zip(lanes.iter().zip(&sent.per_lane)) {
            if s >= *g && n > 0 && !time_up && *g / n < max_passes {
                *g = g.saturating_add(n);
            }
        }
        if sent.per_lane.iter().zip(&goal).all(|(s, g)| s >= g) {
            break;
        }
        for lane in 0..lanes.len() {
            if stop.load(Ordering::Relaxed) {
                sent.interrupted = true;
                break 'run;
            }
            let share = lanes[lane] as f64 / total as f64;
            let due = match plan.rate {
                Rate::Pps(r) => {
                    // Frames due by the end of this round, minus those sent.
                    let per_round = r as f64 * share * ROUND.as_secs_f64();
                    let by = (f64::from(round) + 1.0) * per_round;
                    // A wire slower than the rate catches up by at most one
                    // round per round.
                    (by as u64)
                        .saturating_sub(sent.per_lane[lane])
                        .min((2.0 * per_round).ceil() as u64)
                }
                Rate::Top => ((top_call as f64 * share).ceil() as u64).max(1),
            };
            let left = goal[lane].saturating_sub(sent.per_lane[lane]);
            let n = due.min(left).min(u64::from(u32::MAX)) as u32;
            if n == 0 {
                continue;
            }
            sent.calls += 1;
            let end = wire.send(lane, n)?;
            if end == CallEnd::Interrupted {
                // The kernel stopped somewhere inside the call: the caller
                // reads the real positions back from the program.
                sent.interrupted = true;
                break 'run;
            }
            sent.per_lane[lane] += u64::from(n);
        }
        match plan.rate {
            Rate::Pps(_) => {
                round += 1;
                let next = ROUND * round;
                if let Some(wait) = next.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            Rate::Top => {
                let secs = start.elapsed().as_secs_f64();
                if secs > 0.0 {
                    let rate = sent.frames() as f64 / secs;
                    top_call = ((rate * TOP_CALL.as_secs_f64()) as u64).max(1 << 14);
                }
            }
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<(usize, u32)>,
        interrupt_after: Option<usize>,
    }

    impl Wire for Recorder {
        fn send(&mut self, lane: usize, n: u32) -> Result<CallEnd, SendError> {
            if self.interrupt_after == Some(self.calls.len()) {
                return Ok(CallEnd::Interrupted);
            }
            self.calls.push((lane, n));
            Ok(CallEnd::Done)
        }
    }

    fn go(lanes: &[u64], plan: Plan) -> (Sent, Recorder) {
        let mut w = Recorder::default();
        let s = run(&mut w, lanes, &plan, &AtomicBool::new(false)).unwrap();
        (s, w)
    }

    #[test]
    fn loops_send_whole_passes_on_every_lane() {
        let (s, w) = go(
            &[300_000, 100_000],
            Plan {
                rate: Rate::Top,
                passes: Some(3),
                seconds: None,
            },
        );
        assert_eq!(s.per_lane, [900_000, 300_000]);
        assert!(!s.interrupted);
        let per: u64 = w.calls.iter().map(|&(_, n)| u64::from(n)).sum();
        assert_eq!(per, 1_200_000);
        assert!(w.calls.iter().any(|&(l, _)| l == 1));
    }

    #[test]
    fn paced_runs_send_bursts_at_the_rate() {
        let started = Instant::now();
        let (s, w) = go(
            &[20_000],
            Plan {
                rate: Rate::Pps(100_000),
                passes: Some(1),
                seconds: None,
            },
        );
        assert_eq!(s.frames(), 20_000);
        // 100 kpps in 100 ms rounds: bursts of 10 000.
        assert_eq!(w.calls, [(0, 10_000), (0, 10_000)]);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn time_limits_end_at_a_pass_boundary() {
        let (s, _) = go(
            &[1000, 500],
            Plan {
                rate: Rate::Pps(30_000),
                passes: None,
                seconds: Some(Duration::from_millis(150)),
            },
        );
        // 3000 frames per 100 ms: the first pass (1500) ends in round 1,
        // the second in round 1 too, the third after 150 ms: whole passes.
        let passes = s.per_lane[0] / 1000;
        assert!(passes >= 2, "{s:?}");
        assert_eq!(s.per_lane, [passes * 1000, passes * 500]);
    }

    #[test]
    fn an_interrupted_call_stops_the_run() {
        let mut w = Recorder {
            interrupt_after: Some(1),
            ..Recorder::default()
        };
        let plan = Plan {
            rate: Rate::Top,
            passes: None,
            seconds: None,
        };
        let s = run(&mut w, &[1 << 20], &plan, &AtomicBool::new(false)).unwrap();
        assert!(s.interrupted);
        assert_eq!(w.calls.len(), 1);
        let stop = AtomicBool::new(true);
        let s = run(&mut Recorder::default(), &[10], &plan, &stop).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.frames(), 0);
    }
}
