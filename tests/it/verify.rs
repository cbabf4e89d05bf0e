//! `sshwatch verify` end to end against a TestMetricFilter stub that answers from recorded AWS responses.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::tmf_stub::{Recorded, TmfStub, load_recorded};

/// The recorded grid: three space-delimited patterns × seven messages.
const PATTERNS: [(&str, &str); 3] = [
    ("Bytes", "[..., bytes]"),
    ("Html4xx", "[..., request = *.html*, status = 4*, bytes]"),
    ("ErrorWords", "[w1=ERROR, w2]"),
];

fn recorded() -> Recorded {
    load_recorded(&crate::support::repo(
        "tests/fixtures/verify/tmf-recorded.tsv",
    ))
}

/// The grid's seven messages, in a fixed order.
fn messages(rec: &Recorded) -> Vec<String> {
    let mut m: Vec<String> = rec
        .keys()
        .filter(|(p, _)| p == PATTERNS[0].1)
        .map(|(_, m)| m.clone())
        .collect();
    m.sort();
    assert_eq!(m.len(), 7, "fixture grid");
    for (_, pattern) in PATTERNS {
        for msg in &m {
            assert!(
                rec.contains_key(&(pattern.to_string(), msg.clone())),
                "fixture lacks {pattern} × {msg}"
            );
        }
    }
    m
}

fn config(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (name, pattern) in PATTERNS {
        text.push_str(&format!(
            "[[metric_filters]]\nfilter_name = \"{name}\"\nfilter_pattern = '{pattern}'\nmetric_name = \"{name}Count\"\n\n"
        ));
    }
    let path = dir.join("sshwatch.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn write_log(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("sample.log");
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write log");
    path
}

fn verify(stub: &TmfStub, config: &Path, log: &Path, lines: usize) -> Output {
    crate::support::sshwatch(&stub.endpoint)
        .args(["verify", "--config"])
        .arg(config)
        .args(["--lines", &lines.to_string()])
        .arg(log)
        .output()
        .expect("run sshwatch verify")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every call kept the API's limits and pace: 1..=50 non-empty messages, at most 5 calls in any second.
fn assert_well_behaved(stub: &TmfStub) {
    let calls = stub.calls();
    assert!(
        calls.iter().all(|c| !c.invalid),
        "a call broke TestMetricFilter's limits: {calls:?}"
    );
    for w in calls.windows(6) {
        let span = w[5].at.duration_since(w[0].at);
        assert!(
            span >= Duration::from_millis(900),
            "6 calls within {span:?}: faster than 5 per second"
        );
    }
}

#[test]
fn verify_agrees_with_recorded_cloudwatch_answers_in_batches_of_at_most_50() {
    let rec = recorded();
    let msgs = messages(&rec);
    let stub = TmfStub::start(rec);
    let dir = tempfile::tempdir().expect("temp dir");
    // 70 lines plus two empty ones (TestMetricFilter takes no empty message).
    let mut lines: Vec<String> = (0..10).flat_map(|_| msgs.clone()).collect();
    lines.insert(20, String::new());
    lines.insert(40, String::new());
    let log = write_log(dir.path(), &lines);

    let out = verify(&stub, &config(dir.path()), &log, 500);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "verify failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("70 lines"), "{text}");
    assert!(text.contains("2 empty skipped"), "{text}");
    assert!(text.contains("3 filters, 210 checks"), "{text}");
    assert!(text.contains("agree on every line"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("line ")),
        "no disagreement expected: {text}"
    );

    // 70 messages per filter: one call of 50 and one of 20 each.
    let calls = stub.calls();
    let sizes: Vec<(String, usize)> = calls
        .iter()
        .map(|c| (c.pattern.clone(), c.messages.len()))
        .collect();
    let expected: Vec<(String, usize)> = PATTERNS
        .iter()
        .flat_map(|(_, p)| [(p.to_string(), 50), (p.to_string(), 20)])
        .collect();
    assert_eq!(sizes, expected);
    assert_well_behaved(&stub);
}

#[test]
fn verify_takes_only_the_last_n_lines() {
    let rec = recorded();
    let msgs = messages(&rec);
    let stub = TmfStub::start(rec);
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: Vec<String> = (0..3).flat_map(|_| msgs.clone()).collect();
    let log = write_log(dir.path(), &lines);
    let out = verify(&stub, &config(dir.path()), &log, 4);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lines 18-21"), "{text}");
    let calls = stub.calls();
    assert_eq!(calls.len(), 3);
    for c in &calls {
        assert_eq!(c.messages, msgs[3..]);
    }
}

#[test]
fn verify_reports_every_disagreement_with_both_answers_and_fails() {
    let mut rec = recorded();
    let msgs = messages(&rec);
    // Make "CloudWatch" answer two cases differently from the recording (and so
    // from a correct local engine): a match where AWS said none, and a match
    // with a different extracted value.
    let flipped = ("[w1=ERROR, w2]".to_string(), "WARNING request".to_string());
    assert_eq!(
        rec.get(&flipped),
        Some(&None),
        "fixture: recorded as no match"
    );
    rec.insert(
        flipped.clone(),
        Some(
            [("$w1", "WARNING"), ("$w2", "request")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    );
    let altered = ("[..., bytes]".to_string(), "ERROR".to_string());
    assert!(
        matches!(rec.get(&altered), Some(Some(v)) if v["$bytes"] == "ERROR"),
        "fixture"
    );
    rec.insert(
        altered.clone(),
        Some(
            [("$bytes".to_string(), "WARN".to_string())]
                .into_iter()
                .collect(),
        ),
    );
    let stub = TmfStub::start(rec);

    let dir = tempfile::tempdir().expect("temp dir");
    let log = write_log(dir.path(), &msgs);
    let out = verify(&stub, &config(dir.path()), &log, 100);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "disagreements must fail:\n{text}"
    );

    let line_of = |m: &str| msgs.iter().position(|x| x == m).expect("in log") + 1;
    let warn = format!(
        "line {}: filter `ErrorWords` (`[w1=ERROR, w2]`): sshwatch: no match, CloudWatch: match",
        line_of("WARNING request")
    );
    assert!(text.contains(&warn), "missing {warn:?} in:\n{text}");
    assert!(
        text.contains(r#"CloudWatch values: {"$w1":"WARNING","$w2":"request"}"#),
        "{text}"
    );
    let err = format!(
        "line {}: filter `Bytes` (`[..., bytes]`): both match, extracted values differ",
        line_of("ERROR")
    );
    assert!(text.contains(&err), "missing {err:?} in:\n{text}");
    assert!(
        text.contains(r#"sshwatch values:   {"$bytes":"ERROR"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"CloudWatch values: {"$bytes":"WARN"}"#),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("line ")).count(),
        2,
        "exactly two disagreements:\n{text}"
    );
    assert!(text.contains("2 disagreements"), "{text}");
    assert_well_behaved(&stub);
}

#[test]
fn verify_backs_off_when_throttled_and_still_gets_every_answer() {
    let rec = recorded();
    let msgs = messages(&rec);
    let stub = TmfStub::start(rec);
    // More throttles in a row than the SDK's own retries absorb.
    stub.throttle_next(4);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = write_log(dir.path(), &msgs);
    let out = verify(&stub, &config(dir.path()), &log, 100);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = stub.calls();
    assert_eq!(calls.iter().filter(|c| c.throttled).count(), 4);
    assert_eq!(
        calls.iter().filter(|c| !c.throttled).count(),
        3,
        "{calls:?}"
    );
    // The first answered call came after a backoff, not at once.
    let answered = calls
        .iter()
        .position(|c| !c.throttled)
        .expect("answered call");
    assert!(calls[answered].at.duration_since(calls[0].at) >= Duration::from_millis(500));
    assert_well_behaved(&stub);
}

#[test]
fn verify_rejects_a_log_with_nothing_to_verify() {
    let stub = TmfStub::start(recorded());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = write_log(dir.path(), &[String::new(), String::new()]);
    let out = verify(&stub, &config(dir.path()), &log, 10);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to verify"));
    assert!(stub.calls().is_empty());
}
