//! CloudWatch's `%regex%` dialect: the alphabet check, and a translation
//! into `regex`-crate syntax that keeps Java's meaning.
//!
//! AWS compiles these with a JVM `Pattern` ("Failed to compile regular
//! expression."), so the translation follows Java's defaults (a choice, see `docs/filter-patterns.md`): `.`
//! excludes line terminators, `$` also matches before a final line
//! terminator, `\d \s \w` are ASCII. Every construct is re-emitted explicitly
//! (literals as `\x{…}`, classes spelled out), so nothing depends on the
//! `regex` crate's Unicode tables or on how its syntax differs from Java's.

use regex::Regex;

use crate::pattern::lex::Cursor;
use crate::pattern::{MAX_REGEXES, PatternError};

/// `.` in Java: anything but a line terminator.
const DOT: &str = r"[^\n\r\x{85}\x{2028}\x{2029}]";
/// `$` (and `\Z`) in Java: end of input, or before a line terminator that ends it.
const DOLLAR: &str = r"(?:(?:\r\n|[\n\r\x{85}\x{2028}\x{2029}])?\z)";
/// Nested character classes deeper than this are refused.
const MAX_CLASS_DEPTH: usize = 16;

/// Characters allowed between the `%` delimiters (R-RX-2). `:` follows the
/// revision of the page that lists it and a blank follows the documented
/// `%^starting|^initializing|^shutting down%` example.
fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '#'
                | '='
                | '@'
                | '/'
                | ';'
                | ','
                | '-'
                | ':'
                | ' '
                | '^'
                | '$'
                | '?'
                | '['
                | ']'
                | '{'
                | '}'
                | '|'
                | '\\'
                | '*'
                | '+'
                | '.'
        )
}

/// Lexes and compiles the `%…%` at the cursor (which is on the opening `%`),
/// counting it against the per-pattern cap (R-RX-7). Returns the compiled
/// regex and the term's raw text (with its `%`s).
pub(crate) fn regex_term<'a>(
    cur: &mut Cursor<'a>,
    count: &mut usize,
) -> Result<(Regex, &'a str), PatternError> {
    let start = cur.pos();
    cur.bump();
    let body_start = cur.pos();
    loop {
        match cur.peek() {
            None => {
                let term = cur
                    .since(start)
                    .trim_end_matches(crate::pattern::lex::is_pattern_blank);
                return Err(PatternError::invalid_term(term));
            }
            Some('%') => break,
            Some(c) => {
                cur.bump();
                if !is_allowed(c) {
                    return Err(PatternError::invalid_term(cur.since(start)));
                }
            }
        }
    }
    let body = cur.since(body_start);
    cur.bump();
    *count += 1;
    if *count > MAX_REGEXES {
        return Err(PatternError::too_many_regexes());
    }
    Ok((compile(body)?, cur.since(start)))
}

/// Compiles a regex body (without the `%`s) that passed the alphabet check.
pub(crate) fn compile(body: &str) -> Result<Regex, PatternError> {
    let translated = translate(body).ok_or_else(PatternError::regex_compile)?;
    regex::RegexBuilder::new(&translated)
        .size_limit(1 << 22)
        .dfa_size_limit(1 << 22)
        .build()
        .map_err(|_| PatternError::regex_compile())
}

/// Translates Java-dialect `body` into `regex`-crate syntax; `None` where Java
/// would refuse to compile it (or uses a feature outside the dialect).
fn translate(body: &str) -> Option<String> {
    let cs: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len() * 2);
    let mut i = 0;
    // Whether the last item can take a quantifier (an atom not yet quantified).
    let mut quantifiable = false;
    while let Some(&c) = cs.get(i) {
        match c {
            '|' => {
                out.push('|');
                quantifiable = false;
                i += 1;
            }
            '^' => {
                out.push('^');
                quantifiable = false;
                i += 1;
            }
            '$' => {
                out.push_str(DOLLAR);
                quantifiable = false;
                i += 1;
            }
            '.' => {
                out.push_str(DOT);
                quantifiable = true;
                i += 1;
            }
            '[' => {
                i = class(&cs, i, &mut out, 0)?;
                quantifiable = true;
            }
            '\\' => {
                let (next, atom) = escape(&cs, i, &mut out)?;
                i = next;
                quantifiable = atom;
            }
            '*' | '+' | '?' => {
                if !quantifiable {
                    return None;
                }
                out.push(c);
                i = quantifier_suffix(&cs, i + 1, &mut out)?;
                quantifiable = false;
            }
            '{' => {
                if !quantifiable {
                    return None;
                }
                i = counted(&cs, i, &mut out)?;
                i = quantifier_suffix(&cs, i, &mut out)?;
                quantifiable = false;
            }
            _ => {
                push_literal(&mut out, c);
                quantifiable = true;
                i += 1;
            }
        }
    }
    Some(out)
}

/// A lazy `?` after a quantifier is kept; a possessive `+` has no
/// equivalent in the `regex` crate, so it is refused.
fn quantifier_suffix(cs: &[char], i: usize, out: &mut String) -> Option<usize> {
    match cs.get(i) {
        Some('?') => {
            out.push('?');
            Some(i + 1)
        }
        Some('+') => None,
        _ => Some(i),
    }
}

/// `{n}`, `{n,}`, `{n,m}` and the documented `{,m}` (R-RX-3).
fn counted(cs: &[char], i: usize, out: &mut String) -> Option<usize> {
    let mut j = i + 1;
    let read = |j: &mut usize| -> Option<Option<u32>> {
        let from = *j;
        while cs.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        if *j == from {
            return Some(None);
        }
        let s: String = cs.get(from..*j)?.iter().collect();
        s.parse::<u32>().ok().map(Some)
    };
    let lo = read(&mut j)?;
    let hi = if cs.get(j) == Some(&',') {
        j += 1;
        Some(read(&mut j)?)
    } else {
        None
    };
    if cs.get(j) != Some(&'}') {
        return None;
    }
    let q = match (lo, hi) {
        (Some(n), None) => format!("{{{n}}}"),
        (Some(n), Some(None)) => format!("{{{n},}}"),
        (Some(n), Some(Some(m))) if n <= m => format!("{{{n},{m}}}"),
        (None, Some(Some(m))) => format!("{{0,{m}}}"),
        _ => return None,
    };
    out.push_str(&q);
    Some(j + 1)
}

fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || c == '_' {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
    }
}

/// What an escape stands for.
enum Esc {
    Char(char),
    /// A class, as the inside of a `[...]` (for use inside another class too).
    Set(&'static str),
    /// A negated class, as the inside of a `[^...]`.
    NotSet(&'static str),
    /// A zero-width assertion (outside classes only).
    Assert(&'static str),
}

const DIGIT: &str = "0-9";
const SPACE: &str = r"\t\n\x0B\x0C\r ";
const WORD: &str = "0-9A-Za-z_";
const VSPACE: &str = r"\n\x0B\x0C\r\x{85}\x{2028}\x{2029}";
const HSPACE: &str = r" \t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}";

/// Reads the escape at `cs[i] == '\\'`; returns what it means and the index after it.
fn read_escape(cs: &[char], i: usize) -> Option<(Esc, usize)> {
    let c = *cs.get(i + 1)?;
    let simple = |e: Esc| Some((e, i + 2));
    match c {
        'd' => simple(Esc::Set(DIGIT)),
        'D' => simple(Esc::NotSet(DIGIT)),
        's' => simple(Esc::Set(SPACE)),
        'S' => simple(Esc::NotSet(SPACE)),
        'w' => simple(Esc::Set(WORD)),
        'W' => simple(Esc::NotSet(WORD)),
        'v' => simple(Esc::Set(VSPACE)),
        'V' => simple(Esc::NotSet(VSPACE)),
        'h' => simple(Esc::Set(HSPACE)),
        'H' => simple(Esc::NotSet(HSPACE)),
        't' => simple(Esc::Char('\t')),
        'n' => simple(Esc::Char('\n')),
        'r' => simple(Esc::Char('\r')),
        'f' => simple(Esc::Char('\x0C')),
        'a' => simple(Esc::Char('\x07')),
        'e' => simple(Esc::Char('\x1B')),
        'b' => simple(Esc::Assert(r"\b")),
        'B' => simple(Esc::Assert(r"\B")),
        'A' => simple(Esc::Assert(r"\A")),
        'z' => simple(Esc::Assert(r"\z")),
        'Z' => simple(Esc::Assert(DOLLAR)),
        'x' => {
            // `\xhh` (R-RX-3), or Java's `\x{h…h}`.
            if cs.get(i + 2) == Some(&'{') {
                let close = (i + 3..cs.len()).find(|&k| cs.get(k) == Some(&'}'))?;
                let hex: String = cs.get(i + 3..close)?.iter().collect();
                if hex.is_empty() || hex.len() > 6 {
                    return None;
                }
                let v = u32::from_str_radix(&hex, 16).ok()?;
                Some((Esc::Char(char::from_u32(v)?), close + 1))
            } else {
                let hex: String = cs.get(i + 2..i + 4)?.iter().collect();
                if !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                let v = u32::from_str_radix(&hex, 16).ok()?;
                Some((Esc::Char(char::from_u32(v)?), i + 4))
            }
        }
        'u' => {
            let hex: String = cs.get(i + 2..i + 6)?.iter().collect();
            if !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            let v = u32::from_str_radix(&hex, 16).ok()?;
            Some((Esc::Char(char::from_u32(v)?), i + 6))
        }
        // Any other letter or digit is an unknown escape, a back reference
        // (there are no groups) or a Java feature outside the dialect.
        c if c.is_ascii_alphanumeric() => None,
        // An escaped symbol stands for itself.
        c => simple(Esc::Char(c)),
    }
}

/// An escape outside a class; returns the index after it and whether it is an atom.
fn escape(cs: &[char], i: usize, out: &mut String) -> Option<(usize, bool)> {
    let (esc, next) = read_escape(cs, i)?;
    let atom = match esc {
        Esc::Char(c) => {
            push_literal(out, c);
            true
        }
        Esc::Set(s) => {
            out.push('[');
            out.push_str(s);
            out.push(']');
            true
        }
        Esc::NotSet(s) => {
            out.push_str("[^");
            out.push_str(s);
            out.push(']');
            true
        }
        Esc::Assert(a) => {
            out.push_str(a);
            false
        }
    };
    Some((next, atom))
}

/// A class at `cs[i] == '['`, Java style: a `]` first in the class is a
/// literal, `-` first or last is a literal, a `[` opens a nested class
/// (union). Returns the index after the closing `]`.
fn class(cs: &[char], i: usize, out: &mut String, depth: usize) -> Option<usize> {
    if depth > MAX_CLASS_DEPTH {
        return None;
    }
    let mut j = i + 1;
    out.push('[');
    if cs.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let mut items = 0usize;
    loop {
        let c = *cs.get(j)?;
        if c == ']' && items > 0 {
            out.push(']');
            return Some(j + 1);
        }
        if c == '[' {
            j = class(cs, j, out, depth + 1)?;
            items += 1;
            continue;
        }
        let (lo, next) = class_atom(cs, j)?;
        j = next;
        items += 1;
        match lo {
            Esc::Char(a) => {
                let is_range = cs.get(j) == Some(&'-') && cs.get(j + 1).is_some_and(|&d| d != ']');
                if is_range {
                    if cs.get(j + 1) == Some(&'[') {
                        return None;
                    }
                    let (hi, next) = class_atom(cs, j + 1)?;
                    let Esc::Char(b) = hi else { return None };
                    if b < a {
                        return None;
                    }
                    push_class_char(out, a);
                    out.push('-');
                    push_class_char(out, b);
                    j = next;
                } else {
                    push_class_char(out, a);
                }
            }
            Esc::Set(s) => out.push_str(s),
            Esc::NotSet(s) => {
                out.push_str("[^");
                out.push_str(s);
                out.push(']');
            }
            Esc::Assert(_) => return None,
        }
    }
}

fn class_atom(cs: &[char], j: usize) -> Option<(Esc, usize)> {
    match cs.get(j)? {
        '\\' => read_escape(cs, j),
        &c => Some((Esc::Char(c), j + 1)),
    }
}

fn push_class_char(out: &mut String, c: char) {
    out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, s: &str) -> bool {
        compile(re)
            .unwrap_or_else(|e| panic!("{re}: {e}"))
            .is_match(s)
    }

    #[test]
    fn java_semantics() {
        assert!(m(r"^ERROR\s[0-9]{3}$", "ERROR\n500"));
        assert!(m(r"^[^a-z]+$", "ERROR\n500"));
        assert!(!m("a.b", "a\nb"));
        assert!(m("a.b", "a b"));
        assert!(m("colou?r$", "colour\n"));
        assert!(!m("colou?r$", "colour\nx"));
        assert!(m(r"\x3A", "a:b"));
        assert!(m(r"\x28", "call(1)"));
        assert!(m(r"\w", "--_--"));
        assert!(!m(r"\w", "é"));
        assert!(!m(r"\d", "٣"));
        assert!(m(r"10\.10\.0\.1", "10.10.0.1"));
        assert!(m("10.10.0.1", "10010,051"));
        assert!(m("a{,2}b", "b"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m(r"[\d\s]", " "));
        assert!(m(r"[^\d]", "x"));
        assert!(m("a*?b", "aab"));
        assert!(m("gra|ey", "grey"));
        assert!(m(r"\[.\]", "[ ]"));
        assert!(m("[a[bc]]", "c"));
        assert!(m(r"\x{e9}", "é"));
    }

    #[test]
    fn refused() {
        for re in [
            "[abc", "*a", "a**", "a{", "a{2,1}", "a{,}", "+", "a*+", r"\", r"\q", r"\1", r"\x4",
            "[]", "[z-a]", "^*", r"\bx\b*",
        ] {
            assert!(compile(re).is_err(), "{re:?} should fail");
        }
    }
}
