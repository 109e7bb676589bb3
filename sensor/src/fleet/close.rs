//! Membership and the closing of a period. Every sensor registers in a
//! members set with a heartbeat key that expires, and records its progress
//! (the end of the last period it has sent its final snapshot for). A
//! period closes when every live member has either sent its final snapshot
//! or progressed past the period, or when its deadline has passed; a member
//! whose heartbeat expired is dropped from the set (it is dead). Exactly one
//! sensor evaluates: the one that takes the period's lock (SET NX PX).

use std::collections::{BTreeSet, HashMap, HashSet};

use redis::{Commands, Connection, RedisResult};

use crate::detect::{Detection, Notice};

use super::merge;
use super::publish::PeriodKeys;

/// The fleet-wide keys (not per period).
#[derive(Clone, Debug)]
pub struct FleetKeys {
    pub members: String,
    pub progress: String,
    hb_prefix: String,
    /// Where the evaluator appends the notices (a Redis stream).
    pub notices: String,
}

impl FleetKeys {
    pub fn new(prefix: &str) -> Self {
        FleetKeys {
            members: format!("{prefix}:members"),
            progress: format!("{prefix}:progress"),
            hb_prefix: format!("{prefix}:hb:"),
            notices: format!("{prefix}:notices"),
        }
    }

    pub fn heartbeat(&self, member: &str) -> String {
        format!("{}{member}", self.hb_prefix)
    }
}

/// Membership and a fresh heartbeat key: what joining and every
/// heartbeat both send.
fn alive(k: &FleetKeys, me: &str, ttl_ms: u64) -> redis::Pipeline {
    let mut p = redis::pipe();
    p.sadd(&k.members, me)
        .ignore()
        .cmd("SET")
        .arg(k.heartbeat(me))
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .ignore();
    p
}

/// Joins the fleet: member, heartbeat, progress 0.
pub fn register(con: &mut Connection, k: &FleetKeys, me: &str, ttl_ms: u64) -> RedisResult<()> {
    alive(k, me, ttl_ms)
        .hset_nx(&k.progress, me, 0)
        .ignore()
        .query(con)
}

/// Refreshes the heartbeat and publishes the progress (network time, µs,
/// through which every final snapshot of this sensor is stored).
pub fn heartbeat(
    con: &mut Connection,
    k: &FleetKeys,
    me: &str,
    ttl_ms: u64,
    progress: u64,
) -> RedisResult<()> {
    alive(k, me, ttl_ms)
        .hset(&k.progress, me, progress)
        .ignore()
        .query(con)
}

/// Leaves the fleet (a clean exit: the final snapshots are stored).
pub fn deregister(con: &mut Connection, k: &FleetKeys, me: &str) -> RedisResult<()> {
    redis::pipe()
        .srem(&k.members, me)
        .ignore()
        .del(k.heartbeat(me))
        .ignore()
        .hdel(&k.progress, me)
        .ignore()
        .query(con)
}

/// What a close attempt found.
#[derive(Debug)]
pub enum Close {
    /// Some live member may still send counters for the period.
    Wait,
    /// This sensor closed and evaluated it.
    Closed {
        notices: Vec<Notice>,
        missing: Vec<String>,
        bad_snapshots: u64,
    },
    /// Another sensor holds the lock or closed it already.
    ByOther,
}

/// One period to close: its keys, its end (µs, network time) and whether
/// its deadline has passed.
pub struct Period<'a> {
    pub keys: &'a PeriodKeys,
    pub end_us: u64,
    pub deadline_passed: bool,
    pub ttl_ms: u64,
}

/// Closes `p` if it can be closed, evaluating it on `detection`.
pub fn try_close(
    con: &mut Connection,
    k: &FleetKeys,
    me: &str,
    p: &Period<'_>,
    detection: &Detection,
) -> RedisResult<Close> {
    if con.exists::<_, bool>(&p.keys.closed)? {
        return Ok(Close::ByOther);
    }
    let members: Vec<String> = con.smembers(&k.members)?;
    let finals: HashSet<String> = con.smembers(&p.keys.finals)?;
    let stored: Vec<String> = con.hkeys(&p.keys.seq)?;
    let progress: HashMap<String, u64> = con.hgetall(&k.progress)?;
    let mut waiting = BTreeSet::new();
    for m in members {
        if !con.exists::<_, bool>(k.heartbeat(&m))? {
            // Dead: its heartbeat expired. Gone from the fleet; what it
            // stored counts, what it did not is named as missing.
            let _: () = redis::pipe()
                .srem(&k.members, &m)
                .ignore()
                .hdel(&k.progress, &m)
                .ignore()
                .query(con)?;
            continue;
        }
        let done = progress.get(&m).is_some_and(|&t| t >= p.end_us);
        if !finals.contains(&m) && !done {
            waiting.insert(m);
        }
    }
    if !waiting.is_empty() && !p.deadline_passed {
        return Ok(Close::Wait);
    }
    let locked: Option<String> = redis::cmd("SET")
        .arg(&p.keys.lock)
        .arg(me)
        .arg("NX")
        .arg("PX")
        .arg(p.ttl_ms)
        .query(con)?;
    if locked.is_none() || con.exists::<_, bool>(&p.keys.closed)? {
        return Ok(Close::ByOther);
    }
    // From here on the merge script refuses this period's publishes: what
    // is read below is all that is counted.
    let _: () = redis::cmd("SET")
        .arg(&p.keys.closed)
        .arg(me)
        .arg("PX")
        .arg(p.ttl_ms)
        .query(con)?;
    let snaps: HashMap<String, Vec<u8>> = con.hgetall(&p.keys.snap)?;
    let mut missing: BTreeSet<String> =
        stored.into_iter().filter(|m| !finals.contains(m)).collect();
    missing.extend(waiting);
    let missing: Vec<String> = missing.into_iter().collect();
    let v = merge::evaluate(snaps.values().map(Vec::as_slice), detection, &missing);
    Ok(Close::Closed {
        notices: v.notices,
        missing,
        bad_snapshots: v.bad_snapshots,
    })
}

/// Appends `notices` to the notice stream (approximate MAXLEN), pipelined.
pub fn stream_notices(
    con: &mut Connection,
    k: &FleetKeys,
    maxlen: usize,
    notices: &[Notice],
) -> RedisResult<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for n in notices {
        let mut line = Vec::new();
        crate::output::writer::format_json(n, &mut line);
        pipe.cmd("XADD")
            .arg(&k.notices)
            .arg("MAXLEN")
            .arg("~")
            .arg(maxlen)
            .arg("*")
            .arg("notice")
            .arg(line)
            .ignore();
    }
    pipe.query(con)
}
