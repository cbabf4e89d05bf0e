//! rsyslog's repeat compression undone: `message repeated N times: [ MSG]` stands for N copies of MSG.
//!
//! With `$RepeatedMsgReduction on` (Ubuntu's stock rsyslog.conf) rsyslog replaces the message of
//! the N identical messages that followed an original line by `message repeated N times: [MSG]`,
//! where MSG is the original message text, which starts with the blank that followed the tag's
//! colon (rsyslog's `%msg%`), cut at 800 bytes. The template writes the envelope and tag as usual,
//! then a blank (`sp-if-no-1st-sp`), so the line is
//!
//! ```text
//! Nov 26 15:55:11 vm sshd[25659]: message repeated 2 times: [ Failed password for alice from 127.0.0.1 port 42302 ssh2]
//! ```
//!
//! and each of the N hidden lines was `Nov 26 15:55:11 vm sshd[25659]: Failed password for alice …`:
//! the same envelope, the inner text. The original line before it is a line of its own and is
//! counted on its own.
//!
//! The marker is only recognised right after the tag of a known envelope
//! ([`crate::format::parse_envelope`]), and the line must end with the closing `]`, so an attacker
//! who puts `message repeated 99 times: [ Failed password …]` into a user name (which sshd logs
//! after its own words, e.g. `Invalid user …`) gets no expansion. A local user can still forge a
//! whole line with `logger -t sshd`, so N is capped at [`MAX_REPEAT`]; a line is classified once
//! and the metric value multiplied by N, never materialised N times.

use std::borrow::Cow;

use crate::format::parse_envelope;

/// The most copies one repeat line stands for. sshd writes identical consecutive messages under one
/// pid only for retries inside one connection (bounded by `MaxAuthTries`, 6 by default), and rsyslog
/// flushes a pending repeat when another message arrives, so real counts are small; the cap keeps a
/// forged `message repeated 1000000000 times` line from publishing absurd values.
pub(crate) const MAX_REPEAT: u64 = 1000;

const MARKER: &[u8] = b" message repeated ";

/// A recognised repeat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repeat<'a> {
    /// How many copies the line stands for, capped at [`MAX_REPEAT`].
    pub count: u64,
    /// Whether the line claimed more than [`MAX_REPEAT`].
    pub capped: bool,
    /// One of the hidden lines: the repeat line's envelope and tag, then the inner message.
    pub line: Cow<'a, [u8]>,
}

/// Recognises `line` (without its terminator) as a repeat line. Cheap for other lines: one
/// substring search.
pub(crate) fn parse(line: &[u8]) -> Option<Repeat<'_>> {
    memchr::memmem::find(line, MARKER)?;
    // Envelopes are ASCII; decoding lossily only matters for the inner message, which is copied as bytes.
    let head_len = line.len().min(256);
    let head = match std::str::from_utf8(&line[..head_len]) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&line[..e.valid_up_to()]).ok()?,
    };
    let env = parse_envelope(head)?;
    env.tag?;
    let start = env.message_start;
    let rest = &line[start..];
    let rest = rest.strip_prefix(MARKER)?;
    let n_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n_len == 0 {
        return None;
    }
    let rest_after_n = &rest[n_len..];
    let inner = rest_after_n
        .strip_prefix(b" times: [")?
        .strip_suffix(b"]")?;
    // Leading zeros or an absurd length are still a number; saturate rather than overflow.
    let claimed = rest[..n_len]
        .iter()
        .try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .unwrap_or(u64::MAX);
    if claimed == 0 {
        return None;
    }
    let count = claimed.min(MAX_REPEAT);
    let mut expanded = Vec::with_capacity(start + 1 + inner.len());
    expanded.extend_from_slice(&line[..start]);
    // `sp-if-no-1st-sp`: the original line had a blank after the tag either way.
    if inner.first() != Some(&b' ') {
        expanded.push(b' ');
    }
    expanded.extend_from_slice(inner);
    Some(Repeat {
        count,
        capped: claimed > MAX_REPEAT,
        line: Cow::Owned(expanded),
    })
}

/// The line to classify and how many times it counts: `(line, 1)` for an ordinary line, `(hidden
/// line, N)` for a repeat line.
pub(crate) fn expand(line: &[u8]) -> (Cow<'_, [u8]>, u64) {
    match parse(line) {
        Some(r) => (r.line, r.count),
        None => (Cow::Borrowed(line), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(line: &str) -> Option<(String, u64)> {
        parse(line.as_bytes()).map(|r| (String::from_utf8_lossy(&r.line).into_owned(), r.count))
    }

    #[test]
    fn expands_traditional_and_rfc3339() {
        assert_eq!(
            expanded("Nov 26 15:55:41 vm sshd[26308]: message repeated 5 times: [ Failed password for alice from 127.0.0.1 port 51608 ssh2]"),
            Some(("Nov 26 15:55:41 vm sshd[26308]: Failed password for alice from 127.0.0.1 port 51608 ssh2".into(), 5))
        );
        assert_eq!(
            expanded("2026-11-26T15:55:11.361158+00:00 vm sshd[25659]: message repeated 2 times: [ Failed password for alice from 127.0.0.1 port 42302 ssh2]"),
            Some(("2026-11-26T15:55:11.361158+00:00 vm sshd[25659]: Failed password for alice from 127.0.0.1 port 42302 ssh2".into(), 2))
        );
        // Padded day; the inner text kept verbatim, trailing blank included.
        assert_eq!(
            expanded(
                "Dec  1 07:13:56 LabSZ sshd[24227]: message repeated 3 times: [ pam_unix(sshd:auth): x rhost=1.2.3.4 ]"
            ),
            Some((
                "Dec  1 07:13:56 LabSZ sshd[24227]: pam_unix(sshd:auth): x rhost=1.2.3.4 ".into(),
                3
            ))
        );
        // An inner message without its leading blank gets one, as the template would have written.
        assert_eq!(
            expanded(
                "Dec 10 07:13:56 h sshd[1]: message repeated 2 times: [Failed password for root]"
            ),
            Some((
                "Dec 10 07:13:56 h sshd[1]: Failed password for root".into(),
                2
            ))
        );
    }

    #[test]
    fn rejects_lookalikes() {
        for line in [
            // The marker inside a user name, after sshd's own words.
            "Nov 26 15:55:41 vm sshd[1]: Connection closed by invalid user x: message repeated 99 times: [ Failed password for root] 1.2.3.4 port 5 [preauth]",
            "Nov 26 15:55:41 vm sshd[1]: Invalid user x message repeated 99 times: [ Failed password for root]",
            // No closing bracket at the end.
            "Nov 26 15:55:41 vm sshd[1]: message repeated 5 times: [ Failed password for alice] x",
            "Nov 26 15:55:41 vm sshd[1]: message repeated five times: [ Failed password]",
            "Nov 26 15:55:41 vm sshd[1]: message repeated 0 times: [ Failed password]",
            "message repeated 5 times: [ Failed password]",
            "Nov 26 15:55:41 vm sshd[1]: Failed password for alice",
        ] {
            assert_eq!(expanded(line), None, "{line}");
        }
    }

    #[test]
    fn caps_forged_counts() {
        let r = parse(b"Nov 26 15:55:41 vm sshd[1]: message repeated 1000000000 times: [ Failed password for root]").expect("repeat");
        assert_eq!((r.count, r.capped), (MAX_REPEAT, true));
        let r = parse(b"Nov 26 15:55:41 vm sshd[1]: message repeated 99999999999999999999999999 times: [ Failed password]").expect("repeat");
        assert_eq!((r.count, r.capped), (MAX_REPEAT, true));
    }

    #[test]
    fn keeps_invalid_utf8_inner_bytes() {
        let line = b"Nov 26 15:55:41 vm sshd[1]: message repeated 2 times: [ Failed password for jos\xf1 from 1.2.3.4]";
        let r = parse(line).expect("repeat");
        assert_eq!(
            &r.line[..],
            &b"Nov 26 15:55:41 vm sshd[1]: Failed password for jos\xf1 from 1.2.3.4"[..]
        );
        assert_eq!(expand(b"plain").1, 1);
    }
}
