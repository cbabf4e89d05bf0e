//! Log line formats: detect which envelope (timestamp, host, tag) a log's lines carry, and whether a
//! space-delimited filter pattern can fit it.
//!
//! Pure: no IO. The detector, `sshwatch init`, `sshwatch replay` and the repeat expansion all read an
//! envelope through [`parse_envelope`], so they agree on where the message starts.
//!
//! Nothing here changes what a pattern matches: it only tells what the lines look like.

use std::fmt;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone as _};

use crate::pattern::FilterPattern;

/// One envelope style, as written by a syslog daemon or rendered by `journalctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineFormat {
    /// RFC 3164 as rsyslog's `RSYSLOG_TraditionalFileFormat` writes it on days 1–9: `Jul  7 10:51:24 host sshd[1]: …`.
    TraditionalPadded,
    /// RFC 3164 on days 10–31: `Dec 10 06:55:48 host sshd[1]: …` (also `journalctl -o short` on those days).
    Traditional,
    /// rsyslog's default `RSYSLOG_FileFormat`: `2026-11-26T15:52:59.159810+00:00 host sshd[1]: …`.
    Rfc3339,
    /// RFC 5424: `<38>1 2022-01-19T14:23:55+00:00 host sshd 44255 - - …`.
    Rfc5424,
    /// `journalctl -o short` with a zero-padded day: `Aug 03 21:39:20 host sshd[1]: …`.
    JournalShort,
    /// `journalctl -o short-precise`: `Nov 26 16:03:11.111766 host sshd[1]: …`.
    JournalShortPrecise,
    /// `journalctl -o short-iso`: `2026-11-26T16:03:11+0000 host sshd[1]: …`.
    JournalShortIso,
    /// `journalctl -o short-iso-precise`: `2026-11-26T16:03:11.111766+0000 host sshd[1]: …`.
    JournalShortIsoPrecise,
    /// `journalctl -o short-full`: `Thu 2026-11-26 16:03:11 UTC host sshd[1]: …`.
    JournalShortFull,
    /// `journalctl -o short-unix`: `1795708991.111766 host sshd[1]: …`.
    JournalShortUnix,
    /// `journalctl -o json`: one JSON object per line.
    JournalJson,
    /// No recognised envelope: `journalctl -o cat`, or a format sshwatch does not know.
    MessageOnly,
}

/// Every format, in display order.
pub const ALL_FORMATS: [LineFormat; 12] = [
    LineFormat::TraditionalPadded,
    LineFormat::Traditional,
    LineFormat::Rfc3339,
    LineFormat::Rfc5424,
    LineFormat::JournalShort,
    LineFormat::JournalShortPrecise,
    LineFormat::JournalShortIso,
    LineFormat::JournalShortIsoPrecise,
    LineFormat::JournalShortFull,
    LineFormat::JournalShortUnix,
    LineFormat::JournalJson,
    LineFormat::MessageOnly,
];

impl LineFormat {
    /// A short human name, used in warnings and in `sshwatch init`'s comments.
    pub fn describe(self) -> &'static str {
        match self {
            LineFormat::TraditionalPadded => "traditional syslog (RFC 3164, space-padded day)",
            LineFormat::Traditional => "traditional syslog (RFC 3164)",
            LineFormat::Rfc3339 => "RFC 3339 timestamps (rsyslog high precision)",
            LineFormat::Rfc5424 => "RFC 5424 syslog",
            LineFormat::JournalShort => "journalctl -o short",
            LineFormat::JournalShortPrecise => "journalctl -o short-precise",
            LineFormat::JournalShortIso => "journalctl -o short-iso",
            LineFormat::JournalShortIsoPrecise => "journalctl -o short-iso-precise",
            LineFormat::JournalShortFull => "journalctl -o short-full",
            LineFormat::JournalShortUnix => "journalctl -o short-unix",
            LineFormat::JournalJson => "journalctl -o json",
            LineFormat::MessageOnly => "message only (journalctl -o cat, or an unknown envelope)",
        }
    }

    /// How many space-delimited fields come before the message's first word (timestamp, host and
    /// tag), or `None` for JSON lines, which a space-delimited pattern does not address by position.
    pub fn envelope_fields(self) -> Option<usize> {
        match self {
            LineFormat::TraditionalPadded
            | LineFormat::Traditional
            | LineFormat::JournalShort
            | LineFormat::JournalShortPrecise => Some(5),
            LineFormat::Rfc3339
            | LineFormat::JournalShortIso
            | LineFormat::JournalShortIsoPrecise
            | LineFormat::JournalShortUnix => Some(3),
            LineFormat::JournalShortFull => Some(6),
            // `<pri>1 timestamp host app procid msgid structured-data`.
            LineFormat::Rfc5424 => Some(7),
            LineFormat::JournalJson => None,
            LineFormat::MessageOnly => Some(0),
        }
    }

    /// The two RFC 3164 variants are one format for every purpose but counting.
    pub fn family(self) -> LineFormat {
        match self {
            LineFormat::TraditionalPadded => LineFormat::Traditional,
            other => other,
        }
    }
}

impl fmt::Display for LineFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A line's timestamp, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// RFC 3164 and `journalctl -o short*`: local time without a year.
    NoYear {
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        nanos: u32,
    },
    /// A timestamp with date and zone.
    Absolute(chrono::DateTime<FixedOffset>),
}

/// A line split into its envelope and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub format: LineFormat,
    /// The timestamp text (for `short-full`, with weekday and zone).
    pub timestamp: &'a str,
    pub host: Option<&'a str>,
    /// The syslog tag with its colon, e.g. `sshd[123]:`, when there is one.
    pub tag: Option<&'a str>,
    /// Byte offset in the line right after the tag (or where the message starts when there is no
    /// tag). rsyslog's message text begins with the blank that follows the tag's colon.
    pub message_start: usize,
}

impl<'a> Envelope<'a> {
    /// The message without the blank after the tag.
    pub fn message(&self, line: &'a str) -> &'a str {
        let rest = &line[self.message_start..];
        rest.strip_prefix(' ').unwrap_or(rest)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// 1-based month of a three-letter English month name.
pub fn month_number(name: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')))
}

/// `HH:MM:SS` at the start of `s`.
fn clock(s: &[u8]) -> Option<(u32, u32, u32)> {
    if s.len() < 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    (h < 24 && m < 60 && sec <= 60).then_some((h, m, sec))
}

/// A `.123456` fraction at the start of `s`: (nanoseconds, bytes used).
fn fraction(s: &[u8]) -> (u32, usize) {
    if s.first() != Some(&b'.') {
        return (0, 0);
    }
    let n = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return (0, 0);
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10
            + s.get(1 + i)
                .filter(|_| i < n)
                .map_or(0, |b| u32::from(b - b'0'));
    }
    (nanos, 1 + n)
}

/// `YYYY-MM-DD` at the start of `s`.
fn date(s: &[u8]) -> Option<NaiveDate> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(&s[0..4])? as i32,
        digits(&s[5..7])?,
        digits(&s[8..10])?,
    )
}

/// `Z`, `+HH:MM` or `+HHMM` at the start of `s`: (offset, colon used, bytes used).
fn zone(s: &[u8]) -> Option<(FixedOffset, bool, usize)> {
    match s.first()? {
        b'Z' | b'z' => Some((FixedOffset::east_opt(0)?, true, 1)),
        sign @ (b'+' | b'-') => {
            let (h, m, colon, used) = if s.len() >= 6 && s[3] == b':' {
                (digits(&s[1..3])?, digits(&s[4..6])?, true, 6)
            } else if s.len() >= 5 {
                (digits(&s[1..3])?, digits(&s[3..5])?, false, 5)
            } else {
                return None;
            };
            let secs = (h * 3600 + m * 60) as i32;
            let secs = if *sign == b'-' { -secs } else { secs };
            Some((FixedOffset::east_opt(secs)?, colon, used))
        }
        _ => None,
    }
}

/// The end of the blank-free token starting at `at`.
fn token_end(b: &[u8], at: usize) -> usize {
    b[at..]
        .iter()
        .position(|&c| c == b' ')
        .map_or(b.len(), |i| at + i)
}

/// After the timestamp (which ends at `at`, on a blank): host, then tag when the next token ends with `:`.
fn host_and_tag<'a>(
    line: &'a str,
    format: LineFormat,
    ts_end: usize,
    with_host: bool,
) -> Option<Envelope<'a>> {
    let b = line.as_bytes();
    if b.get(ts_end) != Some(&b' ') {
        return None;
    }
    let timestamp = &line[..ts_end];
    let mut at = ts_end + 1;
    let host = if with_host {
        let end = token_end(b, at);
        if end == at {
            return None;
        }
        let h = &line[at..end];
        at = end;
        Some(h)
    } else {
        None
    };
    // The tag: the next token, when it ends with a colon.
    let (tag, message_start) = if b.get(at) == Some(&b' ') {
        let start = at + 1;
        let end = token_end(b, start);
        if end > start && b[end - 1] == b':' {
            (Some(&line[start..end]), end)
        } else {
            (None, at)
        }
    } else {
        (None, at)
    };
    Some(Envelope {
        format,
        timestamp,
        host,
        tag,
        message_start,
    })
}

/// Splits `line` into envelope and message when it carries a known text envelope
/// (`None` for JSON lines and for lines without one).
pub fn parse_envelope(line: &str) -> Option<Envelope<'_>> {
    let b = line.as_bytes();
    let first = *b.first()?;
    if first.is_ascii_uppercase() {
        // `Mmm dd HH:MM:SS`, `Mmm  d HH:MM:SS`, `Mmm dd HH:MM:SS.ffffff`, or `Www YYYY-MM-DD HH:MM:SS ZZZ`.
        if b.len() < 16 {
            return None;
        }
        let name = line.get(0..3)?;
        if month_number(name).is_some() && b[3] == b' ' {
            let (padded, zero) = match (b[4], b[5]) {
                (b' ', d) if d.is_ascii_digit() && d != b'0' => (true, false),
                (b'0', d) if d.is_ascii_digit() && d != b'0' => (false, true),
                (a, d) if a.is_ascii_digit() && d.is_ascii_digit() => (false, false),
                _ => return None,
            };
            let _ = padded;
            if b[6] != b' ' {
                return None;
            }
            clock(&b[7..])?;
            let (_, frac) = fraction(&b[15..]);
            let format = match (padded, zero, frac > 0) {
                (_, _, true) => LineFormat::JournalShortPrecise,
                (true, _, false) => LineFormat::TraditionalPadded,
                (_, true, false) => LineFormat::JournalShort,
                _ => LineFormat::Traditional,
            };
            return host_and_tag(line, format, 15 + frac, true);
        }
        if WEEKDAYS.contains(&name) && b[3] == b' ' {
            date(&b[4..])?;
            if b.get(14) != Some(&b' ') {
                return None;
            }
            clock(b.get(15..)?)?;
            // The zone name after the clock: `UTC`, `CET`, `+03`.
            if b.get(23) != Some(&b' ') {
                return None;
            }
            let end = token_end(b, 24);
            if end == 24 {
                return None;
            }
            return host_and_tag(line, LineFormat::JournalShortFull, end, true);
        }
        return None;
    }
    if first.is_ascii_digit() {
        if let Some(_d) = date(b) {
            if b.get(10) != Some(&b'T') {
                return None;
            }
            clock(b.get(11..)?)?;
            let (_, frac) = fraction(&b[19..]);
            let (_, colon, used) = zone(&b[19 + frac..])?;
            let format = match (colon, frac > 0) {
                (true, _) => LineFormat::Rfc3339,
                (false, false) => LineFormat::JournalShortIso,
                (false, true) => LineFormat::JournalShortIsoPrecise,
            };
            return host_and_tag(line, format, 19 + frac + used, true);
        }
        // `1795708991.111766`
        let secs = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if (9..=12).contains(&secs) {
            let (_, frac) = fraction(&b[secs..]);
            if frac > 0 {
                return host_and_tag(line, LineFormat::JournalShortUnix, secs + frac, true);
            }
        }
        return None;
    }
    if first == b'<' {
        // `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`
        let close = b.iter().take(5).position(|&c| c == b'>')?;
        digits(&b[1..close])?;
        if b.get(close + 1..close + 3) != Some(b"1 ") {
            return None;
        }
        let mut at = close + 3;
        let ts_start = at;
        let mut ends = [0usize; 5];
        for end in &mut ends {
            let e = token_end(b, at);
            if e == at {
                return None;
            }
            *end = e;
            at = e + 1;
            if at > b.len() {
                return None;
            }
        }
        // Structured data: `-` or one or more `[...]` elements.
        let sd_end = if b.get(at) == Some(&b'-') {
            at + 1
        } else if b.get(at) == Some(&b'[') {
            let mut i = at;
            while b.get(i) == Some(&b'[') {
                i += b[i..].iter().position(|&c| c == b']')? + 1;
            }
            i
        } else {
            return None;
        };
        let ts = &line[ts_start..ends[0]];
        parse_stamp_text(ts, LineFormat::Rfc3339)?;
        return Some(Envelope {
            format: LineFormat::Rfc5424,
            timestamp: ts,
            host: Some(&line[ends[0] + 1..ends[1]]),
            tag: Some(&line[ends[1] + 1..ends[2]]),
            message_start: sd_end,
        });
    }
    None
}

/// The format of one line.
pub fn detect_line(line: &str) -> LineFormat {
    if let Some(env) = parse_envelope(line) {
        return env.format;
    }
    let t = line.trim_start();
    if t.starts_with('{') && t.trim_end().ends_with('}') && t.contains("\"MESSAGE\"") {
        return LineFormat::JournalJson;
    }
    LineFormat::MessageOnly
}

/// Per-format line counts of a sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatReport {
    counts: [usize; ALL_FORMATS.len()],
    total: usize,
}

impl FormatReport {
    /// Counts the formats of `lines` (blank lines are skipped).
    pub fn of_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> FormatReport {
        let mut report = FormatReport::default();
        for line in lines {
            report.add(line);
        }
        report
    }

    /// Counts one more line.
    pub fn add(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.add_format(detect_line(line));
    }

    /// Counts one more line of a known format.
    pub fn add_format(&mut self, format: LineFormat) {
        let i = ALL_FORMATS
            .iter()
            .position(|f| *f == format)
            .unwrap_or(ALL_FORMATS.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// Lines counted.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Lines of `format` (exactly that variant).
    pub fn count(&self, format: LineFormat) -> usize {
        ALL_FORMATS
            .iter()
            .position(|f| *f == format)
            .map_or(0, |i| self.counts[i])
    }

    /// `(format, lines)` for every format seen, most lines first.
    pub fn counts(&self) -> Vec<(LineFormat, usize)> {
        let mut v: Vec<(LineFormat, usize)> = ALL_FORMATS
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(f, n)| (*f, n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The format most lines have, the two RFC 3164 variants counted together (reported as
    /// [`LineFormat::Traditional`]); `None` for an empty sample.
    pub fn dominant(&self) -> Option<LineFormat> {
        let mut best: Option<(LineFormat, usize)> = None;
        for f in ALL_FORMATS {
            if f == LineFormat::TraditionalPadded {
                continue;
            }
            let mut n = self.count(f);
            if f == LineFormat::Traditional {
                n += self.count(LineFormat::TraditionalPadded);
            }
            if n > 0 && best.is_none_or(|(_, m)| n > m) {
                best = Some((f, n));
            }
        }
        best.map(|(f, _)| f)
    }

    /// `"RFC 3339 timestamps (…): 120 of 128 lines, message only (…): 8"`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(f, n)| format!("{f}: {n}"))
            .collect();
        format!("{} lines: {}", self.total, parts.join(", "))
    }
}

/// Whether a filter pattern can fit a line format, judged from the pattern's shape alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Not a positional pattern (terms, JSON), or it has no condition that depends on positions.
    NotPositional,
    /// The pattern's first condition sits right after the format's envelope.
    Fits,
    /// The pattern expects `expected` envelope fields before its first condition; the format has `actual`.
    Misfit { expected: usize, actual: usize },
    /// A positional pattern against JSON lines.
    NotText,
}

/// How many envelope fields a space-delimited pattern assumes: the index of its first entry with a
/// condition (`[Mon, day, timestamp, ip, id, status = Invalid, ...]` → 5). `None` when the pattern is
/// not space-delimited, has no condition, or an ellipsis comes before the first condition.
pub fn expected_envelope(pattern: &FilterPattern) -> Option<usize> {
    pattern.delimited()?.first_condition()
}

/// Whether `pattern` can fit lines of `format`, from the shapes alone. [`crate::detector`] adds the
/// evidence of real lines.
pub fn pattern_fit(pattern: &FilterPattern, format: LineFormat) -> Fit {
    let Some(expected) = expected_envelope(pattern) else {
        return Fit::NotPositional;
    };
    match format.envelope_fields() {
        None => Fit::NotText,
        Some(actual) if actual == expected => Fit::Fits,
        Some(actual) => Fit::Misfit { expected, actual },
    }
}

/// Parses a timestamp text of a known format.
pub fn parse_stamp_text(ts: &str, format: LineFormat) -> Option<Stamp> {
    let b = ts.as_bytes();
    match format {
        LineFormat::TraditionalPadded
        | LineFormat::Traditional
        | LineFormat::JournalShort
        | LineFormat::JournalShortPrecise => {
            let month = month_number(ts.get(0..3)?)?;
            let day = digits(b.get(4..6)?.trim_ascii())?;
            let (hour, minute, second) = clock(b.get(7..)?)?;
            let (nanos, _) = fraction(b.get(15..).unwrap_or_default());
            (1..=31).contains(&day).then_some(Stamp::NoYear {
                month,
                day,
                hour,
                minute,
                second,
                nanos,
            })
        }
        LineFormat::Rfc3339
        | LineFormat::Rfc5424
        | LineFormat::JournalShortIso
        | LineFormat::JournalShortIsoPrecise => {
            let d = date(b)?;
            let (h, m, s) = clock(b.get(11..)?)?;
            let (nanos, frac) = fraction(&b[19..]);
            let (offset, _, used) = zone(&b[19 + frac..])?;
            if 19 + frac + used != b.len() {
                return None;
            }
            let naive = NaiveDateTime::new(
                d,
                chrono::NaiveTime::from_hms_nano_opt(h, m, s.min(59), nanos)?,
            );
            offset
                .from_local_datetime(&naive)
                .single()
                .map(Stamp::Absolute)
        }
        LineFormat::JournalShortUnix => {
            let (secs, frac) = ts.split_once('.')?;
            let secs: i64 = secs.parse().ok()?;
            let (nanos, _) = fraction(&b[secs.to_string().len()..]);
            let _ = frac;
            let utc = chrono::DateTime::from_timestamp(secs, nanos)?;
            Some(Stamp::Absolute(utc.fixed_offset()))
        }
        LineFormat::JournalShortFull | LineFormat::JournalJson | LineFormat::MessageOnly => None,
    }
}

/// The timestamp of a line with a text envelope.
pub fn parse_stamp(env: &Envelope<'_>) -> Option<Stamp> {
    parse_stamp_text(env.timestamp, env.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, format: LineFormat, tag: Option<&str>, message: &str) {
        assert_eq!(detect_line(line), format, "{line}");
        if let Some(env) = parse_envelope(line) {
            assert_eq!(env.tag, tag, "{line}");
            assert_eq!(env.message(line), message, "{line}");
        }
    }

    #[test]
    fn the_envelope_a_pattern_assumes_comes_from_its_parsed_entries() {
        let envelope = |p: &str| expected_envelope(&FilterPattern::parse(p).expect(p));
        assert_eq!(
            envelope("[Mon, day, timestamp, ip, id, status = Invalid, ...]"),
            Some(5)
        );
        assert_eq!(envelope(r#"[a, b = "x, y = z", c]"#), Some(1));
        assert_eq!(envelope("[a, b = %x,y%, c]"), Some(1));
        assert_eq!(envelope("[..., status = Invalid]"), None);
        assert_eq!(envelope("[a, b]"), None);
        assert_eq!(envelope("Invalid user"), None);
    }

    #[test]
    fn detects_each_format() {
        let m = "Invalid user admin from 127.0.0.1 port 39724";
        check(
            &format!("Jul  7 10:51:24 eva sshd[19537]: {m}"),
            LineFormat::TraditionalPadded,
            Some("sshd[19537]:"),
            m,
        );
        check(
            &format!("Dec 10 06:55:48 LabSZ sshd[24200]: {m}"),
            LineFormat::Traditional,
            Some("sshd[24200]:"),
            m,
        );
        check(
            &format!("Aug 03 21:39:20 hostname sshd[69420]: {m}"),
            LineFormat::JournalShort,
            Some("sshd[69420]:"),
            m,
        );
        check(
            &format!("Nov 26 16:03:12.300726 vm sshd-session[8429]: {m}"),
            LineFormat::JournalShortPrecise,
            Some("sshd-session[8429]:"),
            m,
        );
        check(
            &format!("2026-11-26T15:52:59.159810+00:00 vm sshd[21932]: {m}"),
            LineFormat::Rfc3339,
            Some("sshd[21932]:"),
            m,
        );
        check(
            &format!("2026-11-26T15:52:59Z vm sshd[21932]: {m}"),
            LineFormat::Rfc3339,
            Some("sshd[21932]:"),
            m,
        );
        check(
            &format!("2026-11-26T16:03:12+0000 vm sshd-session[8429]: {m}"),
            LineFormat::JournalShortIso,
            Some("sshd-session[8429]:"),
            m,
        );
        check(
            &format!("2026-11-26T16:03:12.300726+0000 vm sshd-session[8429]: {m}"),
            LineFormat::JournalShortIsoPrecise,
            Some("sshd-session[8429]:"),
            m,
        );
        check(
            &format!("Thu 2026-11-26 16:03:12 UTC vm sshd-session[8429]: {m}"),
            LineFormat::JournalShortFull,
            Some("sshd-session[8429]:"),
            m,
        );
        check(
            &format!("1795708992.300726 vm sshd-session[8429]: {m}"),
            LineFormat::JournalShortUnix,
            Some("sshd-session[8429]:"),
            m,
        );
        check(
            &format!(
                "<38>1 2022-01-19T14:23:55+00:00 OPNsense.localdomain sshd 44255 - [meta sequenceId=\"1\"] {m}"
            ),
            LineFormat::Rfc5424,
            Some("sshd"),
            m,
        );
        check(
            &format!("<38>1 2019-07-08T17:40:16.954167-04:00 h sshd 57915 - - {m}"),
            LineFormat::Rfc5424,
            Some("sshd"),
            m,
        );
        check(
            r#"{"MESSAGE":"Invalid user admin","_COMM":"sshd"}"#,
            LineFormat::JournalJson,
            None,
            "",
        );
        check(m, LineFormat::MessageOnly, None, "");
        check("", LineFormat::MessageOnly, None, "");
        check("Foo 10 06:55:48 h t: x", LineFormat::MessageOnly, None, "");
        check("Dec 32 06:55:48", LineFormat::MessageOnly, None, "");
    }

    #[test]
    fn never_panics_on_prefixes() {
        let lines = [
            "2026-11-26T15:52:59.159810+00:00 vm sshd[21932]: x",
            "<38>1 2022-01-19T14:23:55+00:00 OPNsense sshd 44255 - [a][b] x",
            "Thu 2026-11-26 16:03:12 UTC vm sshd-session[8429]: x",
            "Jul  7 10:51:24.123 eva sshd[19537]: x",
            "1795708992.300726 vm sshd-session[8429]: x",
        ];
        for line in lines {
            for end in 0..=line.len() {
                if let Some(prefix) = line.get(..end) {
                    let _ = detect_line(prefix);
                    if let Some(env) = parse_envelope(prefix) {
                        let _ = parse_stamp(&env);
                        let _ = env.message(prefix);
                    }
                }
            }
        }
    }

    #[test]
    fn parses_stamps() {
        let env = parse_envelope("Jul  7 10:51:24 eva sshd[1]: x").expect("envelope");
        assert_eq!(
            parse_stamp(&env),
            Some(Stamp::NoYear {
                month: 7,
                day: 7,
                hour: 10,
                minute: 51,
                second: 24,
                nanos: 0
            })
        );
        let env =
            parse_envelope("2026-11-26T15:52:59.159810+01:00 vm sshd[1]: x").expect("envelope");
        let Some(Stamp::Absolute(t)) = parse_stamp(&env) else {
            panic!("absolute")
        };
        assert_eq!(t.timestamp(), 1_795_704_779);
        assert_eq!(t.timestamp_subsec_micros(), 159_810);
        let env = parse_envelope("1795708992.300726 vm sshd[1]: x").expect("envelope");
        let Some(Stamp::Absolute(t)) = parse_stamp(&env) else {
            panic!("absolute")
        };
        assert_eq!(t.timestamp(), 1_795_708_992);
    }

    #[test]
    fn dominant_merges_traditional_days() {
        let r = FormatReport::of_lines([
            "Jul  7 10:51:24 eva sshd[1]: a",
            "Jul  8 10:51:24 eva sshd[1]: a",
            "Jul 10 10:51:24 eva sshd[1]: a",
            "2026-11-26T15:52:59Z vm sshd[1]: a",
            "2026-11-26T15:52:59Z vm sshd[1]: a",
        ]);
        assert_eq!(r.total(), 5);
        assert_eq!(r.count(LineFormat::TraditionalPadded), 2);
        assert_eq!(r.dominant(), Some(LineFormat::Traditional));
    }
}
