//! Block-list replies: error replies that mention a DNS block list
//! (SEMANTICS.md "Reply notices").
//!
//! All patterns are compiled once, at startup, into one multi-pattern dense
//! DFA, so checking a reply is a single pass over its text whatever the
//! number of patterns, with no allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use regex_automata::Input;
use regex_automata::dfa::{Automaton, dense};

use super::notice::{Note, Notice, NoticeConn};
use crate::config::BLOCKLIST_DFA_SIZE_LIMIT;
use crate::net::ConnInfo;
use crate::smtp::sink::Reply;

/// The compiled block-list patterns.
#[derive(Clone)]
pub struct Blocklist {
    /// `None` when no pattern is configured (nothing ever matches).
    dfa: Option<dense::DFA<Vec<u32>>>,
}

impl std::fmt::Debug for Blocklist {
    /// The pattern count and automaton size, not the transition table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocklist")
            .field(
                "patterns",
                &self.dfa.as_ref().map_or(0, |d| d.pattern_len()),
            )
            .field(
                "dfa_bytes",
                &self.dfa.as_ref().map_or(0, |d| d.memory_usage()),
            )
            .finish()
    }
}

impl Blocklist {
    /// Compiles `patterns` (regex-automata syntax, searched anywhere in the
    /// text). Fails with the regex error when a pattern is invalid or the
    /// automaton would exceed `BLOCKLIST_DFA_SIZE_LIMIT`.
    pub fn new<P: AsRef<str>>(patterns: &[P]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Ok(Blocklist { dfa: None });
        }
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .dfa_size_limit(Some(BLOCKLIST_DFA_SIZE_LIMIT))
                    .determinize_size_limit(Some(BLOCKLIST_DFA_SIZE_LIMIT)),
            )
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        Ok(Blocklist { dfa: Some(dfa) })
    }

    /// Whether any pattern occurs in `text`.
    pub fn matches(&self, text: &str) -> bool {
        let Some(dfa) = &self.dfa else {
            return false;
        };
        // The DFA is built without quit bytes or look-around that could make
        // a search fail; an error would only mean "no decision", so no match.
        matches!(
            dfa.try_search_fwd(&Input::new(text).earliest(true)),
            Ok(Some(_))
        )
    }

    /// The notice a reply raises, if any: only replies with code >= 400
    /// other than 421 are searched.
    pub fn check(&self, conn: &ConnInfo, reply: &Reply<'_>) -> Option<Notice> {
        if reply.code < 400 || reply.code == 421 || !self.matches(reply.text) {
            return None;
        }
        let orig = conn.id.orig_h;
        let (note, msg) = if first_ip(reply.text) == Some(orig) {
            (
                Note::BlBlockedHost,
                format!("{orig} is on an SMTP block list"),
            )
        } else {
            (
                Note::BlErrorMessage,
                format!("{orig} received an error message mentioning an SMTP block list"),
            )
        };
        Some(Notice {
            ts: reply.ts,
            conn: Some(NoticeConn::from(conn)),
            note,
            msg,
            sub: Some(reply.text.to_owned()),
            src: Some(orig),
            n: None,
            location: None,
            written_by: None,
        })
    }
}

/// The first IPv4 or IPv6 address written in `text`, scanning left to right
/// (Zeek's `find_ip_addresses(text)[0]`). An IPv4 address is four dotted
/// decimal octets (0-255) not glued to further digits; an IPv6 address is a
/// run of hex digits, colons and dots, not glued to a preceding word (except
/// the `IPv6:` tag), that parses as one.
pub fn first_ip(text: &str) -> Option<IpAddr> {
    let b = text.as_bytes();
    let is_v6_char = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    for i in 0..b.len() {
        let prev = if i == 0 { None } else { b.get(i - 1).copied() };
        let c = b.get(i).copied()?;
        if c.is_ascii_digit()
            && !prev.is_some_and(|p| p.is_ascii_digit())
            && let Some(a) = ipv4_at(b, i)
        {
            return Some(IpAddr::V4(a));
        }
        // An IPv6 run starts after a non-word character, or right after
        // the `IPv6:` tag of an SMTP address literal ("[IPv6:2001:db8::1]").
        let v6_start = match prev {
            None => true,
            Some(b':') => ends_with_ignore_case(b.get(..i).unwrap_or_default(), b"ipv6:"),
            Some(p) => !(p.is_ascii_alphanumeric() || p == b'.'),
        };
        if (c.is_ascii_hexdigit() || c == b':') && v6_start {
            let end = b
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|&c| !is_v6_char(c))
                .map_or(b.len(), |n| i + n);
            if let Some(a) = text.get(i..end).and_then(ipv6_in_run) {
                return Some(IpAddr::V6(a));
            }
        }
    }
    None
}

/// Four dotted octets starting at `i`, each 1-3 digits and <= 255, with no
/// digit right after the last.
fn ipv4_at(b: &[u8], mut i: usize) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    for (k, slot) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let digits = b
            .get(i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 3 {
            return None;
        }
        let mut v: u16 = 0;
        for &d in b.get(i..i + digits)? {
            v = v * 10 + u16::from(d - b'0');
        }
        *slot = u8::try_from(v).ok()?;
        i += digits;
    }
    Some(Ipv4Addr::from(octets))
}

/// An IPv6 address in a run of hex digits, colons and dots (trailing
/// `.`/`:` dropped, as at the end of a sentence).
fn ipv6_in_run(run: &str) -> Option<Ipv6Addr> {
    let s = run.trim_end_matches(['.', ':']);
    if s.bytes().filter(|&c| c == b':').count() < 2 {
        return None;
    }
    s.parse().ok()
}

fn ends_with_ignore_case(hay: &[u8], suffix: &[u8]) -> bool {
    hay.len()
        .checked_sub(suffix.len())
        .and_then(|start| hay.get(start..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_BLOCKLIST_PATTERNS;
    use crate::net::{ConnId, Ts};

    fn defaults() -> Blocklist {
        Blocklist::new(&DEFAULT_BLOCKLIST_PATTERNS).unwrap()
    }

    fn conn(orig: &str) -> ConnInfo {
        let id = ConnId {
            orig_h: orig.parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.25".parse().unwrap(),
            resp_p: 25,
        };
        ConnInfo::new(id, Ts(1))
    }

    fn reply(code: u16, text: &str) -> Reply<'_> {
        Reply {
            ts: Ts::from_secs(10),
            code,
            text,
            rcpts: crate::smtp::record::List::EMPTY,
        }
    }

    #[test]
    fn each_default_pattern_matches_a_real_looking_reply() {
        let bl = defaults();
        let texts = [
            "5.7.1 Service unavailable; blocked using zen.spamhaus.org/query/bl?ip=1.2.3.4",
            "Rejected, see http://www.sophos.com/security/ip-lookup",
            "Blocked - see http://www.spamcop.net/bl.shtml?1.2.3.4",
            "see http://cbl.abuseat.org/lookup.cgi?ip=1.2.3.4",
            "listed at http://www.sorbs.net/lookup.shtml?1.2.3.4",
            "see http://bsn.borderware.com/lookup",
            "see http://mail-abuse.com/cgi-bin/lookup",
            "http://bbl.barracudacentral.com/q.cgi?ip=1.2.3.4",
            "see http://psbl.surriel.com/listing?ip=1.2.3.4",
            "see http://antispam.imp.ch/spamlist",
            "see http://www.dyndns.com/services/mailhop/spam-policy",
            "see http://rbl.knology.net/query",
            "see http://intercept.datapacket.net/lookup",
        ];
        assert_eq!(texts.len(), DEFAULT_BLOCKLIST_PATTERNS.len());
        for (t, p) in texts.iter().zip(DEFAULT_BLOCKLIST_PATTERNS) {
            assert!(bl.matches(t), "{p} should match {t}");
            // And that pattern alone matches it: each default is exercised.
            assert!(Blocklist::new(&[p]).unwrap().matches(t), "{p} alone on {t}");
        }
    }

    #[test]
    fn clean_and_near_miss_texts_do_not_match() {
        let bl = defaults();
        for t in [
            "5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
            "spamhaus.org without slash",
            "spamhausXorg/ dot must be literal",
            "dyndns.com/ but no s-word after",
            "",
        ] {
            assert!(!bl.matches(t), "{t}");
        }
        assert!(
            !Blocklist::new::<&str>(&[])
                .unwrap()
                .matches("spamhaus.org/")
        );
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        assert!(Blocklist::new(&["(unclosed"]).is_err());
    }

    #[test]
    fn word_boundaries_as_documented_in_config_md() {
        // ASCII word boundaries work in the DFA; Unicode ones are refused
        // at startup rather than failing at search time.
        let bl = Blocklist::new(&[r"(?-u:\b)rbl(?-u:\b)"]).unwrap();
        assert!(bl.matches("listed in rbl today"));
        assert!(!bl.matches("listed in rbls today"));
        assert!(Blocklist::new(&[r"\brbl\b"]).is_err());
        // Case-sensitive unless asked.
        assert!(!defaults().matches("SPAMHAUS.ORG/"));
        assert!(
            Blocklist::new(&["(?i)spamhaus\\.org/"])
                .unwrap()
                .matches("SPAMHAUS.ORG/")
        );
    }

    #[test]
    fn blocked_host_when_first_ip_is_the_client() {
        let bl = defaults();
        let c = conn("192.0.2.7");
        let text =
            "5.7.1 Client host [192.0.2.7] blocked using zen.spamhaus.org/query/bl?ip=192.0.2.7";
        let n = bl.check(&c, &reply(554, text)).unwrap();
        assert_eq!(n.note, Note::BlBlockedHost);
        assert_eq!(n.msg, "192.0.2.7 is on an SMTP block list");
        assert_eq!(n.sub.as_deref(), Some(text));
        assert_eq!(n.src, Some(c.id.orig_h));
        assert_eq!(n.conn.as_ref().map(|x| &x.uid), Some(&c.uid));
        assert_eq!(n.ts, Ts::from_secs(10));
    }

    #[test]
    fn error_message_when_ip_differs_or_is_missing() {
        let bl = defaults();
        let c = conn("192.0.2.7");
        for text in [
            "blocked: 192.0.2.8 see http://cbl.abuseat.org/lookup",
            "blocked, see http://cbl.abuseat.org/lookup (no address)",
            // The client address, but not first.
            "relay 198.51.100.1 for 192.0.2.7 listed at sorbs.net/",
        ] {
            let n = bl.check(&c, &reply(550, text)).unwrap();
            assert_eq!(n.note, Note::BlErrorMessage, "{text}");
            assert_eq!(
                n.msg,
                "192.0.2.7 received an error message mentioning an SMTP block list"
            );
        }
    }

    #[test]
    fn only_error_replies_other_than_421_are_searched() {
        let bl = defaults();
        let c = conn("192.0.2.7");
        let text = "192.0.2.7 listed at spamhaus.org/";
        assert!(bl.check(&c, &reply(250, text)).is_none());
        assert!(bl.check(&c, &reply(399, text)).is_none());
        assert!(bl.check(&c, &reply(421, text)).is_none());
        assert!(bl.check(&c, &reply(400, text)).is_some());
        assert!(bl.check(&c, &reply(450, text)).is_some());
        assert!(bl.check(&c, &reply(554, text)).is_some());
    }

    #[test]
    fn ipv6_client_is_recognised() {
        let bl = defaults();
        let c = conn("2001:db8::25");
        let text = "Client host [IPv6:2001:db8::25] blocked using sbl.spamhaus.org/";
        assert_eq!(
            bl.check(&c, &reply(554, text)).unwrap().note,
            Note::BlBlockedHost
        );
    }

    #[test]
    fn first_ip_extraction() {
        let ip = |s: &str| first_ip(s).map(|a| a.to_string());
        assert_eq!(ip("host [192.0.2.7] blocked"), Some("192.0.2.7".into()));
        assert_eq!(ip("a 1.2.3.4 then 5.6.7.8"), Some("1.2.3.4".into()));
        assert_eq!(ip("ip=10.0.0.1&x"), Some("10.0.0.1".into()));
        assert_eq!(ip("256.1.1.1 then 9.9.9.9"), Some("9.9.9.9".into()));
        assert_eq!(ip("1.2.3.4567 x"), None);
        assert_eq!(ip("version 1.2.3 only"), None);
        assert_eq!(ip("1234.1.2.3"), None);
        assert_eq!(
            ip("at 12:34:56 from 2001:db8::1."),
            Some("2001:db8::1".into())
        );
        assert_eq!(ip("[IPv6:2001:db8::5]"), Some("2001:db8::5".into()));
        assert_eq!(ip("::ffff:192.0.2.1"), Some("::ffff:192.0.2.1".into()));
        assert_eq!(ip("deadbeef cafe"), None);
        assert_eq!(ip(""), None);
        assert_eq!(ip("ééé 7.7.7.7"), Some("7.7.7.7".into()));
    }
}
