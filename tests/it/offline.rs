//! The offline commands end to end: `classify` on real sshd logs, `test-pattern`, and config errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::{Config, default_metric_filters};

fn run_ok(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run sshwatch");
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Expected seed counts of a lab file, from `labels.tsv`'s `seed_match_ws_split`
/// column. For these files whitespace splitting and CloudWatch's splitting agree
/// on the first seven fields (no field there starts with `"` or `[`), which
/// `labels_agree_with_the_engine` checks line by line.
fn labelled_counts(file: &str) -> (u64, BTreeMap<String, u64>) {
    let labels =
        std::fs::read_to_string(crate::support::sshd_fixture("labels.tsv")).expect("labels.tsv");
    let mut counts: BTreeMap<String, u64> = [
        "InvalidUserMetrics",
        "FailedPasswordMetrics",
        "ClosedConnectionMetrics",
    ]
    .iter()
    .map(|m| (m.to_string(), 0))
    .collect();
    let mut lines = 0;
    for row in labels.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols[0] != file {
            continue;
        }
        lines += 1;
        let metric = match cols[4] {
            "InvalidUser" => "InvalidUserMetrics",
            "FailedPassword" => "FailedPasswordMetrics",
            "ClosedConnection" => "ClosedConnectionMetrics",
            _ => continue,
        };
        *counts.get_mut(metric).expect("known metric") += 1;
    }
    (lines, counts)
}

const LAB_FILES: [&str; 8] = [
    "lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log",
    "lab-deb12-openssh9.2p1-rsyslog-default.auth.log",
    "lab-deb12-openssh9.2p1-repeatreduce-traditional.auth.log",
    "lab-deb12-openssh9.2p1-repeatreduce-rfc3339.auth.log",
    "lab-openssh10.5p1-penalties-off-traditional.auth.log",
    "lab-openssh10.5p1-penalties-off-rfc3339.auth.log",
    "lab-openssh10.5p1-penalties-on-traditional.auth.log",
    "lab-openssh10.5p1-penalties-on-rfc3339.auth.log",
];

#[test]
fn classify_counts_real_sshd_logs_as_cloudwatch_would() {
    for file in LAB_FILES {
        let (lines, expected) = labelled_counts(file);
        let got = run_ok(
            crate::support::bin()
                .arg("classify")
                .arg(crate::support::sshd_fixture(file)),
        );
        assert_eq!(got["lines"], lines, "{file}: line count");
        for (metric, n) in &expected {
            assert_eq!(got["metrics"][metric], *n, "{file}: {metric}");
        }
    }
}

#[test]
fn rfc3339_logs_match_only_the_kex_false_positive() {
    // The ISO timestamp is one field, so the seed patterns look at the wrong
    // words: nothing matches except `error: kex_exchange_identification:
    // Connection closed by remote host`, whose 4th and 5th words happen to be
    // `Connection closed` (OpenSSH logs that line under both rsyslog templates).
    let got = run_ok(
        crate::support::bin()
            .arg("classify")
            .arg(crate::support::sshd_fixture(
                "lab-deb12-openssh9.2p1-rsyslog-default.auth.log",
            )),
    );
    assert_eq!(got["metrics"]["InvalidUserMetrics"], 0);
    assert_eq!(got["metrics"]["FailedPasswordMetrics"], 0);
    assert!(
        got["metrics"]["ClosedConnectionMetrics"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn labels_agree_with_the_engine() {
    // Line by line: the plain evaluator, the compiled classifier and the labels.
    let filters = default_metric_filters();
    let classifier = Classifier::new(&filters);
    let mut scratch = Scratch::default();
    for file in LAB_FILES {
        let text = std::fs::read(crate::support::sshd_fixture(file)).expect("fixture");
        let labels = std::fs::read_to_string(crate::support::sshd_fixture("labels.tsv"))
            .expect("labels.tsv");
        let wanted: Vec<String> = labels
            .lines()
            .filter(|r| r.split('\t').next() == Some(file))
            .map(|r| r.split('\t').nth(4).unwrap_or("").to_string())
            .collect();
        for (i, line) in text
            .strip_suffix(b"\n")
            .unwrap_or(&text)
            .split(|&b| b == b'\n')
            .enumerate()
        {
            let message = String::from_utf8_lossy(line);
            let plain: Vec<usize> = (0..filters.len())
                .filter(|&f| filters[f].filter_pattern.is_match(&message))
                .collect();
            let mut fast = Vec::new();
            classifier.classify(line, &mut scratch, |f, _| fast.push(f));
            assert_eq!(plain, fast, "{file}:{}: {message}", i + 1);
            let label = match plain.first() {
                Some(0) => "InvalidUser",
                Some(1) => "FailedPassword",
                Some(2) => "ClosedConnection",
                _ => "-",
            };
            assert_eq!(
                wanted.get(i).map(String::as_str),
                Some(label),
                "{file}:{}: {message}",
                i + 1
            );
        }
    }
}

#[test]
fn classify_reads_stdin_and_survives_invalid_utf8_and_crlf() {
    let mut child = crate::support::bin()
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let input: &[u8] = b"Dec  9 05:20:36 host sshd[1]: Invalid user \xf1\xff from 203.0.113.5\r\n\
        Dec  9 05:20:37 host sshd[1]: Failed password for root from 203.0.113.5 port 1 ssh2\n\
        \n\
        Dec  9 05:20:38 host sshd[1]: Connection closed by 203.0.113.5 port 1 [preauth]";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["lines"], 4);
    assert_eq!(got["metrics"]["InvalidUserMetrics"], 1);
    assert_eq!(got["metrics"]["FailedPasswordMetrics"], 1);
    assert_eq!(got["metrics"]["ClosedConnectionMetrics"], 1);
}

#[test]
fn classify_with_a_config_sums_metric_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[[metric_filters]]
filter_name = "pid"
filter_pattern = "[Mon, day, timestamp, ip, id, status = Invalid, ...]"
metric_name = "Invalid"
metric_value = 2

[[metric_filters]]
filter_name = "bytes"
filter_pattern = "[a, b, size]"
metric_name = "Size"
metric_value = "$size"
"#,
    )
    .expect("write config");
    let log = dir.path().join("log");
    std::fs::write(
        &log,
        "Dec  9 05:20:36 host sshd[1]: Invalid user a from b\nx y 10\nx y 2.5\nx y notanumber\n",
    )
    .expect("write log");
    let got = run_ok(
        crate::support::bin()
            .arg("classify")
            .arg("--config")
            .arg(&config)
            .arg(&log),
    );
    assert_eq!(got["lines"], 4);
    assert_eq!(got["metrics"]["Invalid"], 2);
    assert_eq!(got["metrics"]["Size"], 12.5);
}

fn test_pattern(args: &[&str], stdin: &str) -> Output {
    let mut child = crate::support::bin()
        .arg("test-pattern")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

#[test]
fn test_pattern_prints_aws_json() {
    let out = test_pattern(
        &[
            "--filter-pattern",
            "[Mon, day, timestamp, ip, id, status = Invalid, ...]",
            "--log-event-messages",
            "Dec  9 05:20:36 host sshd[1234]: Invalid user admin from 203.0.113.5",
            "Dec  9 05:20:37 host sshd[1234]: Failed password for root",
        ],
        "",
    );
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    let matches = got["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["eventNumber"], 1);
    assert_eq!(
        matches[0]["eventMessage"],
        "Dec  9 05:20:36 host sshd[1234]: Invalid user admin from 203.0.113.5"
    );
    let values = &matches[0]["extractedValues"];
    assert_eq!(values["$Mon"], "Dec");
    assert_eq!(values["$day"], "9");
    assert_eq!(values["$id"], "sshd[1234]:");
    assert_eq!(values["$status"], "Invalid");
    assert_eq!(values["$7"], "user");
    assert_eq!(values["$10"], "203.0.113.5");
}

#[test]
fn test_pattern_reads_stdin_and_takes_hyphen_values() {
    let out = test_pattern(
        &["--filter-pattern=-ERROR"],
        "ERROR one\nfine two\nERRORS three\nok\n",
    );
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    let numbers: Vec<u64> = got["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["eventNumber"].as_u64().expect("number"))
        .collect();
    assert_eq!(numbers, [2, 4]);
    assert_eq!(got["matches"][0]["extractedValues"], serde_json::json!({}));

    let out = test_pattern(
        &[
            "--filter-pattern",
            "-ERROR",
            "--log-event-messages",
            "-x",
            "ERROR\nsecond line",
        ],
        "",
    );
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["matches"].as_array().map(Vec::len), Some(1));
    assert_eq!(got["matches"][0]["eventMessage"], "-x");
}

#[test]
fn test_pattern_rejects_an_invalid_pattern_with_aws_message_and_status_2() {
    let out = test_pattern(
        &[
            "--filter-pattern",
            "[word, word]",
            "--log-event-messages",
            "a b",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("Duplicate field 'word'"), "{stderr}");
}

#[test]
fn the_annotated_example_config_loads_and_equals_the_defaults() {
    let path = crate::support::repo("config/sshwatch.toml");
    let example = Config::load(&path, false).expect("example config loads");
    let defaults = Config::defaults();
    assert_eq!(
        format!("{:?}", example.source),
        format!("{:?}", defaults.source)
    );
    assert_eq!(
        format!("{:?}", example.logs),
        format!("{:?}", defaults.logs)
    );
    assert_eq!(
        format!("{:?}", example.metrics),
        format!("{:?}", defaults.metrics)
    );
    assert_eq!(example.alarms, defaults.alarms);
    assert_eq!(example.metric_filters.len(), 3);
    for (a, b) in example.metric_filters.iter().zip(&defaults.metric_filters) {
        assert_eq!(a.filter_name, b.filter_name);
        assert_eq!(a.filter_pattern.text(), b.filter_pattern.text());
        assert_eq!(a.metric_name, b.metric_name);
        assert_eq!(a.metric_namespace, b.metric_namespace);
        assert_eq!(a.metric_value, b.metric_value);
    }
}

fn config_error(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = crate::support::bin()
        .arg("classify")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_name_the_key_and_line_and_exit_78() {
    let (code, err) = config_error("[source]\nfile_path = \"/x\"\nfile_pth = \"/y\"\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("file_pth") && err.contains("line 3"), "{err}");

    let (code, err) = config_error(
        "[[metric_filters]]\nfilter_name = \"a\"\nfilter_pattern = \"[a, a]\"\nmetric_name = \"m\"\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("metric_filters[0].filter_pattern") && err.contains("line 3"),
        "{err}"
    );
    assert!(err.contains("Duplicate field 'a'"), "{err}");

    let (code, err) = config_error("[logs]\nretention_in_days = 2\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("logs.retention_in_days") && err.contains("line 2"),
        "{err}"
    );

    let (code, err) = config_error("[logs]\nretention_in_days = \"never\"\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("logs.retention_in_days") && err.contains("line 2"),
        "{err}"
    );

    let (code, err) = config_error(
        "[[metric_filters]]\nfilter_name = \"a\"\nfilter_pattern = \"ERROR\"\nmetric_name = \"m\"\nmetric_value = \"$size\"\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("metric_filters[0].metric_value") && err.contains("line 5"),
        "{err}"
    );
}

#[test]
fn bulk_counting_agrees_with_the_plain_evaluator_on_tricky_lines() {
    // The bulk and the per-line paths check the seed's leading fields on raw
    // bytes (and the per-line one reports which filters carry their words); groups,
    // tabs, blank runs, short lines, fields and blank runs across the 64-byte
    // steps of the field scan, and invalid UTF-8 must not change an answer.
    let words: [&[u8]; 16] = [
        b"Dec",
        b" ",
        b"\t",
        b"  ",
        b"9",
        b"host",
        b"sshd[1]:",
        b"Invalid",
        b"Failed",
        b"password",
        b"Connection",
        b"closed",
        b"\"q w\"",
        b"[a b]",
        b"ip-172-31-45-123.eu-west-1.compute.internal",
        b" \t                                                             ",
    ];
    let extra: [&[u8]; 4] = [b"\xff", b"\"", b"[", b"Invalid\xf1"];
    let filters = default_metric_filters();
    let classifier = Classifier::new(&filters);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buf = Vec::new();
    let mut want = vec![0u64; filters.len()];
    let mut scratch = Scratch::default();
    for _ in 0..20_000 {
        let mut line = Vec::new();
        for _ in 0..(next() % 14) {
            let r = next();
            if r % 9 == 0 {
                line.extend_from_slice(extra[(r / 9 % 4) as usize]);
            } else {
                line.extend_from_slice(words[(r % 16) as usize]);
                line.push(b' ');
            }
        }
        let message = String::from_utf8_lossy(&line);
        if !line.is_empty() {
            let mut one = vec![false; filters.len()];
            classifier.classify(&line, &mut scratch, |i, _| one[i] = true);
            for (i, f) in filters.iter().enumerate() {
                let matched = f.filter_pattern.is_match(&message);
                want[i] += u64::from(matched);
                assert_eq!(one[i], matched, "filter {i} on {message:?}");
                // A candidate carries every word the filter requires.
                let words = f.filter_pattern.required_literals();
                let carries = words
                    .iter()
                    .all(|w| line.windows(w.len().max(1)).any(|win| win == w.as_bytes()));
                assert_eq!(
                    scratch.candidates() & (1 << i) != 0,
                    carries,
                    "candidate {i} on {message:?}"
                );
            }
        }
        buf.extend_from_slice(&line);
        buf.push(b'\n');
    }
    let mut got = vec![0u64; filters.len()];
    let lines = classifier.count_buffer(&buf, &mut Scratch::default(), |i, _| got[i] += 1);
    assert_eq!(lines, 20_000);
    assert_eq!(got, want);
    assert!(
        want.iter().all(|&n| n > 0),
        "every filter exercised: {want:?}"
    );
}

#[test]
fn a_config_file_others_can_write_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sshwatch.toml");
    std::fs::write(&config, "").expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = crate::support::bin()
        .args(["classify", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = crate::support::bin()
        .args(["classify", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("writable"));
}
