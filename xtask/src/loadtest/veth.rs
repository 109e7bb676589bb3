//! Frames the veth pair itself lost: smtp-replay sends with `XDP_TX` from
//! the peer end, and a frame the veth cannot hand to the sensor's end (its
//! XDP ring full, the peer not ready) is counted in the peer's
//! `tx_queue_<N>_xdp_xmit_errors` (`ethtool -S`, inside the peer
//! namespace), not by the replayer nor by the sensor. Such losses are the
//! test rig's, so they are reported apart from the sensor's drops.

use std::process::Command;

use anyhow::{Context, Result};

use crate::netns::VethNs;
use crate::util::output;

/// The peer end's `xdp_xmit_errors`, summed over its queues (cumulative
/// since the pair was created: take the difference around a run).
pub fn xmit_errors(ns: &VethNs) -> Result<u64> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.peer_ns, "ethtool", "-S", &ns.peer_if]);
    let stats = output(&mut cmd)
        .context("cannot read the veth's counters (is ethtool installed? `cargo xtask setup`)")?;
    sum(&stats).with_context(|| {
        format!(
            "`ethtool -S {}` shows no tx_queue_*_xdp_xmit_errors counters:\n{stats}",
            ns.peer_if
        )
    })
}

/// Sum of the `tx_queue_<N>_xdp_xmit_errors` lines; `None` when there are
/// none (not a veth, or a kernel that does not count them).
fn sum(stats: &str) -> Option<u64> {
    let mut total = None;
    for line in stats.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let queue = name
            .strip_prefix("tx_queue_")
            .and_then(|r| r.strip_suffix("_xdp_xmit_errors"));
        if queue.is_some_and(|q| q.parse::<u32>().is_ok())
            && let Ok(v) = value.trim().parse::<u64>()
        {
            *total.get_or_insert(0) += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_every_tx_queue_are_summed() {
        let stats = "NIC statistics:
     peer_ifindex: 7
     rx_queue_0_xdp_packets: 10
     rx_queue_0_xdp_tx_errors: 5
     tx_queue_0_xdp_xmit: 1000
     tx_queue_0_xdp_xmit_errors: 3
     tx_queue_1_xdp_xmit: 900
     tx_queue_1_xdp_xmit_errors: 4
";
        assert_eq!(sum(stats), Some(7));
        assert_eq!(sum("NIC statistics:\n     peer_ifindex: 7\n"), None);
    }
}
