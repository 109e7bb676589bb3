//! The network-wide verdict of one period: the stored snapshots of every
//! sensor, merged with the same function that merges one sensor's workers
//! ([`spam::merge`]), evaluated with the same rules and messages as one
//! sensor alone ([`Detection::evaluate_period`]).

use crate::detect::{Detection, Notice, spam};
use crate::net::Ts;

use super::snapshot;

/// What the evaluation produced.
#[derive(Debug, Default)]
pub struct Verdict {
    pub notices: Vec<Notice>,
    /// Stored snapshots that could not be decoded (not merged).
    pub bad_snapshots: u64,
}

/// Merges `snapshots` and raises the period's notices at the latest end any
/// sensor reached. `missing` (members whose final snapshot never came) is
/// named in every notice's `sub`: its counts may be short.
pub fn evaluate<'a>(
    snapshots: impl IntoIterator<Item = &'a [u8]>,
    detection: &Detection,
    missing: &[String],
) -> Verdict {
    let mut bad_snapshots = 0;
    let mut end = Ts(0);
    let mut parts = Vec::new();
    for s in snapshots {
        match snapshot::decode(s) {
            Some((p, e)) => {
                end = end.max(e);
                parts.push(p);
            }
            None => bad_snapshots += 1,
        }
    }
    let merged = spam::merge(parts);
    let mut notices = detection.evaluate_period(&merged, end);
    if !missing.is_empty() {
        let note = format!(
            "fleet: period closed without the final snapshot of {}",
            missing.join(", ")
        );
        for n in &mut notices {
            n.sub = Some(match n.sub.take() {
                Some(s) => format!("{s}; {note}"),
                None => note.clone(),
            });
        }
    }
    Verdict {
        notices,
        bad_snapshots,
    }
}
