//! Storing a snapshot in Redis, idempotently: a Lua script keeps, per
//! member (sensor name and boot id), only the snapshot with the highest
//! sequence number, and refuses anything once the period is closed. A
//! retried, duplicated or out-of-order publish therefore changes nothing;
//! the network-wide sums are computed from the stored snapshots when the
//! period is evaluated (`close`), never accumulated with `HINCRBY`.

use redis::{Connection, RedisResult, Script};

/// The keys of one period. They share the hash tag `{…}`, so in a Redis
/// Cluster they live in one slot and one script can touch them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodKeys {
    /// Hash member → snapshot JSON.
    pub snap: String,
    /// Hash member → sequence number of the stored snapshot.
    pub seq: String,
    /// Set of members whose final snapshot is stored.
    pub finals: String,
    /// Set when the period is closed: later publishes are late.
    pub closed: String,
    /// The evaluator's lock (SET NX PX).
    pub lock: String,
}

impl PeriodKeys {
    /// Period `index` of length `period_us` (both in the tag: fleets with
    /// different periods never mix).
    pub fn new(prefix: &str, period_us: u64, index: u64) -> Self {
        let tag = format!("{prefix}:{{p{period_us}:{index}}}");
        PeriodKeys {
            snap: format!("{tag}:snap"),
            seq: format!("{tag}:seq"),
            finals: format!("{tag}:final"),
            closed: format!("{tag}:closed"),
            lock: format!("{tag}:lock"),
        }
    }
}

/// What the script did with a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Newer than what was stored: it replaced it.
    Stored,
    /// Not newer (a retry, a duplicate, an older one): nothing changed.
    Stale,
    /// The period was already closed: not merged (counted by the caller).
    Late,
}

const MERGE_LUA: &str = r"
-- KEYS: snap, seq, final, closed. ARGV: member, seq, snapshot, final (0/1), ttl ms.
if redis.call('EXISTS', KEYS[4]) == 1 then return 'late' end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 'stale' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return 'stored'
";

/// The merge script (loaded once; `invoke` uses EVALSHA and loads it again
/// after a Redis restart).
pub fn merge_script() -> Script {
    Script::new(MERGE_LUA)
}

/// One publish: `snapshot` of `member` with sequence `seq` (higher is
/// newer), `is_final` for the period's last one; the keys expire after
/// `ttl_ms` so an abandoned period does not stay in Redis.
#[allow(clippy::too_many_arguments)] // each is one script argument
pub fn publish(
    con: &mut Connection,
    script: &Script,
    keys: &PeriodKeys,
    member: &str,
    seq: u64,
    snapshot: &str,
    is_final: bool,
    ttl_ms: u64,
) -> RedisResult<Stored> {
    let answer: String = script
        .key(&keys.snap)
        .key(&keys.seq)
        .key(&keys.finals)
        .key(&keys.closed)
        .arg(member)
        .arg(seq)
        .arg(snapshot)
        .arg(u8::from(is_final))
        .arg(ttl_ms)
        .invoke(con)?;
    Ok(match answer.as_str() {
        "stored" => Stored::Stored,
        "late" => Stored::Late,
        _ => Stored::Stale,
    })
}
