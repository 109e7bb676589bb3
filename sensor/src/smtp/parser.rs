//! Pure parsing functions over byte slices: command and reply lines, BDAT
//! arguments, e-mail and IP address extraction, header lines. No state, no
//! allocation except where a result is built; the session (`session.rs`)
//! owns the transaction and calls these.
//!
//! Where Zeek decides with a regular expression in its scripts, the function
//! here reproduces what that expression matches, scanning with plain loops
//! (no regex over message data).

use std::borrow::Cow;
use std::net::IpAddr;

use super::text::lossy;

/// The SMTP commands the state machine tells apart. Anything else is
/// `Unknown` (still matched with its reply, so replies stay aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Starttls,
    Auth,
    Vrfy,
    Expn,
    Help,
    Turn,
    Send,
    Soml,
    Saml,
    Etrn,
    Unknown,
}

impl Verb {
    /// Case-insensitive lookup of a command word.
    pub fn from_word(word: &[u8]) -> Verb {
        const TABLE: &[(&[u8], Verb)] = &[
            (b"HELO", Verb::Helo),
            (b"EHLO", Verb::Ehlo),
            (b"MAIL", Verb::Mail),
            (b"RCPT", Verb::Rcpt),
            (b"DATA", Verb::Data),
            (b"BDAT", Verb::Bdat),
            (b"RSET", Verb::Rset),
            (b"NOOP", Verb::Noop),
            (b"QUIT", Verb::Quit),
            (b"STARTTLS", Verb::Starttls),
            (b"X-ANONYMOUSTLS", Verb::Starttls),
            (b"AUTH", Verb::Auth),
            (b"VRFY", Verb::Vrfy),
            (b"EXPN", Verb::Expn),
            (b"HELP", Verb::Help),
            (b"TURN", Verb::Turn),
            (b"SEND", Verb::Send),
            (b"SOML", Verb::Soml),
            (b"SAML", Verb::Saml),
            (b"ETRN", Verb::Etrn),
        ];
        TABLE
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map_or(Verb::Unknown, |(_, v)| *v)
    }
}

/// A client command line split into its verb and argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    pub verb: Verb,
    /// The command word as sent.
    pub word: &'a [u8],
    /// Everything after the word and the blanks that follow it.
    pub arg: &'a [u8],
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Leading and trailing ASCII whitespace removed.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or_default()
}

/// Splits a command line like Zeek's `get_word`: the word runs to the first
/// blank, the argument starts after the blanks that follow.
pub fn parse_command(line: &[u8]) -> Command<'_> {
    let word_end = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
    let (word, rest) = line.split_at(word_end);
    let arg_start = rest
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(rest.len());
    let arg = rest.get(arg_start..).unwrap_or_default();
    Command {
        verb: Verb::from_word(word),
        word,
        arg,
    }
}

/// One line of a server reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    pub code: u16,
    /// `250-…`: more lines of this reply follow.
    pub more: bool,
    /// Text after the code and separator, leading blanks skipped.
    pub text: &'a [u8],
}

/// Parses a reply line: three digits 100..=599, then `-` for a continued
/// reply or anything else for the last line. `None` if there is no valid
/// code (Zeek: "reply code out of range").
pub fn parse_reply(line: &[u8]) -> Option<ReplyLine<'_>> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return None;
    }
    let more = line.get(3) == Some(&b'-');
    let rest = line.get(if more { 4 } else { 3 }..).unwrap_or_default();
    let start = rest
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(rest.len());
    Some(ReplyLine {
        code,
        more,
        text: rest.get(start..).unwrap_or_default(),
    })
}

/// A parsed `BDAT <size> [LAST]` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BdatArg {
    pub size: u64,
    pub last: bool,
}

/// Why a BDAT argument was refused (Zeek's `smtp_invalid_bdat_command`
/// details).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BdatError {
    #[error("BDAT argument bad length")]
    BadLength,
    #[error("BDAT not followed by a valid chunk-size")]
    NoChunkSize,
    #[error("BDAT chunk-size not valid")]
    InvalidChunkSize,
    #[error("BDAT chunk-size too large")]
    TooLarge,
    #[error("BDAT chunk-size followed by junk")]
    Junk,
}

/// Parses the argument of BDAT as Zeek's `parse_bdat_arg` does: a decimal
/// size, optionally followed by exactly ` LAST` (any case).
pub fn parse_bdat_arg(arg: &[u8]) -> Result<BdatArg, BdatError> {
    // "18446744073709551615 LAST" is the longest meaningful argument.
    const MAX_ARG_LEN: usize = 25;
    if arg.is_empty() || arg.len() > MAX_ARG_LEN {
        return Err(BdatError::BadLength);
    }
    if !arg.first().is_some_and(u8::is_ascii_digit) {
        return Err(BdatError::NoChunkSize);
    }
    let digits_end = arg
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(arg.len());
    let (digits, rest) = arg.split_at(digits_end);
    if !rest.is_empty() && rest.first() != Some(&b' ') {
        return Err(BdatError::InvalidChunkSize);
    }
    let mut size: u64 = 0;
    for &d in digits {
        size = size
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .ok_or(BdatError::TooLarge)?;
    }
    if rest.is_empty() {
        return Ok(BdatArg { size, last: false });
    }
    if rest.eq_ignore_ascii_case(b" LAST") {
        Ok(BdatArg { size, last: true })
    } else {
        Err(BdatError::Junk)
    }
}

/// Calls `f` with every e-mail address Zeek's `extract_email_addrs_*` finds
/// in `s`, in order, with the characters `<>,:;` and blanks removed.
///
/// The Zeek pattern is
/// `(^|[<,:[:blank:]])[^<,:[:blank:]@]+"@"[^>,;[:blank:]]+([>,;[:blank:]]|$)`
/// applied at every position (so `^` matches anywhere), non-overlapping.
pub fn for_each_email_addr(s: &[u8], mut f: impl FnMut(Cow<'_, str>)) {
    let mut i = 0;
    while let Some((addr, next)) = next_email_addr(s, i) {
        f(addr);
        i = next;
    }
}

/// The next address of `for_each_email_addr` at or after `i`, and where
/// the scan goes on.
fn next_email_addr(s: &[u8], mut i: usize) -> Option<(Cow<'_, str>, usize)> {
    let local_char = |b: u8| !matches!(b, b'<' | b',' | b':' | b' ' | b'\t' | b'@');
    let domain_char = |b: u8| !matches!(b, b'>' | b',' | b';' | b' ' | b'\t');
    let n = s.len();
    while i < n {
        let mut j = i;
        if matches!(s.get(j), Some(b'<' | b',' | b':' | b' ' | b'\t')) {
            j += 1;
        }
        let mut k = j;
        while s.get(k).is_some_and(|&b| local_char(b)) {
            k += 1;
        }
        if k > j && s.get(k) == Some(&b'@') {
            let mut m = k + 1;
            while s.get(m).is_some_and(|&b| domain_char(b)) {
                m += 1;
            }
            if m > k + 1 {
                let span = s.get(j..m).unwrap_or_default();
                let dropped = |b: &u8| matches!(b, b'<' | b'>' | b',' | b':' | b';' | b' ' | b'\t');
                // Usually nothing to drop: the span itself, not copied.
                let addr = if span.iter().any(dropped) {
                    let kept = span.iter().copied().filter(|b| !dropped(b)).collect();
                    Cow::Owned(bytes_into_string(kept))
                } else {
                    lossy(span)
                };
                let next = if m < n { m + 1 } else { n };
                return Some((addr, next));
            }
        }
        // Every start inside the local-part run fails the same way: skip
        // it, which keeps the scan linear.
        i = (i + 1).max(k);
    }
    None
}

/// `bytes` as text, invalid UTF-8 replaced; valid text keeps its buffer.
pub fn bytes_into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The first address `for_each_email_addr` finds (Zeek
/// `extract_first_email_addr`).
pub fn first_email_addr(s: &[u8]) -> Option<Cow<'_, str>> {
    next_email_addr(s, 0).map(|(addr, _)| addr)
}

/// Removes Zeek's `ORCPT=rfc822;?` from a RCPT TO address.
pub fn strip_orcpt(addr: Cow<'_, str>) -> Cow<'_, str> {
    // Nearly every address has no `=`: no searcher to build then.
    if !addr.contains('=') {
        return addr;
    }
    Cow::Owned(
        addr.replace("ORCPT=rfc822;", "")
            .replace("ORCPT=rfc822", ""),
    )
}

/// Calls `f` with each address of a To/Cc header value: split at commas
/// outside double quotes and angle brackets, each piece trimmed, empty
/// pieces dropped.
pub fn for_each_mime_address(value: &str, mut f: impl FnMut(&str)) {
    let mut in_quote = false;
    let mut in_angle = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                let piece = value.get(start..i).unwrap_or_default().trim();
                if !piece.is_empty() {
                    f(piece);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let piece = value.get(start..).unwrap_or_default().trim();
    if !piece.is_empty() {
        f(piece);
    }
}

fn is_ip_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// Whether a run of address characters can be an address at all: every
/// IPv4 or IPv6 text holds a `.` or a `:`.
fn may_be_ip(run: &[u8]) -> bool {
    run.iter().any(|&b| b == b'.' || b == b':')
}

/// Longest textual IP address (IPv6 with an IPv4 tail).
const MAX_IP_TEXT: usize = 45;

/// Bytes of a header value searched for an unwrapped address (Zeek's
/// position-by-position search is quadratic in the worst case; real
/// X-Originating-IP values are a few dozen bytes).
pub const MAX_IP_SCAN: usize = 256;

/// Calls `f` with every IP address in `s`, in order, like Zeek's
/// `extract_ip_addresses`: at each position the longest valid address is
/// taken; with `check_wrapping`, only addresses wrapped in matching `[]`,
/// `()`, `{}`, blanks, or making up the whole string count.
///
/// A wrapped address is always a whole run of address characters
/// (`[0-9A-Fa-f:.]`), since the wrapping characters are not address
/// characters; so with `check_wrapping` each run is parsed once, in linear
/// time. Without it, every position of `s` is tried (use on short input).
pub fn for_each_ip_addr(s: &[u8], check_wrapping: bool, mut f: impl FnMut(IpAddr)) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        if !s.get(i).is_some_and(|&b| is_ip_char(b)) {
            i += 1;
            continue;
        }
        let mut run_end = i;
        while s.get(run_end).is_some_and(|&b| is_ip_char(b)) {
            run_end += 1;
        }
        if check_wrapping {
            let before = if i == 0 { None } else { s.get(i - 1).copied() };
            let after = s.get(run_end).copied();
            let wrapped = matches!(
                (before, after),
                (None, None)
                    | (Some(b'['), Some(b']'))
                    | (Some(b'('), Some(b')'))
                    | (Some(b'{'), Some(b'}'))
                    | (Some(b' '), Some(b' '))
            );
            // Checked before parsing: most runs are bits of host names and
            // words ("f", "e", "de"), neither wrapped nor an address.
            let run = s.get(i..run_end).unwrap_or_default();
            if wrapped
                && run.len() <= MAX_IP_TEXT
                && may_be_ip(run)
                && let Some(ip) = std::str::from_utf8(run)
                    .ok()
                    .and_then(|t| t.parse::<IpAddr>().ok())
            {
                f(ip);
            }
            i = run_end;
            continue;
        }
        let longest = run_end.min(i + MAX_IP_TEXT);
        if !may_be_ip(s.get(i..longest).unwrap_or_default()) {
            i += 1;
            continue;
        }
        let found = (i + 1..=longest).rev().find_map(|end| {
            let text = std::str::from_utf8(s.get(i..end)?).ok()?;
            text.parse::<IpAddr>().ok().map(|ip| (ip, end))
        });
        match found {
            Some((ip, end)) => {
                f(ip);
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The first IP address in the first `MAX_IP_SCAN` bytes of `s` (no
/// wrapping check), as Zeek takes X-Originating-IP.
pub fn first_ip_addr(s: &[u8]) -> Option<IpAddr> {
    let s = s.get(..s.len().min(MAX_IP_SCAN)).unwrap_or_default();
    let mut first = None;
    for_each_ip_addr(s, false, |ip| {
        if first.is_none() {
            first = Some(ip);
        }
    });
    first
}

/// The address Zeek's `find_address_in_smtp_header` picks from a Received
/// header: the second wrapped address if there are two or more, else the
/// first.
pub fn received_addr(value: &[u8]) -> Option<IpAddr> {
    let mut first = None;
    let mut second = None;
    for_each_ip_addr(value, true, |ip| {
        if first.is_none() {
            first = Some(ip);
        } else if second.is_none() {
            second = Some(ip);
        }
    });
    second.or(first)
}

/// A complete (unfolded) header line split into name and value, as Zeek's
/// `MIME_Header` does: the name is the first run of printable characters
/// other than `:`, then `:`; the value has surrounding whitespace removed.
/// `None` for a line that is not a header.
pub fn parse_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let is_name_char = |b: u8| (33..=126).contains(&b) && b != b':';
    let start = line.iter().position(|&b| !is_blank(b))?;
    let rest = line.get(start..)?;
    let name_len = rest
        .iter()
        .position(|&b| !is_name_char(b))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let colon = after.iter().position(|&b| !is_blank(b))?;
    if after.get(colon) != Some(&b':') {
        return None;
    }
    Some((name, trim(after.get(colon + 1..).unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_email_addr(s.as_bytes(), |a| v.push(a.into_owned()));
        v
    }

    fn ips(s: &str, wrap: bool) -> Vec<String> {
        let mut v = Vec::new();
        for_each_ip_addr(s.as_bytes(), wrap, |a| v.push(a.to_string()));
        v
    }

    fn mime_addrs(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_mime_address(s, |a| v.push(a.to_string()));
        v
    }

    #[test]
    fn command_word_and_argument() {
        let c = parse_command(b"MAIL FROM:<a@b> SIZE=10");
        assert_eq!(c.verb, Verb::Mail);
        assert_eq!(c.arg, b"FROM:<a@b> SIZE=10");
        let c = parse_command(b"ehlo   host.example");
        assert_eq!(c.verb, Verb::Ehlo);
        assert_eq!(c.arg, b"host.example");
        let c = parse_command(b"QUIT");
        assert_eq!((c.verb, c.arg), (Verb::Quit, &b""[..]));
        assert_eq!(parse_command(b"Hello, Alice").verb, Verb::Unknown);
        assert_eq!(parse_command(b"").verb, Verb::Unknown);
        assert_eq!(parse_command(b"starttls").verb, Verb::Starttls);
        for w in [
            "RSET", "NOOP", "AUTH", "VRFY", "EXPN", "HELP", "BDAT", "DATA", "RCPT", "HELO",
        ] {
            assert_ne!(Verb::from_word(w.as_bytes()), Verb::Unknown, "{w}");
        }
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply(b"250-PIPELINING"),
            Some(ReplyLine {
                code: 250,
                more: true,
                text: b"PIPELINING"
            })
        );
        assert_eq!(
            parse_reply(b"250 2.0.0 Ok"),
            Some(ReplyLine {
                code: 250,
                more: false,
                text: b"2.0.0 Ok"
            })
        );
        assert_eq!(
            parse_reply(b"221"),
            Some(ReplyLine {
                code: 221,
                more: false,
                text: b""
            })
        );
        assert_eq!(parse_reply(b"099 x"), None);
        assert_eq!(parse_reply(b"600 x"), None);
        assert_eq!(parse_reply(b"25"), None);
        assert_eq!(parse_reply(b"abc def"), None);
    }

    #[test]
    fn bdat_arguments_as_zeek() {
        assert_eq!(
            parse_bdat_arg(b"86 LAST"),
            Ok(BdatArg {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"86 last"),
            Ok(BdatArg {
                size: 86,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"86"),
            Ok(BdatArg {
                size: 86,
                last: false
            })
        );
        assert_eq!(
            parse_bdat_arg(b"0 LAST"),
            Ok(BdatArg {
                size: 0,
                last: true
            })
        );
        assert_eq!(parse_bdat_arg(b" 86 LAST"), Err(BdatError::NoChunkSize));
        assert_eq!(
            parse_bdat_arg(b"scramble LAST"),
            Err(BdatError::NoChunkSize)
        );
        assert_eq!(parse_bdat_arg(b"86LAST"), Err(BdatError::InvalidChunkSize));
        assert_eq!(parse_bdat_arg(b"86 SCRAMBLE"), Err(BdatError::Junk));
        assert_eq!(parse_bdat_arg(b"86 LASTSCRAMBLE"), Err(BdatError::Junk));
        assert_eq!(parse_bdat_arg(b"-42 LAST"), Err(BdatError::NoChunkSize));
        assert_eq!(parse_bdat_arg(b""), Err(BdatError::BadLength));
        assert_eq!(
            parse_bdat_arg(b"18446744073709551615 LAST"),
            Ok(BdatArg {
                size: u64::MAX,
                last: true
            })
        );
        assert_eq!(
            parse_bdat_arg(b"184467440737095516150"),
            Err(BdatError::TooLarge)
        );
        assert_eq!(
            parse_bdat_arg(b"184467440737095516150 LAST"),
            Err(BdatError::BadLength)
        );
    }

    #[test]
    fn email_extraction_like_zeek() {
        assert_eq!(emails("FROM:<bob@example.org>"), ["bob@example.org"]);
        assert_eq!(
            emails("FROM: <gurpartap@patriots.in>"),
            ["gurpartap@patriots.in"]
        );
        assert_eq!(
            emails("From:<linux-kernel-owner@vger.kernel.org> BODY=8BITMIME SIZE=4333"),
            ["linux-kernel-owner@vger.kernel.org"]
        );
        assert!(emails("FROM:<>").is_empty());
        assert_eq!(emails("TO:<a@b>,<c@d>"), ["a@b", "c@d"]);
        assert_eq!(emails("a@b c@d"), ["a@b", "c@d"]);
        let orcpt = emails("TO:<a@b> NOTIFY=NEVER ORCPT=rfc822;a@b");
        assert_eq!(orcpt.len(), 2);
        assert_eq!(strip_orcpt(Cow::Borrowed(&orcpt[1])), "a@b");
        assert_eq!(first_email_addr(b"no address here"), None);
    }

    #[test]
    fn mime_address_split() {
        assert_eq!(
            mime_addrs("felica4uu@hotmail.com, davis_mark1@outlook.com"),
            ["felica4uu@hotmail.com", "davis_mark1@outlook.com"]
        );
        assert_eq!(
            mime_addrs("\"Doe, John\" <j@x>,   <k@y> ,"),
            ["\"Doe, John\" <j@x>", "<k@y>"]
        );
        assert_eq!(mime_addrs("<a,b@c>, d@e"), ["<a,b@c>", "d@e"]);
    }

    #[test]
    fn ip_extraction_like_zeek() {
        let h = "from lindbergh.monkeyblade.net ([23.128.96.19]:56766 \"EHLO";
        assert_eq!(ips(h, true), ["23.128.96.19"]);
        // Preceded by "IPv6:", not wrapped.
        assert!(ips("(x [IPv6:2607:f8b0:4864:20::42f])", true).is_empty());
        assert_eq!(
            ips("from x (host [10.0.0.1]) by y ([192.0.2.7])", true),
            ["10.0.0.1", "192.0.2.7"]
        );
        assert_eq!(ips("04:40:16 -0500", true), Vec::<String>::new());
        assert_eq!(ips("[2001:db8::1]", true), ["2001:db8::1"]);
        assert_eq!(ips("192.0.2.1", true), ["192.0.2.1"]);
        assert_eq!(ips("x192.0.2.1y", true), Vec::<String>::new());
        assert_eq!(ips("x192.0.2.1y", false), ["192.0.2.1"]);
        // Zeek's pattern finds 56.1.1.1 inside 256.1.1.1.
        assert_eq!(ips("256.1.1.1", false), ["56.1.1.1"]);
        assert_eq!(
            first_ip_addr(b"[198.51.100.4]").map(|i| i.to_string()),
            Some("198.51.100.4".into())
        );
        assert_eq!(
            received_addr(b"from a (b [192.0.2.1]) by c ([198.51.100.2])").map(|i| i.to_string()),
            Some("198.51.100.2".into())
        );
        assert_eq!(
            received_addr(b"from localhost.localdomain ([170.253.51.130]) by smtp")
                .map(|i| i.to_string()),
            Some("170.253.51.130".into())
        );
        assert_eq!(received_addr(b"by vger.kernel.org via listexpand"), None);
    }

    #[test]
    fn scans_stay_linear_on_hostile_input() {
        // Would take seconds with a quadratic scan.
        let long = "a".repeat(200_000);
        assert!(emails(&long).is_empty());
        let hexes = "12345:".repeat(40_000);
        assert!(ips(&hexes, true).is_empty());
        assert_eq!(first_ip_addr(hexes.as_bytes()), None);
        let padded = format!("{} [192.0.2.1]", "ab".repeat(50_000));
        assert_eq!(ips(&padded, true), ["192.0.2.1"]);
    }

    #[test]
    fn header_lines() {
        assert_eq!(
            parse_header(b"Subject: Hi there  "),
            Some((&b"Subject"[..], &b"Hi there"[..]))
        );
        assert_eq!(
            parse_header(b"From:   A <a@b>"),
            Some((&b"From"[..], &b"A <a@b>"[..]))
        );
        assert_eq!(parse_header(b"X-Empty:"), Some((&b"X-Empty"[..], &b""[..])));
        assert_eq!(parse_header(b"Name : v"), Some((&b"Name"[..], &b"v"[..])));
        assert_eq!(parse_header(b"not a header"), None);
        assert_eq!(parse_header(b": nothing"), None);
    }

    #[test]
    fn trim_handles_all_blank() {
        assert_eq!(trim(b"  \t "), b"");
        assert_eq!(trim(b" a b "), b"a b");
    }
}
