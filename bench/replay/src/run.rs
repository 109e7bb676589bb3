//! The send loop: how many frames each lane sends per call, and when to
//! stop.
//!
//! A call costs a page-pool setup and teardown in the kernel (about 20 ms),
//! so calls are long: [`ROUND`] each. At top speed a call sends as many
//! frames as the rate measured so far fits in a round, back to back. Paced
//! (`--pps`), the program itself spaces bursts of frames by the kernel's
//! clock (see `sensor_common::replay::Lane`): a call gets the frames due by
//! the end of its round as a budget, and enough runs to last about a round
//! (idle runs cost little and are how the program waits). Frames therefore
//! leave in small evenly spaced bursts ([`burst_of`]: what a NIC with
//! interrupt coalescing hands the stack at a time), not in one burst per
//! call; between calls the program
//! falls behind by the call overhead and catches up at the next call's
//! start. Lanes advance in proportion to their share of the capture, so
//! they end their passes together; with several lanes the calls alternate,
//! so each lane sends in bursts of a round (one sender thread).
//!
//! Passes are whole: a run stops at the end of a pass, after `--loop` passes
//! or the first pass boundary after `--seconds`. The frames sent are then
//! exactly `passes × capture`, which makes what a receiver should log
//! computable from one offline run of the capture.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sender::{CallEnd, SendError};

/// Aimed duration of one call.
pub const ROUND: Duration = Duration::from_millis(250);
/// Frames of the first call at top speed, before a rate is known.
const FIRST_TOP_CALL: u64 = 1 << 18;
/// Lag behind the schedule a single lane catches up at most.
pub const CATCH_UP: Duration = Duration::from_millis(50);
/// The first paced call of a lane: short, to measure what a run costs.
const FIRST_CALL: Duration = Duration::from_millis(100);
/// What an idle run is taken to cost before the first paced call has
/// measured it (on the project's machines: about 60 ns).
const FIRST_IDLE_RUN_NS: u64 = 50;
/// Frames per paced burst at most by default: NAPI's weight, the most a
/// driver hands the stack per poll.
pub const MAX_BURST: u32 = 64;
/// Time a paced burst spans at most: a NIC's interrupt coalescing (tens of
/// microseconds), so a low rate is not sent in long gaps between bursts.
pub const BURST_SPAN: Duration = Duration::from_micros(50);

/// The pacing of one lane (see `sensor_common::replay::Lane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Between the starts of two bursts.
    pub interval_ns: u64,
    /// Frames per burst.
    pub burst: u32,
    /// Lag behind the schedule the lane catches up at most.
    pub max_lag_ns: u64,
}

/// Frames per burst at `pps`: what arrives in [`BURST_SPAN`], at least 1 and
/// at most `max`.
pub fn burst_of(pps: f64, max: u32) -> u32 {
    let due = (pps * BURST_SPAN.as_secs_f64()).floor();
    (due.min(f64::from(max)) as u32).max(1)
}

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Frames per second, spaced evenly by the program.
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
    /// Paced: frames per burst at most (1: every frame spaced alone).
    pub burst: u32,
}

/// Where frames go: the kernel ([`crate::sender::Sender`]), or a test's
/// recorder.
pub trait Wire {
    /// Paces `lane` as `pace` says from now on.
    fn pace(&mut self, lane: usize, pace: Pace) -> Result<(), SendError>;

    /// Runs the program `runs` times on `lane`, sending at most `budget`
    /// frames (all of them when the lane is not paced, where `runs ==
    /// budget`). Returns how the call ended and the frames it sent.
    fn send(&mut self, lane: usize, budget: u64, runs: u32) -> Result<(CallEnd, u64), SendError>;
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
    let shares: Vec<f64> = lanes.iter().map(|&n| n as f64 / total as f64).collect();
    if let Rate::Pps(r) = plan.rate {
        // The pause between two calls (about 20 ms), and the rounds a lane
        // waits while the others send: what it may catch up (at twice the
        // rate), and no more, so a slow start never turns into a long
        // burst.
        let max_lag = CATCH_UP + ROUND * (lanes.len() as u32 - 1);
        for (lane, share) in shares.iter().enumerate() {
            let pps = (r as f64 * share).max(1e-9);
            let burst = burst_of(pps, plan.burst);
            let pace = Pace {
                interval_ns: (f64::from(burst) * 1e9 / pps).max(1.0) as u64,
                burst,
                max_lag_ns: max_lag.as_nanos() as u64,
            };
            wire.pace(lane, pace)?;
        }
    }
    let max_passes = plan.passes.unwrap_or(u64::MAX);
    // Lanes move on to the next pass together: the run then always ends
    // with the same number of whole passes on every lane, which is what
    // makes `passes × capture` the frames sent.
    let mut passes = 1u64;
    let mut goal: Vec<u64> = lanes.to_vec();
    // Runs per call of each paced lane, tuned so a call lasts a round.
    let mut runs: Vec<u64> = vec![0; lanes.len()];
    // Frames a run of each paced lane sent in its last full call: what the
    // end of a pass needs runs for. Below one when idle runs wait, one
    // when the lane is slower than its rate.
    let mut sent_per_run: Vec<Option<f64>> = vec![None; lanes.len()];
    let start = Instant::now();
    let mut top_call = FIRST_TOP_CALL;
    'run: loop {
        if sent.per_lane.iter().zip(&goal).all(|(s, g)| s >= g) {
            let time_up = plan.seconds.is_some_and(|s| start.elapsed() >= s);
            if time_up || passes >= max_passes {
                break;
            }
            passes += 1;
            for (g, &n) in goal.iter_mut().zip(lanes) {
                *g = n.saturating_mul(passes);
            }
        }
        for lane in 0..lanes.len() {
            if stop.load(Ordering::Relaxed) {
                sent.interrupted = true;
                break 'run;
            }
            let left = goal[lane].saturating_sub(sent.per_lane[lane]);
            if left == 0 {
                // Done with this pass: waits for the other lanes.
                continue;
            }
            let (budget, call_runs) = match plan.rate {
                Rate::Pps(r) => {
                    // The program's clock spaces the frames; the budget only
                    // ends the pass exactly. The runs make the call last
                    // about a round (the first one a short calibration).
                    let budget = left;
                    if runs[lane] == 0 {
                        runs[lane] = FIRST_CALL.as_nanos() as u64 / FIRST_IDLE_RUN_NS;
                    }
                    // The end of a pass needs less than a round: runs for
                    // its frames (and half again), no long idle tail after
                    // the last one. From what a run sent in the last full
                    // call: a lane slower than its rate sends on every run,
                    // and runs counted from the rate would end the pass in
                    // a crawl of calls of a few runs, each paying the
                    // call's fixed cost (tens of ms).
                    let need = match sent_per_run[lane] {
                        Some(f) => budget as f64 / f * 1.5 + 64.0,
                        None => {
                            let per_round =
                                (r as f64 * shares[lane] * ROUND.as_secs_f64()).max(1.0);
                            runs[lane] as f64 * (budget as f64 / per_round) * 1.5
                        }
                    };
                    (budget, (need as u64).clamp(1, runs[lane]))
                }
                Rate::Top => {
                    let n = ((top_call as f64 * shares[lane]).ceil() as u64).clamp(1, left);
                    (n, n)
                }
            };
            if budget == 0 {
                continue;
            }
            let call_runs = call_runs.min(u64::from(u32::MAX)) as u32;
            let t = Instant::now();
            sent.calls += 1;
            let (end, n) = wire.send(lane, budget, call_runs)?;
            sent.per_lane[lane] += n;
            if end == CallEnd::Interrupted {
                sent.interrupted = true;
                break 'run;
            }
            if matches!(plan.rate, Rate::Pps(_)) && u64::from(call_runs) == runs[lane] {
                // Aim the next call of this lane at one round: the mix of
                // sending and idle runs at a given rate changes little.
                // Only from full calls: a short one is mostly the call's
                // fixed cost.
                let took = t.elapsed().as_secs_f64().max(1e-6);
                let per_run = took / f64::from(call_runs);
                runs[lane] = ((ROUND.as_secs_f64() / per_run) as u64).clamp(1, u64::from(u32::MAX));
                sent_per_run[lane] = Some((n as f64 / f64::from(call_runs)).clamp(1e-6, 1.0));
            }
        }
        if let Rate::Top = plan.rate {
            let secs = start.elapsed().as_secs_f64();
            if secs > 0.0 {
                let rate = sent.frames() as f64 / secs;
                top_call = ((rate * ROUND.as_secs_f64()) as u64).max(1 << 14);
            }
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends every budgeted frame (a wire as fast as asked), records calls.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<(usize, u64, u32)>,
        paced: Vec<(usize, Pace)>,
        interrupt_after: Option<usize>,
        /// Sleep per call, for the time-based tests.
        call_time: Duration,
        /// Lane 1 sends only this share of each budget (a slow lane).
        lane1_share: Option<f64>,
        /// Every run sends, at most `budget` (a lane slower than its rate:
        /// the program is always behind its schedule).
        run_sends: bool,
        /// Sleep per run on top of `call_time`.
        run_time: Duration,
        /// Fail a test at once beyond this many calls (a crawl).
        call_limit: Option<usize>,
    }

    impl Wire for Recorder {
        fn pace(&mut self, lane: usize, pace: Pace) -> Result<(), SendError> {
            self.paced.push((lane, pace));
            Ok(())
        }

        fn send(
            &mut self,
            lane: usize,
            budget: u64,
            runs: u32,
        ) -> Result<(CallEnd, u64), SendError> {
            if self.interrupt_after == Some(self.calls.len()) {
                return Ok((CallEnd::Interrupted, budget / 2));
            }
            if let Some(limit) = self.call_limit {
                assert!(self.calls.len() < limit, "more than {limit} calls");
            }
            std::thread::sleep(self.call_time + self.run_time * runs);
            self.calls.push((lane, budget, runs));
            let sent = match (lane, self.lane1_share) {
                _ if self.run_sends => budget.min(u64::from(runs)),
                (1, Some(f)) => ((budget as f64 * f) as u64).max(1),
                _ => budget,
            };
            Ok((CallEnd::Done, sent))
        }
    }

    fn go(lanes: &[u64], plan: Plan, w: &mut Recorder) -> Sent {
        run(w, lanes, &plan, &AtomicBool::new(false)).unwrap()
    }

    #[test]
    fn loops_send_whole_passes_on_every_lane() {
        let mut w = Recorder::default();
        let s = go(
            &[300_000, 100_000],
            Plan {
                rate: Rate::Top,
                passes: Some(3),
                seconds: None,
                burst: 1,
            },
            &mut w,
        );
        assert_eq!(s.per_lane, [900_000, 300_000]);
        assert!(!s.interrupted);
        assert!(w.paced.is_empty());
        // Top speed: every run sends.
        assert!(w.calls.iter().all(|&(_, b, r)| u64::from(r) == b));
        assert!(w.calls.iter().any(|&(l, _, _)| l == 1));
    }

    #[test]
    fn paced_runs_space_frames_and_budget_each_round() {
        let mut w = Recorder {
            call_time: Duration::from_millis(5),
            ..Recorder::default()
        };
        let s = go(
            &[300_000, 100_000],
            Plan {
                rate: Rate::Pps(1_000_000),
                passes: Some(1),
                seconds: None,
                burst: 1,
            },
            &mut w,
        );
        assert_eq!(s.per_lane, [300_000, 100_000]);
        // One frame per µs over the capture, shared 3:1 between the lanes.
        assert_eq!(w.paced.len(), 2);
        let (i0, i1) = (w.paced[0].1.interval_ns, w.paced[1].1.interval_ns);
        assert!(
            (1300..1350).contains(&i0) && (3950..4050).contains(&i1),
            "{i0} {i1}"
        );
        assert!(w.paced.iter().all(|(_, p)| p.burst == 1));
        // The first call's budget: what is due two rounds on (500 ms: 375 000
        // frames of lane 0), capped by the pass (300 000); lane 1: its pass.
        assert_eq!(w.calls[0].1, 300_000, "{:?}", w.calls);
        assert_eq!(w.calls[1].1, 100_000, "{:?}", w.calls);
        // Paced calls get more runs than frames (idle runs wait).
        assert!(w.calls.iter().all(|&(_, b, r)| u64::from(r) >= b));
    }

    #[test]
    fn bursts_span_at_most_the_coalescing_time() {
        // 2 Mpps: 100 frames in 50 µs, capped at the NAPI weight; the
        // interval grows with the burst, so the rate stays.
        assert_eq!(burst_of(2e6, MAX_BURST), 64);
        assert_eq!(burst_of(1e6, MAX_BURST), 50);
        assert_eq!(burst_of(1e5, MAX_BURST), 5);
        assert_eq!(burst_of(1e3, MAX_BURST), 1);
        assert_eq!(burst_of(2e6, 1), 1);
        let mut w = Recorder::default();
        go(
            &[1000],
            Plan {
                rate: Rate::Pps(2_000_000),
                passes: Some(1),
                seconds: None,
                burst: MAX_BURST,
            },
            &mut w,
        );
        let p = w.paced[0].1;
        assert_eq!(p.burst, 64);
        assert_eq!(p.interval_ns, 32_000);
    }

    #[test]
    fn a_lane_slower_than_its_rate_ends_its_passes_in_few_calls() {
        // Asked more than it can send: every run sends, and each call costs
        // its fixed time. The end of a pass must not turn into calls of a
        // few runs each (it did: runs counted from the rate, then
        // recalibrated from those short calls).
        let mut w = Recorder {
            call_time: Duration::from_millis(5),
            run_sends: true,
            run_time: Duration::from_nanos(500),
            call_limit: Some(100),
            ..Recorder::default()
        };
        let s = go(
            &[50_000],
            Plan {
                rate: Rate::Pps(10_000_000),
                passes: Some(4),
                seconds: None,
                burst: 1,
            },
            &mut w,
        );
        assert_eq!(s.frames(), 200_000);
        assert!(
            w.calls.len() <= 16,
            "{} calls: {:?}",
            w.calls.len(),
            w.calls
        );
    }

    #[test]
    fn time_limits_end_at_a_pass_boundary() {
        let mut w = Recorder {
            call_time: Duration::from_millis(100),
            ..Recorder::default()
        };
        let s = go(
            &[1000, 500],
            Plan {
                rate: Rate::Top,
                passes: None,
                seconds: Some(Duration::from_millis(150)),
                burst: 1,
            },
            &mut w,
        );
        let passes = s.per_lane[0] / 1000;
        assert!(passes >= 1, "{s:?}");
        assert_eq!(s.per_lane, [passes * 1000, passes * 500]);
    }

    #[test]
    fn lanes_move_to_the_next_pass_together() {
        // Lane 1 lags (a tenth of each budget); time runs out early. Both
        // lanes still end on the same whole pass.
        let mut w = Recorder {
            call_time: Duration::from_millis(2),
            lane1_share: Some(0.1),
            ..Recorder::default()
        };
        let s = go(
            &[10_000, 10_000],
            Plan {
                rate: Rate::Top,
                passes: None,
                seconds: Some(Duration::from_millis(30)),
                burst: 1,
            },
            &mut w,
        );
        let passes = s.per_lane[0] / 10_000;
        assert!(passes >= 1);
        assert_eq!(s.per_lane, [passes * 10_000, passes * 10_000], "{s:?}");
    }

    #[test]
    fn an_interrupted_call_stops_the_run_and_keeps_its_frames() {
        let mut w = Recorder {
            interrupt_after: Some(1),
            ..Recorder::default()
        };
        let plan = Plan {
            rate: Rate::Top,
            passes: None,
            seconds: None,
            burst: 1,
        };
        let s = run(&mut w, &[1 << 20], &plan, &AtomicBool::new(false)).unwrap();
        assert!(s.interrupted);
        assert_eq!(w.calls.len(), 1);
        assert!(s.frames() > w.calls[0].1, "{s:?}");
        let stop = AtomicBool::new(true);
        let s = run(&mut Recorder::default(), &[10], &plan, &stop).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.frames(), 0);
    }
}
