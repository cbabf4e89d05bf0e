//! Real hosts: format detection, the silent-miss detector, `sshwatch init` and repeat expansion,
//! on the lab captures in `tests/fixtures/sshd/` (the same events logged as traditional syslog,
//! RFC 3339, repeat-reduced, and as every `journalctl` rendering).

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde_json::Value;
use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::{Config, DetectorConfig};
use sshwatch::detector::{Detector, check_sample, startup_check};
use sshwatch::format::{FormatReport, LineFormat};
use sshwatch::source::SourceKind;
use sshwatch::source::tail::sample;

fn lines_of(name: &str) -> Vec<String> {
    std::fs::read_to_string(crate::support::sshd_fixture(name))
        .expect("fixture")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `(InvalidUser, FailedPassword, ClosedConnection)` as `sshwatch classify` prints them.
fn classify(config: Option<&Path>, file: &Path) -> (u64, u64, u64) {
    let mut cmd = crate::support::bin();
    cmd.arg("classify");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.arg(file).output().expect("run classify");
    assert!(
        out.status.success(),
        "classify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let m = |k: &str| {
        v["metrics"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("metric {k} in {v}"))
    };
    (
        m("InvalidUserMetrics"),
        m("FailedPasswordMetrics"),
        m("ClosedConnectionMetrics"),
    )
}

/// A config file: the seed's filters, with `expand_repeated` as given.
fn seed_config(dir: &Path, expand: bool) -> PathBuf {
    let path = dir.join(format!("seed-{expand}.toml"));
    std::fs::write(&path, format!("[source]\nexpand_repeated = {expand}\n")).expect("write config");
    path
}

/// `sshwatch init --from FILE --output OUT`; returns the written text.
fn init(from: &Path, out: &Path) -> String {
    let o = crate::support::bin()
        .args(["init", "--from"])
        .arg(from)
        .arg("--output")
        .arg(out)
        .output()
        .expect("run init");
    assert!(
        o.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out).expect("written config")
}

/// The same lab events, as rsyslog wrote them: (traditional, RFC 3339, seed counts on traditional).
const PAIRS: [(&str, &str, (u64, u64, u64)); 4] = [
    (
        "lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log",
        "lab-deb12-openssh9.2p1-rsyslog-default.auth.log",
        (11, 35, 17),
    ),
    (
        "lab-deb12-openssh9.2p1-repeatreduce-traditional.auth.log",
        "lab-deb12-openssh9.2p1-repeatreduce-rfc3339.auth.log",
        // With expansion: the 26 visible failures and the 9 hidden in `message repeated`.
        (11, 35, 17),
    ),
    (
        "lab-openssh10.5p1-penalties-off-traditional.auth.log",
        "lab-openssh10.5p1-penalties-off-rfc3339.auth.log",
        (11, 35, 17),
    ),
    (
        "lab-openssh10.5p1-penalties-on-traditional.auth.log",
        "lab-openssh10.5p1-penalties-on-rfc3339.auth.log",
        (6, 23, 10),
    ),
];

#[test]
fn detects_the_format_of_every_capture() {
    let cases = [
        (
            "lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log",
            LineFormat::Traditional,
        ),
        (
            "lab-deb12-openssh9.2p1-rsyslog-default.auth.log",
            LineFormat::Rfc3339,
        ),
        (
            "lab-deb12-openssh9.2p1-repeatreduce-rfc3339.auth.log",
            LineFormat::Rfc3339,
        ),
        (
            "lab-openssh10.5p1-penalties-on-traditional.auth.log",
            LineFormat::Traditional,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short.txt",
            LineFormat::Traditional,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short-precise.txt",
            LineFormat::JournalShortPrecise,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short-iso.txt",
            LineFormat::JournalShortIso,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short-iso-precise.txt",
            LineFormat::JournalShortIsoPrecise,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short-full.txt",
            LineFormat::JournalShortFull,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-short-unix.txt",
            LineFormat::JournalShortUnix,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-json.txt",
            LineFormat::JournalJson,
        ),
        (
            "lab-openssh10.5p1-journald.journalctl-o-cat.txt",
            LineFormat::MessageOnly,
        ),
    ];
    for (file, expected) in cases {
        let lines = lines_of(file);
        let report = FormatReport::of_lines(lines.iter().map(String::as_str));
        assert_eq!(
            report.dominant(),
            Some(expected),
            "{file}: {}",
            report.summary()
        );
        // Every line of a capture has the capture's envelope.
        let (top, n) = report.counts()[0];
        assert_eq!(top.family(), expected.family(), "{file}");
        if expected != LineFormat::Traditional {
            assert_eq!(n, report.total(), "{file}: {}", report.summary());
        }
    }
}

#[test]
fn startup_check_warns_on_rfc3339_with_the_seed_and_not_on_traditional() {
    for (traditional, rfc3339, _) in PAIRS {
        let config = |file: &str| {
            Config::from_toml_str(
                &format!(
                    "[source]\nfile_path = {:?}\njournal = false\n",
                    crate::support::sshd_fixture(file).display().to_string()
                ),
                None,
            )
            .expect("config")
        };
        let check = |file: &str| {
            let config = config(file);
            let sample = sample(&config.source.file_path, 64 * 1024);
            startup_check(&config, SourceKind::File, &sample)
        };
        assert_eq!(check(traditional), Vec::<String>::new(), "{traditional}");
        let warnings = check(rfc3339);
        for filter in ["SSHInvalidUserFilter", "SSHFailedPasswordFilter"] {
            let w = warnings
                .iter()
                .find(|w| w.contains(&format!("`{filter}`")))
                .unwrap_or_else(|| panic!("{rfc3339}: no warning for {filter} in {warnings:#?}"));
            assert!(w.contains("RFC 3339"), "{w}");
            assert!(
                w.contains("3 envelope fields") && w.contains("expects 5"),
                "{w}"
            );
            assert!(w.contains("sshd"), "the example line is quoted: {w}");
        }
    }
}

#[test]
fn running_detector_flags_silent_filters_only_on_rfc3339() {
    let config = Config::defaults();
    let window = Duration::from_secs(600);
    let run = |file: &str| {
        let classifier = Classifier::new(&config.metric_filters);
        let mut detector = Detector::new(
            &config.metric_filters,
            &DetectorConfig {
                enabled: true,
                window,
            },
        );
        let mut scratch = Scratch::default();
        let t0 = 1_800_000_000i64;
        let mut near_total = 0;
        for (i, line) in lines_of(file).iter().enumerate() {
            let mut matched = Vec::new();
            classifier.classify(line.as_bytes(), &mut scratch, |f, _| matched.push(f));
            near_total += detector.observe(line.as_bytes(), &matched, t0 + i as i64);
        }
        // Not before a whole window was watched.
        assert!(detector.evaluate(t0 + 300).is_empty());
        let silent = detector.evaluate(t0 + 600);
        let status = detector.status();
        // One warning per window: a filter already reported is not reported again a minute later.
        let again = detector.evaluate(t0 + 660);
        assert!(
            again
                .iter()
                .all(|a| silent.iter().all(|s| s.filter_name != a.filter_name)),
            "{again:#?}"
        );
        (silent, status, near_total)
    };
    let (silent, status, _) = run("lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log");
    assert!(silent.is_empty(), "{silent:#?}");
    assert_eq!(status, None);

    let (silent, status, near) = run("lab-deb12-openssh9.2p1-rsyslog-default.auth.log");
    let names: Vec<&str> = silent.iter().map(|s| s.filter_name.as_str()).collect();
    // The RFC 3339 kex line still matches ClosedConnection by accident, so it is not silent.
    assert_eq!(names, ["SSHInvalidUserFilter", "SSHFailedPasswordFilter"]);
    assert_eq!(silent[0].near_misses, 11);
    assert_eq!(silent[1].near_misses, 35);
    assert!(near >= 46, "FilterNearMisses over the file: {near}");
    for s in &silent {
        assert_eq!(s.format, LineFormat::Rfc3339);
        assert!(s.example.starts_with("2026-11-26T"), "{}", s.example);
        let text = s.to_string();
        assert!(
            text.contains(&s.filter_name) && text.contains("RFC 3339"),
            "{text}"
        );
    }
    let status = status.expect("status");
    assert!(
        status.contains("SSHInvalidUserFilter") && status.contains("RFC 3339"),
        "{status}"
    );
}

#[test]
fn check_sample_judges_by_shape_without_evidence() {
    // No line carries the words, but the shape says the seed cannot fit RFC 3339.
    let lines = [
        "2026-11-26T15:52:57.916260+00:00 vm sshd[21910]: Server listening on 127.0.0.1 port 2222.",
    ];
    let w = check_sample(&Config::defaults(), &lines, "`sample`");
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(
        w[0].contains("expects 5") && w[0].contains("with 3"),
        "{}",
        w[0]
    );
    let lines = ["Nov 26 15:52:57 vm sshd[21910]: Server listening on 127.0.0.1 port 2222."];
    assert!(check_sample(&Config::defaults(), &lines, "`sample`").is_empty());
}

#[test]
fn init_writes_filters_that_count_what_the_traditional_file_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (traditional, rfc3339, expected) in PAIRS {
        let expand = traditional.contains("repeatreduce");
        assert_eq!(
            classify(
                Some(&seed_config(dir.path(), expand)),
                &crate::support::sshd_fixture(traditional)
            ),
            expected,
            "{traditional}"
        );
        for file in [traditional, rfc3339] {
            let out = dir.path().join(format!("{file}.toml"));
            let text = init(&crate::support::sshd_fixture(file), &out);
            Config::load(&out, false).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
            assert_eq!(
                classify(Some(&out), &crate::support::sshd_fixture(file)),
                expected,
                "{file}:\n{text}"
            );
            // The comments report the same counts.
            for n in [expected.0, expected.1, expected.2] {
                assert!(
                    text.contains(&format!("# Matched {n} of the ")),
                    "{file}: no count {n}:\n{text}"
                );
            }
            assert_eq!(
                text.contains("expand_repeated = true"),
                expand,
                "{file}:\n{text}"
            );
            if file == rfc3339 {
                assert!(
                    text.contains("\"[ts, host, id, status = Invalid, ...]\""),
                    "{text}"
                );
                assert!(
                    text.contains("\"[ts, host, id, msg1 = Failed, msg2 = password, ...]\""),
                    "{text}"
                );
                assert!(
                    text.contains("\"[ts, host, id, msg1 = Connection, msg2 = closed, ...]\""),
                    "{text}"
                );
            } else {
                assert!(
                    text.contains("\"[Mon, day, timestamp, ip, id, status = Invalid, ...]\""),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn init_fits_every_journalctl_rendering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = (3, 7, 4);
    let short = crate::support::sshd_fixture("lab-openssh10.5p1-journald.journalctl-o-short.txt");
    assert_eq!(classify(None, &short), expected);
    for suffix in [
        "short",
        "short-precise",
        "short-iso",
        "short-iso-precise",
        "short-full",
        "short-unix",
        "cat",
    ] {
        let file = crate::support::sshd_fixture(&format!(
            "lab-openssh10.5p1-journald.journalctl-o-{suffix}.txt"
        ));
        let out = dir.path().join(format!("{suffix}.toml"));
        let text = init(&file, &out);
        assert_eq!(classify(Some(&out), &file), expected, "{suffix}:\n{text}");
    }
    // A JSON export means a journald host: read the journal, whose lines are rendered traditionally.
    let out = dir.path().join("json.toml");
    let text = init(
        &crate::support::sshd_fixture("lab-openssh10.5p1-journald.journalctl-o-json.txt"),
        &out,
    );
    let config = Config::load(&out, false).expect("loads");
    assert_eq!(config.source.journal, Some(true), "{text}");
    assert!(
        text.contains("\"[Mon, day, timestamp, ip, id, status = Invalid, ...]\""),
        "{text}"
    );
    for n in [3, 7, 4] {
        assert!(
            text.contains(&format!("# Matched {n} of the 35 sample lines")),
            "{text}"
        );
    }
}

#[test]
fn init_never_overwrites_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("etc/sshwatch/sshwatch.toml");
    let from = crate::support::sshd_fixture("lab-deb12-openssh9.2p1-rsyslog-default.auth.log");
    init(&from, &out);
    std::fs::write(&out, "# mine\n").expect("write");
    let o = crate::support::bin()
        .args(["init", "--from"])
        .arg(&from)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "# mine\n");
    let o = crate::support::bin()
        .args(["init", "--force", "--from"])
        .arg(&from)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read_to_string(&out)
            .expect("read")
            .contains("[ts, host, id,")
    );
    // `--output -` writes to stdout and touches no file.
    let o = crate::support::bin()
        .args(["init", "--output", "-", "--from"])
        .arg(&from)
        .output()
        .expect("run");
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).expect("utf8");
    Config::from_toml_str(&text, None).expect("stdout config loads");
    assert!(text.contains("RFC 3339"), "{text}");
}

#[test]
fn expansion_counts_a_repeat_line_as_its_copies() {
    let config = Config::defaults();
    let classifier = Classifier::new(&config.metric_filters);
    let mut scratch = Scratch::default();
    let line = b"Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]";
    let mut sum = 0.0;
    let n = classifier.classify_expanded(line, &mut scratch, true, |i, v| {
        assert_eq!(
            config.metric_filters[i].metric_name,
            "FailedPasswordMetrics"
        );
        sum += v.expect("value");
    });
    assert_eq!((n, sum), (5, 5.0));
    // Off, the line is what CloudWatch sees: no match.
    let mut hits = 0;
    classifier.classify_expanded(line, &mut scratch, false, |_, _| hits += 1);
    assert_eq!(hits, 0);

    // Through `sshwatch classify --config`: the repeat-reduced capture with and without expansion.
    let dir = tempfile::tempdir().expect("tempdir");
    let file =
        crate::support::sshd_fixture("lab-deb12-openssh9.2p1-repeatreduce-traditional.auth.log");
    assert_eq!(
        classify(Some(&seed_config(dir.path(), false)), &file),
        (11, 26, 17)
    );
    assert_eq!(
        classify(Some(&seed_config(dir.path(), true)), &file),
        (11, 35, 17)
    );
    // And on stdin, the 5-times line alone.
    let mut child = crate::support::bin()
        .args(["classify", "--config"])
        .arg(seed_config(dir.path(), true))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(line).expect("write");
        stdin.write_all(b"\n").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["metrics"]["FailedPasswordMetrics"], 5, "{v}");
    assert_eq!(v["lines"], 1, "{v}");
}
