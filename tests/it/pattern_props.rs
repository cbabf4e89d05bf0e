//! Property tests for the filter-pattern engine: the parser and evaluators
//! never panic on any input, the classifier's fast path (`split_fields` +
//! `matches_fields`) agrees with `is_match`, and `required_literals` is sound.

use proptest::prelude::*;
use proptest::test_runner::Config;

use sshwatch::pattern::{FilterPattern, PatternKind, split_fields};

/// Characters that mean something to one of the three pattern grammars.
const PATTERN_ALPHABET: &str = r#"[\[\]{}",%$.=!<>&|*?\\ \t\-a-zA-Z0-9_()'@:#^+/;~`]{0,80}"#;

/// Message text rich in what the field splitter treats specially.
const MESSAGE_ALPHABET: &str = "[ \t\n\"\\[\\]\\\\a-zA-Z0-9:.{}=,é-]{0,120}";

/// Valid patterns of every kind, to run on arbitrary messages.
const SAMPLE_PATTERNS: &[&str] = &[
    "",
    " ",
    "ERROR",
    "?ERROR ?WARN",
    "ERROR -\"BAD REQUEST\"",
    "%^[^a-z]+$%",
    "%a.b|c{2,}%",
    "[]",
    "[...]",
    "[a]",
    "[a, b]",
    "[Mon, day, timestamp, ip, id, status = Invalid, ...]",
    "[Mon, day, timestamp, ip, id, msg1= Failed, msg2 = password, ...]",
    "[ip, ..., status >= 400, bytes]",
    "[..., request = *.html*, status = 4* || status = \"5\", ]",
    "[w1 = ERROR && (w1 != FOO || w1 = %WARN$%), w2]",
    "{ $.a = 1 }",
    "{ $.a[*].b = \"x*\" || $.c IS NULL && $.d NOT EXISTS }",
    "{ $.* = %^\\d+$% }",
    "{ ($.a > 1) && $.b != * }",
];

/// sshd-flavoured field material, including quotes, brackets and backslashes.
const TOKENS: &[&str] = &[
    "Dec",
    "9",
    "19",
    "05:20:36",
    "host",
    "sshd[1234]:",
    "sshd-session[1262]:",
    "Invalid",
    "invalid",
    "user",
    "admin",
    "root",
    "from",
    "203.0.113.5",
    "port",
    "52514",
    "ssh2",
    "Failed",
    "password",
    "Accepted",
    "publickey",
    "404",
    "-1",
    "1e3",
    "0.5",
    "\"john smith\"",
    "\"\"",
    "[preauth]",
    "[ Failed",
    "password]",
    "\"a\"b",
    "[x]y",
    "\"",
    "[",
    "]",
    "\\",
    "a\\\"b",
    "é",
    "x=1",
];

const SEPARATORS: &[&str] = &[" ", "  ", "\t", " \t "];

/// Values a generated condition compares with.
const VALUES: &[&str] = &[
    "Invalid",
    "user",
    "Inv*",
    "*",
    "*ss*",
    "sshd*",
    "\"john smith\"",
    "\"Invalid\"",
    "\"*n\"",
    "\"404\"",
    "404",
    "-1",
    "1e3",
    "0.5",
    "%^s%",
    "%[0-9]$%",
    "%in%",
    "root",
    "9",
];

fn line() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["", " ", "\t"][..]),
        prop::collection::vec(
            (
                prop::sample::select(TOKENS),
                prop::sample::select(SEPARATORS),
            ),
            0..14,
        ),
        prop::sample::select(&["", " ", "\t ", "\n"][..]),
    )
        .prop_map(|(lead, parts, trail)| {
            let mut s = String::from(lead);
            for (i, (tok, sep)) in parts.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(tok);
            }
            s.push_str(trail);
            s
        })
}

/// Numbers, for the relational operators (a string there is a parse error).
const NUMBERS: &[&str] = &["9", "404", "-1", "1e3", "0.5", "52514", "+2"];

fn comparison(name: String) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(&["=", "!=", "= ", "!= "][..]), prop::sample::select(VALUES)),
        2 => (prop::sample::select(&["<", ">=", "<=", ">"][..]), prop::sample::select(NUMBERS)),
        1 => (prop::sample::select(&["<", ">"][..]), prop::sample::select(VALUES)),
    ]
    .prop_map(move |(op, v)| format!("{name}{op}{v}"))
}

/// A condition on field `name`: comparisons joined by `&&`/`||`, maybe parenthesised.
fn condition(name: String) -> impl Strategy<Value = String> {
    let leaf = comparison(name);
    leaf.prop_recursive(3, 8, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(&[" && ", " || ", "&&", "||"][..]),
            inner,
            any::<bool>(),
        )
            .prop_map(|(a, op, b, paren)| {
                if paren {
                    format!("({a}{op}{b})")
                } else {
                    format!("{a}{op}{b}")
                }
            })
    })
}

/// One entry: unnamed, a bare name, or a name with a condition.
fn entry(i: usize) -> BoxedStrategy<String> {
    let name = format!("f{i}");
    prop_oneof![
        1 => Just(String::new()),
        3 => Just(name.clone()),
        4 => condition(name),
    ]
    .boxed()
}

/// A delimited pattern: up to 7 entries and at most one ellipsis anywhere.
fn delimited_pattern() -> impl Strategy<Value = String> {
    (0usize..8, any::<bool>(), 0usize..8).prop_flat_map(|(n, with_ellipsis, at)| {
        let entries: Vec<BoxedStrategy<String>> = (0..n).map(entry).collect();
        entries.prop_map(move |mut es| {
            if with_ellipsis {
                es.insert(at.min(es.len()), "...".to_owned());
            }
            format!("[{}]", es.join(", "))
        })
    })
}

fn term_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(&["", "", "?", "-"][..]),
            prop::sample::select(
                &[
                    "Invalid",
                    "user",
                    "sshd",
                    "\"Failed password\"",
                    "\" \"",
                    "%^Dec%",
                    "port",
                    "x",
                ][..],
            ),
        ),
        0..5,
    )
    .prop_map(|ts| {
        ts.iter()
            .map(|(p, t)| format!("{p}{t}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// The splitting rules R-SD-6…R-SD-10 written as plainly as possible (and
/// quadratic): the reference for `split_fields`. Returns `(value, raw)` ranges.
fn naive_split(m: &str) -> Vec<((usize, usize), (usize, usize))> {
    let b = m.as_bytes();
    let sep = |i: usize| b.get(i).is_some_and(|&c| c == b' ' || c == b'\t');
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while sep(i) {
            i += 1;
        }
        if i >= b.len() {
            return out;
        }
        let close = match b[i] {
            b'"' => Some(b'"'),
            b'[' => Some(b']'),
            _ => None,
        };
        if let Some(close) = close {
            let mut j = i + 1;
            while j < b.len() && b[j] != close {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            if j < b.len() && (j + 1 == b.len() || sep(j + 1)) {
                out.push(((i + 1, j), (i, j + 1)));
                i = j + 1;
                continue;
            }
        }
        let mut j = i;
        while j < b.len() && !sep(j) {
            j += 1;
        }
        out.push(((i, j), (i, j)));
        i = j;
    }
}

/// Runs every evaluator; they must not panic, and must agree with each other.
fn exercise(p: &FilterPattern, message: &str) -> Result<(), TestCaseError> {
    let matched = p.is_match(message);
    prop_assert_eq!(p.extract(message).is_some(), matched, "extract vs is_match");
    if matched {
        for lit in p.required_literals() {
            prop_assert!(
                message.contains(&lit),
                "literal {:?} missing from matching {:?}",
                lit,
                message
            );
        }
    }
    for r in [
        "$1",
        "$3",
        "$f0",
        "$f2",
        "$.a",
        "$.a[*].b",
        "$999999999999999999999",
    ] {
        if p.accepts_reference(r) {
            let _ = p.reference_value(message, r);
        }
    }
    if let Some(d) = p.delimited() {
        let mut fields = Vec::new();
        split_fields(message, &mut fields, usize::MAX);
        prop_assert_eq!(d.matches_fields(message, &fields), matched, "all fields");
        if let Some(k) = d.leading_fields_needed() {
            split_fields(message, &mut fields, k);
            prop_assert_eq!(
                d.matches_fields(message, &fields),
                matched,
                "{} leading fields",
                k
            );
        }
    }
    Ok(())
}

proptest! {
    // No regression files: a failure prints its minimal input, which belongs in
    // the conformance table or a unit test.
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn parser_is_total_on_any_text(s in any::<String>()) {
        let _ = FilterPattern::parse(&s);
    }

    #[test]
    fn parser_is_total_on_pattern_alphabet(
        prefix in prop::sample::select(&["", "[", "{", "{ $.", "[a = ", "%", "\"", "?", "-"][..]),
        s in PATTERN_ALPHABET,
        suffix in prop::sample::select(&["", "]", "}", "%", "\""][..]),
        message in MESSAGE_ALPHABET,
    ) {
        let text = format!("{prefix}{s}{suffix}");
        if let Ok(p) = FilterPattern::parse(&text) {
            prop_assert_eq!(p.text(), text.as_str());
            exercise(&p, &message)?;
            exercise(&p, "{\"a\":[{\"b\":1}],\"c\":null}")?;
        }
    }

    #[test]
    fn evaluators_are_total_on_any_message(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        text in MESSAGE_ALPHABET,
        idx in 0..SAMPLE_PATTERNS.len(),
    ) {
        let p = FilterPattern::parse(SAMPLE_PATTERNS[idx]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        exercise(&p, &String::from_utf8_lossy(&bytes))?;
        exercise(&p, &text)?;
    }

    #[test]
    fn fast_path_agrees_with_is_match(pattern in delimited_pattern(), message in line(), cut in 0usize..16) {
        // Some generated patterns are invalid (relational string values, a third regex).
        let Ok(p) = FilterPattern::parse(&pattern) else { return Ok(()) };
        prop_assert_eq!(p.kind(), PatternKind::Delimited);
        exercise(&p, &message)?;
        let d = p.delimited().ok_or_else(|| TestCaseError::fail("not delimited"))?;
        let matched = p.is_match(&message);
        // However far a caller splits, the answer does not change as long as
        // it splits at least what the pattern says it needs.
        let needed = d.leading_fields_needed().unwrap_or(0);
        let mut fields = Vec::new();
        split_fields(&message, &mut fields, needed.max(cut));
        prop_assert_eq!(d.matches_fields(&message, &fields), matched, "split at {}", needed.max(cut));
        if matched {
            for (key, _) in p.extract(&message).unwrap_or_default().values {
                if p.accepts_reference(&key) {
                    prop_assert!(p.reference_value(&message, &key).is_some(), "{} unresolved", key);
                }
            }
        }
    }

    #[test]
    fn split_is_a_consistent_prefix(
        message in prop_oneof![MESSAGE_ALPHABET, "[ \t\"\\[\\]\\\\ab]{0,40}"],
        max in 0usize..12,
    ) {
        let mut all = Vec::new();
        split_fields(&message, &mut all, usize::MAX);
        let naive: Vec<_> = all.iter().map(|f| ((f.start, f.end), (f.raw_start, f.raw_end))).collect();
        prop_assert_eq!(naive, naive_split(&message));
        let mut some = Vec::new();
        split_fields(&message, &mut some, max);
        prop_assert_eq!(&some[..], &all[..max.min(all.len())]);
        let mut last_end = 0;
        for f in &all {
            prop_assert!(last_end <= f.raw_start && f.raw_start <= f.start);
            prop_assert!(f.start <= f.end && f.end <= f.raw_end && f.raw_end <= message.len());
            for at in [f.start, f.end, f.raw_start, f.raw_end] {
                prop_assert!(message.is_char_boundary(at));
            }
            last_end = f.raw_end;
        }
    }

    #[test]
    fn term_literals_are_sound(pattern in term_pattern(), message in line()) {
        let p = match FilterPattern::parse(&pattern) {
            Ok(p) => p,
            // More than two `%regex%` terms is the only way to go wrong here.
            Err(e) if e.message().contains("maximum of 2 regular expressions") => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{pattern}: {e}"))),
        };
        exercise(&p, &message)?;
    }
}
