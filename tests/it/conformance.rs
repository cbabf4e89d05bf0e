//! Conformance of the filter-pattern engine with the case table
//! (`tests/fixtures/filter-pattern-cases.tsv`: id, pattern, line, expected answer, extracted fields,
//! confidence, source; most rows are recorded answers of CloudWatch's TestMetricFilter). Every row goes
//! through one `check`, which runs each implementation on it: the plain evaluator, the delimited fast
//! path (`split_fields` + `matches_fields`), and a compiled one-filter `Classifier`, per line and in
//! bulk (`count_buffer`), as the daemon and `classify` use it.

use std::collections::{BTreeMap, HashSet};

use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::{MetricFilter, MetricValue};
use sshwatch::pattern::{FilterPattern, PatternKind, split_fields};

const CASES: &str = include_str!("../fixtures/filter-pattern-cases.tsv");

/// Rows whose expected answer this engine knowingly does not give, with the
/// reason. Only `inferred` and `reimplementation` rows may be listed; the
/// test fails if a listed row starts passing.
const DEVIATIONS: &[(&str, &str)] = &[];

struct Case<'a> {
    id: &'a str,
    pattern: String,
    line: String,
    expected: &'a str,
    fields: &'a str,
    confidence: &'a str,
    source: &'a str,
}

/// The table's escapes: only `\t`, `\n` and `\r`; any other backslash is literal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let replacement = match chars.peek() {
                Some('t') => Some('\t'),
                Some('n') => Some('\n'),
                Some('r') => Some('\r'),
                _ => None,
            };
            if let Some(r) = replacement {
                chars.next();
                out.push(r);
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn cases() -> Vec<Case<'static>> {
    CASES
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 7, "malformed row: {l}");
            Case {
                id: cols[0],
                pattern: unescape(cols[1]),
                line: unescape(cols[2]),
                expected: cols[3],
                fields: cols[4],
                confidence: cols[5],
                source: cols[6],
            }
        })
        .collect()
}

/// The error text AWS returned, when the source records it.
fn recorded_message(source: &str) -> Option<&str> {
    let msg = source.split("AWS message: ").nth(1)?;
    Some(msg.split(" (").next().unwrap_or(msg).trim())
}

fn check(c: &Case<'_>) -> Result<(), String> {
    let parsed = FilterPattern::parse(&c.pattern);
    if c.expected == "invalid_pattern" {
        let err = match parsed {
            Ok(_) => return Err("parsed, but AWS rejects the pattern".into()),
            Err(e) => e,
        };
        if let Some(want) = recorded_message(c.source) {
            if err.message() != want {
                return Err(format!("error {:?}, AWS says {want:?}", err.message()));
            }
        } else if c.source.contains("Invalid character(s) in term")
            && !err.message().starts_with("Invalid character(s) in term")
        {
            return Err(format!(
                "error {:?}, AWS says Invalid character(s) in term …",
                err.message()
            ));
        }
        return Ok(());
    }
    let p = parsed.map_err(|e| format!("rejected: {e}"))?;
    let want_match = c.expected == "match";
    let got = p.is_match(&c.line);
    if got != want_match {
        return Err(format!("is_match = {got}, expected {}", c.expected));
    }
    let extracted = p.extract(&c.line);
    if extracted.is_some() != want_match {
        return Err(format!(
            "extract().is_some() = {}, is_match = {got}",
            extracted.is_some()
        ));
    }
    if let Some(ex) = extracted {
        let want: BTreeMap<String, String> = serde_json::from_str(c.fields)
            .map_err(|e| format!("bad extracted_fields JSON: {e}"))?;
        let got: BTreeMap<String, String> = ex.values.iter().cloned().collect();
        if got.len() != ex.values.len() {
            return Err(format!("duplicate keys in {:?}", ex.values));
        }
        if got != want {
            return Err(format!("extracted {got:?}, expected {want:?}"));
        }
    }
    if p.kind() == PatternKind::Delimited {
        let d = p
            .delimited()
            .ok_or("delimited() is None for a delimited pattern")?;
        let mut fields = Vec::new();
        split_fields(&c.line, &mut fields, usize::MAX);
        if d.matches_fields(&c.line, &fields) != got {
            return Err("matches_fields(all fields) disagrees with is_match".into());
        }
        if let Some(k) = d.leading_fields_needed() {
            split_fields(&c.line, &mut fields, k);
            if d.matches_fields(&c.line, &fields) != got {
                return Err(format!(
                    "matches_fields({k} leading fields) disagrees with is_match"
                ));
            }
        }
    }
    check_classifier(&p, &c.line, got)?;
    if got {
        for lit in p.required_literals() {
            if !c.line.contains(&lit) {
                return Err(format!(
                    "required literal {lit:?} missing from a matching line"
                ));
            }
        }
    }
    Ok(())
}

/// The compiled classifier of the row's pattern alone must answer as the plain evaluator, per line
/// and through the bulk path (for lines that are one line: no line ends inside).
fn check_classifier(pattern: &FilterPattern, line: &str, want: bool) -> Result<(), String> {
    let filter = MetricFilter {
        filter_name: "row".into(),
        filter_pattern: pattern.clone(),
        metric_name: "Row".into(),
        metric_namespace: "Conformance".into(),
        metric_value: MetricValue::Number(1.0),
        default_value: None,
    };
    let classifier = Classifier::new(std::slice::from_ref(&filter));
    let mut scratch = Scratch::default();
    let mut per_line = false;
    classifier.classify(line.as_bytes(), &mut scratch, |_, _| per_line = true);
    if per_line != want {
        return Err(format!(
            "Classifier::classify = {per_line}, is_match = {want}"
        ));
    }
    if line.contains(['\n', '\r']) || line.is_empty() {
        return Ok(());
    }
    let mut bulk = 0;
    let lines = classifier.count_buffer(format!("{line}\n").as_bytes(), &mut scratch, |_, _| {
        bulk += 1
    });
    if lines != 1 || (bulk == 1) != want {
        return Err(format!(
            "Classifier::count_buffer counted {bulk} match(es) in {lines} line(s), is_match = {want}"
        ));
    }
    Ok(())
}

#[test]
fn conformance() {
    let cases = cases();
    let listed: HashSet<&str> = DEVIATIONS.iter().map(|(id, _)| *id).collect();
    let mut per_confidence: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut deviating = 0;
    for c in &cases {
        let entry = per_confidence.entry(c.confidence).or_default();
        entry.0 += 1;
        let result = check(c);
        let is_listed = listed.contains(c.id);
        if is_listed && !matches!(c.confidence, "inferred" | "reimplementation") {
            problems.push(format!(
                "{}: {} rows may not be listed as deviations",
                c.id, c.confidence
            ));
        }
        match (result, is_listed) {
            (Ok(()), false) => entry.1 += 1,
            (Ok(()), true) => {
                problems.push(format!("{}: listed deviation now passes; unlist it", c.id))
            }
            (Err(_), true) => deviating += 1,
            (Err(e), false) => problems.push(format!(
                "{} [{}] pattern {:?} line {:?}: {e}",
                c.id, c.confidence, c.pattern, c.line
            )),
        }
    }
    let unknown: Vec<&str> = listed
        .iter()
        .filter(|id| !cases.iter().any(|c| c.id == **id))
        .copied()
        .collect();
    if !unknown.is_empty() {
        problems.push(format!("deviations list names unknown rows: {unknown:?}"));
    }
    let passing: usize = per_confidence.values().map(|v| v.1).sum();
    println!(
        "{} cases: {passing} pass, {deviating} listed deviations",
        cases.len()
    );
    for (confidence, (total, pass)) in &per_confidence {
        println!("  {confidence}: {pass}/{total}");
    }
    assert_eq!(
        cases.len(),
        707,
        "the fixture should hold the 707 shared cases"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
