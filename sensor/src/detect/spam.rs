//! Spam-host detection (SEMANTICS.md "Spam-host detection"): per-period
//! connection and reject counts per originating host, kept per worker,
//! merged at each period boundary by a pure function, then evaluated.
//!
//! The merge is exact: sums of totals and rejects, and recipient lists that
//! are kept sorted by (reject time, connection start, ports) and cut at
//! [`MAX_RCPTS_PER_HOST`] addresses. Because each worker keeps the first
//! addresses of its own sorted list, the first addresses of the merged list
//! are the same as one worker that saw every connection would keep.
//!
//! The host table is bounded per worker (`max_hosts_per_period`): once full,
//! a new host takes the place of the one with the fewest connections
//! ([`super::host_table`]). Until it fills, every count is exact; after, a
//! notice's counts are those since the host took its place, and a host that
//! may have been counted before says so in the notice's `sub`.

use std::collections::hash_map::Entry;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::host_table::HostTable;
use super::notice::{Note, Notice};
use crate::config::Config;
use crate::net::{ConnId, ConnInfo, KeyedMap, Ts};
use crate::smtp::sink::Reply;

/// Recipient addresses listed per host and period (SEMANTICS: first 100).
pub const MAX_RCPTS_PER_HOST: usize = 100;

/// The spam rules and limits, from the config; shared by all workers.
#[derive(Clone, Debug)]
pub struct SpamRules {
    pub threshold: u64,
    pub percent: u64,
    pub reject_codes: Vec<u16>,
    pub local_mail: Vec<IpNet>,
    pub local_nets: Vec<IpNet>,
    /// Hosts one worker holds per period (`max_hosts_per_period`); past it
    /// the lightest host makes room.
    pub max_hosts: usize,
    /// Recipient-address bytes one worker keeps per period
    /// (`max_rcpt_bytes_per_period`).
    pub max_rcpt_bytes: usize,
    /// Connections one worker keeps "counted/rejected" marks for
    /// (`max_flows_per_worker`).
    pub max_conns: usize,
    /// Marks of connections silent this long are dropped at a period end
    /// (`conn_idle_timeout`), in case the pipeline never reported their end.
    pub idle_timeout_us: u64,
}

impl SpamRules {
    pub fn from_config(cfg: &Config) -> Self {
        SpamRules {
            threshold: cfg.spam_threshold,
            percent: cfg.spam_percent,
            reject_codes: cfg.reject_codes.clone(),
            local_mail: cfg.local_mail.clone(),
            local_nets: cfg.local_nets.clone(),
            max_hosts: cfg.max_hosts_per_period,
            max_rcpt_bytes: cfg.max_rcpt_bytes_per_period,
            max_conns: cfg.max_flows_per_worker,
            idle_timeout_us: cfg.conn_idle_timeout_us(),
        }
    }

    fn is_reject(&self, code: u16) -> bool {
        self.reject_codes.contains(&code)
    }

    /// The notices of one finished period (merged counters), raised at
    /// `ts` (the period end, or the last packet's time at end of input).
    /// One notice per host over both thresholds, in address order.
    pub fn evaluate(&self, counters: &PeriodCounters, ts: Ts) -> Vec<Notice> {
        let mut hits: Vec<(&IpAddr, &HostCounts, u64)> = counters
            .hosts
            .iter()
            .filter(|(_, h)| h.total >= self.threshold && h.total > 0)
            .filter_map(|(a, h)| {
                let percent = u128::from(h.rejects) * 100 / u128::from(h.total);
                let percent = u64::try_from(percent).unwrap_or(u64::MAX);
                (percent >= self.percent).then_some((a, h, percent))
            })
            .collect();
        hits.sort_by_key(|(a, _, _)| **a);
        hits.into_iter()
            .map(|(&host, h, percent)| {
                let base = format!("{host} - sent: {} rejected: {percent} percent", h.total);
                let (note, msg) = if self.local_mail.iter().any(|n| n.contains(&host)) {
                    (Note::StrangeRejectBehavior, base)
                } else if self.local_nets.iter().any(|n| n.contains(&host)) {
                    (
                        Note::PossibleInternalSpam,
                        format!("{base} mailto: {}", h.rcpts.joined()),
                    )
                } else {
                    (Note::PossibleSpam, base)
                };
                let sub = (h.uncounted > 0).then(|| {
                    format!(
                        "host table full (max_hosts_per_period): counted since it took a place; up to {} earlier connections not counted",
                        h.uncounted
                    )
                });
                Notice {
                    ts,
                    conn: None,
                    note,
                    msg,
                    sub,
                    src: Some(host),
                    n: Some(h.total),
                    location: None,
                    written_by: None,
                }
            })
            .collect()
    }
}

/// The order rejected connections' recipients are listed in: reject time,
/// then connection start, then ports (SEMANTICS), then the responder so the
/// order is total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct RcptKey {
    reject_ts: Ts,
    conn_start: Ts,
    orig_p: u16,
    resp_p: u16,
    resp_h: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RcptEntry {
    key: RcptKey,
    addrs: Vec<String>,
}

/// The first `MAX_RCPTS_PER_HOST` recipient addresses of a host's rejected
/// connections, kept in `RcptKey` order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptList {
    entries: Vec<RcptEntry>,
    /// Addresses held (sum over entries), <= MAX_RCPTS_PER_HOST.
    len: usize,
}

impl RcptList {
    /// Inserts one rejected connection's recipients at their place and cuts
    /// the list back to `MAX_RCPTS_PER_HOST` addresses. Addresses that would
    /// fall after the cut are not copied at all. Returns the bytes copied.
    fn insert<'s>(&mut self, key: RcptKey, addrs: impl ExactSizeIterator<Item = &'s str>) -> usize {
        let count = addrs.len();
        if count == 0 {
            return 0;
        }
        let at = self.entries.partition_point(|e| e.key <= key);
        if at == self.entries.len() && self.len >= MAX_RCPTS_PER_HOST {
            return 0;
        }
        let before: usize = self.entries.iter().take(at).map(|e| e.addrs.len()).sum();
        let room = MAX_RCPTS_PER_HOST.saturating_sub(before);
        let take = count.min(room);
        let entry = RcptEntry {
            key,
            addrs: addrs.take(take).map(str::to_owned).collect(),
        };
        let bytes = entry.addrs.iter().map(String::len).sum();
        self.entries.insert(at, entry);
        self.len += take;
        self.cut();
        bytes
    }

    /// Drops addresses past `MAX_RCPTS_PER_HOST`, keeping the order.
    fn cut(&mut self) {
        let mut seen = 0;
        let mut keep = self.entries.len();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if seen >= MAX_RCPTS_PER_HOST {
                keep = i;
                break;
            }
            let room = MAX_RCPTS_PER_HOST - seen;
            e.addrs.truncate(room);
            seen += e.addrs.len();
        }
        self.entries.truncate(keep);
        self.len = seen;
    }

    fn merge(&mut self, other: RcptList) {
        for e in other.entries {
            let _ = self.insert(e.key, e.addrs.iter().map(String::as_str));
        }
    }

    /// The addresses in order.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .flat_map(|e| e.addrs.iter().map(String::as_str))
    }

    /// Comma separated, as the notice lists them.
    pub fn joined(&self) -> String {
        self.addrs().collect::<Vec<_>>().join(",")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One host's counts in one period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    pub total: u64,
    pub rejects: u64,
    pub rcpts: RcptList,
    /// Upper bound of this host's connections that were not counted: it took
    /// a place in a full host table and may have held one before (0: the
    /// counts are exact).
    pub uncounted: u64,
}

/// Everything one period produced on one worker (or, after [`merge`], on
/// all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeriodCounters {
    pub hosts: KeyedMap<IpAddr, HostCounts>,
    /// Hosts evicted from a full host table (`max_hosts_per_period`) to make
    /// room for a new one.
    pub host_evictions: u64,
    /// Connections those evicted hosts had counted: in no notice.
    pub evicted_conns: u64,
    /// Connections not tracked because the mark table was full
    /// (`max_flows_per_worker`).
    pub conn_overflow: u64,
    /// Rejected connections whose recipients were not listed because the
    /// recipient byte budget was spent (`max_rcpt_bytes_per_period`).
    pub rcpt_overflow: u64,
    /// Recipient bytes copied so far in the live period (the worker's
    /// budget); zero in handed-over counters, so merges compare equal.
    rcpt_bytes: usize,
}

impl PeriodCounters {
    /// Adds `other` into `self`: sums, and recipient lists merged in order.
    pub fn merge(&mut self, other: PeriodCounters) {
        self.host_evictions += other.host_evictions;
        self.evicted_conns += other.evicted_conns;
        self.conn_overflow += other.conn_overflow;
        self.rcpt_overflow += other.rcpt_overflow;
        for (host, h) in other.hosts {
            match self.hosts.entry(host) {
                Entry::Vacant(v) => {
                    v.insert(h);
                }
                Entry::Occupied(mut o) => {
                    let mine = o.get_mut();
                    mine.total += h.total;
                    mine.rejects += h.rejects;
                    mine.uncounted += h.uncounted;
                    mine.rcpts.merge(h.rcpts);
                }
            }
        }
    }

    /// The overflow counters by name (Zeek "weird" style), for the run
    /// summary and anomaly counts.
    pub fn overflows(&self) -> [(&'static str, u64); 4] {
        [
            ("spam_host_evicted", self.host_evictions),
            ("spam_host_evicted_conns", self.evicted_conns),
            ("spam_conn_table_full", self.conn_overflow),
            ("spam_rcpt_budget_spent", self.rcpt_overflow),
        ]
    }

    pub fn host(&self, addr: IpAddr) -> Option<&HostCounts> {
        self.hosts.get(&addr)
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.host_evictions == 0
            && self.evicted_conns == 0
            && self.conn_overflow == 0
            && self.rcpt_overflow == 0
    }
}

/// The merge of several workers' counters for one period.
pub fn merge(parts: impl IntoIterator<Item = PeriodCounters>) -> PeriodCounters {
    let mut all = PeriodCounters::default();
    for p in parts {
        all.merge(p);
    }
    all
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    id: ConnId,
    start: Ts,
}

/// What the counters remember of a live connection.
#[derive(Clone, Copy, Debug)]
struct ConnMark {
    /// Period generation in which the connection was last counted.
    counted_in: u64,
    rejected: bool,
    /// Time of its last reply, to drop marks of connections gone silent.
    last: Ts,
}

/// One worker's spam counters for the current period.
#[derive(Debug, Default)]
pub struct SpamCounters {
    conns: KeyedMap<ConnKey, ConnMark>,
    /// The live period's hosts (handed over into `period.hosts`).
    hosts: HostTable,
    period: PeriodCounters,
    generation: u64,
}

impl SpamCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a server reply: the first reply of a connection counts it for
    /// its originator; the first reply with a reject code counts it as
    /// rejected and lists the recipients given so far.
    ///
    /// A connection spans periods rarely; when its first reject comes in a
    /// later period than its first reply, it is counted in that period too,
    /// so that a period's rejects never exceed its total.
    pub fn on_reply(&mut self, rules: &SpamRules, conn: &ConnInfo, reply: &Reply<'_>) {
        let key = ConnKey {
            id: conn.id,
            start: conn.start,
        };
        let generation = self.generation;
        let is_reject = rules.is_reject(reply.code);
        let full = self.conns.len() >= rules.max_conns;
        let mark = match self.conns.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(_) if full => {
                self.period.conn_overflow += 1;
                return;
            }
            Entry::Vacant(v) => {
                Self::bump(
                    &mut self.hosts,
                    &mut self.period,
                    rules,
                    conn.id.orig_h,
                    |h, _| h.total += 1,
                );
                v.insert(ConnMark {
                    counted_in: generation,
                    rejected: false,
                    last: reply.ts,
                })
            }
        };
        mark.last = mark.last.max(reply.ts);
        if !is_reject || mark.rejected {
            return;
        }
        mark.rejected = true;
        let recount = mark.counted_in != generation;
        mark.counted_in = generation;
        let rkey = RcptKey {
            reject_ts: reply.ts,
            conn_start: conn.start,
            orig_p: conn.id.orig_p,
            resp_p: conn.id.resp_p,
            resp_h: conn.id.resp_h,
        };
        let budget_left = self.period.rcpt_bytes < rules.max_rcpt_bytes;
        let mut copied = 0;
        Self::bump(
            &mut self.hosts,
            &mut self.period,
            rules,
            conn.id.orig_h,
            |h, fresh| {
                // Counted again in a new period, or in a place its host took
                // after being evicted: rejects never exceed the total.
                if recount || fresh {
                    h.total += 1;
                }
                h.rejects += 1;
                if budget_left {
                    copied = h.rcpts.insert(rkey, reply.rcpts.iter());
                }
            },
        );
        if !budget_left && !reply.rcpts.is_empty() {
            self.period.rcpt_overflow += 1;
        }
        self.period.rcpt_bytes = self.period.rcpt_bytes.saturating_add(copied);
    }

    /// Applies `f` to the host's counts (`fresh`: just created), evicting
    /// the lightest host when the table is full.
    fn bump(
        hosts: &mut HostTable,
        period: &mut PeriodCounters,
        rules: &SpamRules,
        host: IpAddr,
        f: impl FnOnce(&mut HostCounts, bool),
    ) {
        let b = hosts.bump(host, rules.max_hosts, f);
        period.rcpt_bytes = period.rcpt_bytes.saturating_sub(b.freed_rcpt_bytes);
    }

    /// Forgets a finished connection (called when the flow is removed).
    pub fn on_conn_end(&mut self, conn: &ConnInfo) {
        self.conns.remove(&ConnKey {
            id: conn.id,
            start: conn.start,
        });
    }

    /// Ends the current period at `end`: hands over its counters and starts
    /// from zero. Marks of live connections stay (a connection counts once);
    /// marks of connections silent for `idle_timeout_us` are dropped.
    pub fn take_period(&mut self, rules: &SpamRules, end: Ts) -> PeriodCounters {
        self.generation += 1;
        let horizon = end.micros().saturating_sub(rules.idle_timeout_us);
        self.conns.retain(|_, m| m.last.micros() >= horizon);
        let mut done = std::mem::take(&mut self.period);
        done.rcpt_bytes = 0;
        done.host_evictions = self.hosts.evictions;
        done.evicted_conns = self.hosts.evicted_conns;
        done.hosts = self.hosts.take();
        done
    }

    /// Connections currently remembered.
    pub fn tracked_conns(&self) -> usize {
        self.conns.len()
    }
}

/// Tumbling inspection periods in network time, the first starting at the
/// first packet (or, [`aligned`](Self::aligned), at the epoch-aligned start
/// of the first packet's period). Drive it with every packet time (in order);
/// it says when a period has closed.
#[derive(Clone, Copy, Debug)]
pub struct PeriodClock {
    period_us: u64,
    /// Start of the current period (`None` before the first packet).
    start: Option<Ts>,
    /// Periods are `[k·period, (k+1)·period)` (fleet mode), so that every
    /// sensor's period `k` is the same interval whatever its first packet.
    aligned: bool,
}

impl PeriodClock {
    pub fn new(period_us: u64) -> Self {
        PeriodClock {
            period_us: period_us.max(1),
            start: None,
            aligned: false,
        }
    }

    /// Epoch-aligned periods: `start = floor(ts / period) * period`
    /// (SEMANTICS "Fleet mode").
    pub fn aligned(period_us: u64) -> Self {
        PeriodClock {
            aligned: true,
            ..Self::new(period_us)
        }
    }

    /// Advances to `ts`. Returns the end of the period that closed when `ts`
    /// is at or past it; after a gap of several periods the empty ones are
    /// skipped (they would raise nothing). Times going backwards change
    /// nothing.
    pub fn advance(&mut self, ts: Ts) -> Option<Ts> {
        let Some(start) = self.start else {
            let first = if self.aligned {
                ts.micros() / self.period_us * self.period_us
            } else {
                ts.micros()
            };
            self.start = Some(Ts(first));
            return None;
        };
        let end = start.micros().saturating_add(self.period_us);
        if ts.micros() < end {
            return None;
        }
        let skipped = (ts.micros() - start.micros()) / self.period_us;
        self.start = Some(Ts(start.micros() + skipped * self.period_us));
        Some(Ts(end))
    }

    /// The period length, in microseconds.
    pub fn period_us(&self) -> u64 {
        self.period_us
    }

    /// Start of the current period, once started.
    pub fn current_start(&self) -> Option<Ts> {
        self.start
    }

    /// End of the current period, once started.
    pub fn current_end(&self) -> Option<Ts> {
        self.start
            .map(|s| Ts(s.micros().saturating_add(self.period_us)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::record::{ListField, MessageRecord};

    fn rules() -> SpamRules {
        SpamRules {
            local_mail: vec!["198.18.1.0/24".parse().unwrap()],
            local_nets: vec!["198.18.0.0/15".parse().unwrap()],
            ..SpamRules::from_config(&Config::default())
        }
    }

    fn conn(orig: &str, port: u16, start: u64) -> ConnInfo {
        let id = ConnId {
            orig_h: orig.parse().unwrap(),
            orig_p: port,
            resp_h: "203.0.113.25".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(start))
    }

    fn reply(ts: u64, code: u16, rcpts: &MessageRecord) -> Reply<'_> {
        Reply {
            ts: Ts(ts),
            code,
            text: "",
            rcpts: rcpts.list(ListField::Rcptto),
        }
    }

    /// A record holding just these RCPT TO addresses.
    fn rcpts<S: AsRef<str>>(addrs: &[S]) -> MessageRecord {
        let mut r = MessageRecord::default();
        for a in addrs {
            r.push_list(ListField::Rcptto, a.as_ref());
        }
        r
    }

    /// `total` connections from `host`, the first `rejected` of them
    /// rejected with `rcpt-<i>@x` listed; returned as (conn, events) so tests
    /// can replay them on one or several counter sets.
    fn traffic(host: &str, total: u16, rejected: u16, t0: u64) -> Vec<Conn> {
        traffic_from(host, total, rejected, t0, 10_000)
    }

    type Conn = (ConnInfo, Vec<(u64, u16, MessageRecord)>);

    fn traffic_from(host: &str, total: u16, rejected: u16, t0: u64, port0: u16) -> Vec<Conn> {
        (0..total)
            .map(|i| {
                let start = t0 + u64::from(i) * 10;
                let c = conn(host, port0 + i, start);
                let mut ev = vec![(start + 1, 220, rcpts::<&str>(&[]))];
                if i < rejected {
                    let r = rcpts(&[format!("rcpt-{i}@x"), format!("rcpt-{i}b@x")]);
                    ev.push((start + 2, 250, r.clone()));
                    ev.push((start + 3, 550, r.clone()));
                    // A second reject on the same connection adds nothing.
                    ev.push((start + 4, 554, r));
                }
                (c, ev)
            })
            .collect()
    }

    fn run_on(workers: usize, rules: &SpamRules, conns: &[Conn]) -> PeriodCounters {
        let mut w: Vec<SpamCounters> = (0..workers).map(|_| SpamCounters::new()).collect();
        for (i, (c, evs)) in conns.iter().enumerate() {
            // Spread connections as a hash would: not round robin.
            let k = (c.uid.as_str().bytes().map(usize::from).sum::<usize>() + i / 3) % workers;
            for (ts, code, rcpts) in evs {
                w[k].on_reply(rules, c, &reply(*ts, *code, rcpts));
            }
        }
        merge(w.iter_mut().map(|x| x.take_period(rules, Ts(u64::MAX))))
    }

    fn notices(total: u16, rejected: u16, host: &str) -> Vec<Notice> {
        let r = rules();
        let c = run_on(1, &r, &traffic(host, total, rejected, 1_000_000));
        r.evaluate(&c, Ts::from_secs(3600))
    }

    #[test]
    fn threshold_is_inclusive_at_300_connections() {
        assert_eq!(notices(300, 300, "203.0.113.9").len(), 1);
        assert!(notices(299, 299, "203.0.113.9").is_empty());
    }

    #[test]
    fn percent_is_inclusive_at_30_with_integer_division() {
        // 90 of 300 = 30 %.
        assert_eq!(notices(300, 90, "203.0.113.9").len(), 1);
        // 89 of 300 = 29.67 % -> 29.
        assert!(notices(300, 89, "203.0.113.9").is_empty());
        // 98 of 310 = 31.6 % -> 31, reported as 31.
        let n = notices(310, 98, "203.0.113.9");
        assert_eq!(n[0].msg, "203.0.113.9 - sent: 310 rejected: 31 percent");
    }

    #[test]
    fn classes_and_messages_byte_for_byte() {
        let n = notices(300, 300, "203.0.113.9");
        assert_eq!(n[0].note, Note::PossibleSpam);
        assert_eq!(n[0].msg, "203.0.113.9 - sent: 300 rejected: 100 percent");
        assert_eq!(
            (n[0].src, n[0].n),
            (Some("203.0.113.9".parse().unwrap()), Some(300))
        );
        assert!(n[0].conn.is_none() && n[0].sub.is_none());
        assert_eq!(n[0].ts, Ts::from_secs(3600));

        let n = notices(300, 150, "198.18.1.5");
        assert_eq!(n[0].note, Note::StrangeRejectBehavior);
        assert_eq!(n[0].msg, "198.18.1.5 - sent: 300 rejected: 50 percent");

        let n = notices(300, 3 * 30, "198.18.7.7");
        assert_eq!(n[0].note, Note::PossibleInternalSpam);
        let listed: Vec<String> = (0..50)
            .flat_map(|i| [format!("rcpt-{i}@x"), format!("rcpt-{i}b@x")])
            .collect();
        assert_eq!(
            n[0].msg,
            format!(
                "198.18.7.7 - sent: 300 rejected: 30 percent mailto: {}",
                listed.join(",")
            )
        );
    }

    #[test]
    fn recipients_capped_at_100_per_host() {
        let r = rules();
        let c = run_on(1, &r, &traffic("198.18.7.7", 300, 300, 0));
        let h = c.host("198.18.7.7".parse().unwrap()).unwrap();
        assert_eq!(h.rcpts.len(), MAX_RCPTS_PER_HOST);
        assert_eq!(h.rcpts.addrs().count(), MAX_RCPTS_PER_HOST);
        assert_eq!(h.rcpts.addrs().last(), Some("rcpt-49b@x"));
        assert_eq!((h.total, h.rejects), (300, 300));
    }

    #[test]
    fn first_reply_counts_and_first_reject_rejects_once() {
        let r = rules();
        let mut s = SpamCounters::new();
        let c = conn("203.0.113.9", 1, 0);
        let none = rcpts::<&str>(&[]);
        s.on_reply(&r, &c, &reply(1, 220, &none));
        s.on_reply(&r, &c, &reply(2, 250, &none));
        s.on_reply(&r, &c, &reply(3, 551, &none));
        s.on_reply(&r, &c, &reply(4, 553, &none));
        // 421 / 450 are not reject codes.
        let c2 = conn("203.0.113.9", 2, 0);
        s.on_reply(&r, &c2, &reply(5, 421, &none));
        s.on_reply(&r, &c2, &reply(6, 450, &none));
        let p = s.take_period(&r, Ts(10));
        let h = p.host(c.id.orig_h).unwrap();
        assert_eq!((h.total, h.rejects), (2, 1));
    }

    #[test]
    fn counts_do_not_leak_across_periods() {
        let r = rules();
        let mut s = SpamCounters::new();
        let none = rcpts::<&str>(&[]);
        let c = conn("203.0.113.9", 1, 0);
        s.on_reply(&r, &c, &reply(1, 220, &none));
        let p1 = s.take_period(&r, Ts(100));
        assert_eq!(p1.host(c.id.orig_h).unwrap().total, 1);
        // Same connection, later reply: not counted again.
        s.on_reply(&r, &c, &reply(101, 250, &none));
        let c2 = conn("203.0.113.9", 2, 150);
        s.on_reply(&r, &c2, &reply(151, 220, &none));
        let p2 = s.take_period(&r, Ts(200));
        assert_eq!(p2.host(c.id.orig_h).unwrap().total, 1);
        // The first connection's first reject in period 3 counts it there.
        s.on_reply(&r, &c, &reply(201, 550, &none));
        let p3 = s.take_period(&r, Ts(300));
        let h = p3.host(c.id.orig_h).unwrap();
        assert_eq!((h.total, h.rejects), (1, 1));
        assert!(s.take_period(&r, Ts(400)).is_empty());
    }

    #[test]
    fn merge_of_any_split_equals_one_worker() {
        let r = SpamRules {
            threshold: 5,
            ..rules()
        };
        let mut conns = traffic("198.18.7.7", 60, 40, 0);
        conns.extend(traffic("198.18.7.8", 30, 30, 5));
        conns.extend(traffic("203.0.113.1", 7, 3, 3));
        // Same reject time and start, ports decide (tie rule).
        conns.extend(traffic_from("198.18.7.7", 5, 5, 0, 20_000));
        // Over the 100-address cap: the cut must fall in the same place.
        conns.extend(traffic_from("198.18.7.9", 80, 80, 7, 30_000));
        // Interleave by time as a capture would.
        conns.sort_by_key(|(c, _)| (c.start, c.id.orig_p));
        let one = run_on(1, &r, &conns);
        for workers in [2, 3, 4, 7] {
            let many = run_on(workers, &r, &conns);
            assert_eq!(many, one, "{workers} workers");
            assert_eq!(
                r.evaluate(&many, Ts(9)),
                r.evaluate(&one, Ts(9)),
                "{workers} workers"
            );
        }
        let n = r.evaluate(&one, Ts(9));
        assert_eq!(n.len(), 4);
        let capped = one.host("198.18.7.9".parse().unwrap()).unwrap();
        assert_eq!(capped.rcpts.len(), MAX_RCPTS_PER_HOST);
        // In address order.
        assert!(n.windows(2).all(|w| w[0].src < w[1].src));
    }

    #[test]
    fn recipients_ordered_by_reject_time_then_start_then_port() {
        let r = rules();
        let mut s = SpamCounters::new();
        let a = rcpts(&["a@x"]);
        let b = rcpts(&["b@x"]);
        let c = rcpts(&["c@x"]);
        // Rejected in reverse order of arrival at this worker.
        s.on_reply(&r, &conn("198.18.7.7", 9, 5), &reply(50, 550, &c));
        s.on_reply(&r, &conn("198.18.7.7", 3, 5), &reply(50, 550, &b));
        s.on_reply(&r, &conn("198.18.7.7", 4, 1), &reply(50, 550, &a));
        let p = s.take_period(&r, Ts(100));
        let h = p.host("198.18.7.7".parse().unwrap()).unwrap();
        assert_eq!(h.rcpts.joined(), "a@x,b@x,c@x");
    }

    #[test]
    fn full_host_table_evicts_the_lightest_host() {
        let r = SpamRules {
            max_hosts: 2,
            threshold: 3,
            ..rules()
        };
        let mut s = SpamCounters::new();
        let none = rcpts::<&str>(&[]);
        // Host 1 three connections, host 2 one, then host 3 three: host 2
        // makes room, hosts 1 and 3 are counted exactly.
        let mut port = 0;
        for (h, n) in [("203.0.113.1", 3), ("203.0.113.2", 1), ("203.0.113.3", 3)] {
            for _ in 0..n {
                port += 1;
                let c = conn(h, port, u64::from(port));
                s.on_reply(&r, &c, &reply(u64::from(port), 550, &none));
            }
        }
        let p = s.take_period(&r, Ts(10));
        assert_eq!(p.hosts.len(), 2);
        assert!(p.host("203.0.113.2".parse().unwrap()).is_none());
        for h in ["203.0.113.1", "203.0.113.3"] {
            let c = p.host(h.parse().unwrap()).unwrap();
            assert_eq!((c.total, c.rejects, c.uncounted), (3, 3, 0), "{h}");
        }
        assert_eq!((p.host_evictions, p.evicted_conns), (1, 1));
        assert_eq!(p.overflows()[0], ("spam_host_evicted", 1));
        assert_eq!(p.overflows()[1], ("spam_host_evicted_conns", 1));
        let n = r.evaluate(&p, Ts(10));
        assert_eq!(n.len(), 2);
        assert!(n.iter().all(|n| n.sub.is_none()));
        // The next period starts with an empty table.
        assert!(s.take_period(&r, Ts(20)).is_empty());
    }

    #[test]
    fn evicted_host_that_comes_back_is_counted_and_says_so() {
        let r = SpamRules {
            max_hosts: 1,
            threshold: 2,
            ..rules()
        };
        let mut s = SpamCounters::new();
        let none = rcpts::<&str>(&[]);
        let a = conn("203.0.113.1", 1, 0);
        s.on_reply(&r, &a, &reply(1, 220, &none));
        // Host 2 evicts host 1 (both weight 1: the oldest goes).
        s.on_reply(&r, &conn("203.0.113.2", 2, 2), &reply(3, 220, &none));
        // Host 1's connection is rejected after its host was evicted: it is
        // counted again in its new place, so rejects never exceed the total.
        s.on_reply(&r, &a, &reply(4, 550, &none));
        s.on_reply(&r, &conn("203.0.113.1", 3, 5), &reply(6, 550, &none));
        let p = s.take_period(&r, Ts(10));
        let h = p.host(a.id.orig_h).unwrap();
        assert_eq!((h.total, h.rejects), (2, 2));
        // Its bound: the weight it inherited from host 2.
        assert_eq!(h.uncounted, 2);
        let n = r.evaluate(&p, Ts(10));
        assert_eq!(n[0].msg, "203.0.113.1 - sent: 2 rejected: 100 percent");
        assert_eq!(
            n[0].sub.as_deref(),
            Some(
                "host table full (max_hosts_per_period): counted since it took a place; up to 2 earlier connections not counted"
            )
        );
        assert_eq!((p.host_evictions, p.evicted_conns), (2, 2));
    }

    #[test]
    fn recipient_bytes_are_bounded_per_period() {
        let r = SpamRules {
            max_rcpt_bytes: 20,
            ..rules()
        };
        let mut s = SpamCounters::new();
        let a = rcpts(&["0123456789@x"]); // 12 bytes
        for port in 1..=3 {
            s.on_reply(&r, &conn("198.18.7.7", port, 0), &reply(5, 550, &a));
        }
        let p = s.take_period(&r, Ts(10));
        let h = p.host("198.18.7.7".parse().unwrap()).unwrap();
        // Two lists fit under the budget (12 < 20, then 24); the third not.
        assert_eq!((h.total, h.rejects, h.rcpts.len()), (3, 3, 2));
        assert_eq!(p.rcpt_overflow, 1);
        // A new period has a new budget.
        s.on_reply(&r, &conn("198.18.7.7", 9, 20), &reply(25, 550, &a));
        assert_eq!(s.take_period(&r, Ts(30)).rcpt_overflow, 0);
    }

    #[test]
    fn conn_marks_are_bounded_and_forgotten() {
        let r = SpamRules {
            max_conns: 2,
            idle_timeout_us: 100,
            ..rules()
        };
        let mut s = SpamCounters::new();
        let none = rcpts::<&str>(&[]);
        let cs: Vec<ConnInfo> = (0..3).map(|i| conn("203.0.113.1", i, 0)).collect();
        for c in &cs {
            s.on_reply(&r, c, &reply(1, 220, &none));
        }
        assert_eq!(s.tracked_conns(), 2);
        s.on_conn_end(&cs[0]);
        assert_eq!(s.tracked_conns(), 1);
        let p = s.take_period(&r, Ts(1000));
        assert_eq!(
            (p.host(cs[0].id.orig_h).unwrap().total, p.conn_overflow),
            (2, 1)
        );
        // Silent longer than the idle timeout: dropped at the boundary.
        assert_eq!(s.tracked_conns(), 0);
    }

    #[test]
    fn aligned_period_clock_starts_at_the_epoch_multiple() {
        let mut c = PeriodClock::aligned(100);
        assert_eq!(c.advance(Ts(1050)), None);
        assert_eq!(c.current_start(), Some(Ts(1000)));
        assert_eq!(c.current_end(), Some(Ts(1100)));
        assert_eq!(c.advance(Ts(1100)), Some(Ts(1100)));
        // A gap keeps the alignment.
        assert_eq!(c.advance(Ts(1555)), Some(Ts(1200)));
        assert_eq!(c.current_start(), Some(Ts(1500)));
        // The single-sensor rule is unchanged.
        let mut c = PeriodClock::new(100);
        assert_eq!(c.advance(Ts(1050)), None);
        assert_eq!(c.current_start(), Some(Ts(1050)));
    }

    #[test]
    fn period_clock_tumbles_from_first_packet() {
        let mut c = PeriodClock::new(100);
        assert_eq!(c.advance(Ts(1000)), None);
        assert_eq!(c.current_end(), Some(Ts(1100)));
        assert_eq!(c.advance(Ts(1099)), None);
        assert_eq!(c.advance(Ts(1100)), Some(Ts(1100)));
        assert_eq!(c.current_end(), Some(Ts(1200)));
        // Backwards: nothing.
        assert_eq!(c.advance(Ts(1050)), None);
        // A gap of several periods closes the current one once.
        assert_eq!(c.advance(Ts(1555)), Some(Ts(1200)));
        assert_eq!(c.current_end(), Some(Ts(1600)));
    }
}
