//! `sshwatch replay`: year inference across New Year, the progress bar on a terminal, and a real
//! backfill into moto (lines with their own timestamps, per-minute counts, CloudWatch's age limits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Duration as ChronoDuration, Utc};

/// Sets `path`'s mtime with coreutils' `touch -d`.
fn set_mtime(path: &Path, when: &str) {
    let ok = Command::new("touch")
        .arg("-d")
        .arg(when)
        .arg(path)
        .status()
        .expect("touch");
    assert!(ok.success());
}

/// `key: value` lines of the summary.
fn summary(out: &Output) -> BTreeMap<String, String> {
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sshwatch.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nstate_dir = {:?}\n{extra}",
            dir.join("state").display().to_string()
        ),
    )
    .expect("config");
    path
}

#[test]
fn new_year_gets_the_right_years() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("secure-20260102");
    std::fs::write(
        &log,
        "Dec 31 23:59:58 h sshd[1]: Invalid user a from 192.0.2.1 port 1\n\
         Dec 31 23:59:59 h sshd[1]: Failed password for invalid user a from 192.0.2.1 port 1 ssh2\n\
         no timestamp at all\n\
         Jan  1 00:00:01 h sshd[2]: Invalid user b from 192.0.2.2 port 2\n\
         Jan  2 10:00:00 h sshd[3]: Connection closed by 192.0.2.3 port 3 [preauth]\n",
    )
    .expect("log");
    // Read in January: the December lines belong to the year before.
    set_mtime(&log, "2026-01-02 11:00:00 UTC");
    let config = write_config(dir.path(), "");
    let out = crate::support::bin()
        .args(["replay", "--dry-run", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .expect("run");
    let s = summary(&out);
    assert_eq!(
        s["time range"], "2025-12-31T23:59:58Z .. 2026-01-02T11:00:00Z",
        "{s:#?}"
    );
    assert_eq!(s["lines"], "5");
    assert_eq!(s["timestamps from the file mtime"], "1");
    // All of it is far older than 14 days: CloudWatch would reject every line.
    assert_eq!(s["would ship"], "0");
    assert!(
        s["skipped"].starts_with("5 (older than 14 days: 5"),
        "{s:#?}"
    );

    // Rotated long ago and read in June: the January lines are that year's, December the year before.
    set_mtime(&log, "2026-06-01 00:00:00 UTC");
    let out = crate::support::bin()
        .args(["replay", "--dry-run", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .expect("run");
    assert_eq!(
        summary(&out)["time range"],
        "2025-12-31T23:59:58Z .. 2026-06-01T00:00:00Z"
    );
}

#[test]
fn dry_run_counts_the_lines_it_would_ship() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now() - ChronoDuration::minutes(30);
    let stamp = |t: chrono::DateTime<Utc>| t.format("%b %e %H:%M:%S").to_string();
    let old = (Utc::now() - ChronoDuration::days(20)).to_rfc3339();
    let text = format!(
        "{a} h sshd[1]: Invalid user a from 192.0.2.1 port 1\n\
         {a} h sshd[1]: message repeated 5 times: [ Failed password for root from 192.0.2.1 port 1 ssh2]\n\
         {b} h sshd[2]: Connection closed by 192.0.2.3 port 3 [preauth]\n\
         {old} h sshd[3]: Invalid user old from 192.0.2.9 port 9\n",
        a = stamp(now),
        b = stamp(now + ChronoDuration::minutes(2)),
    );
    let log = dir.path().join("auth.log");
    std::fs::write(&log, text).expect("log");
    let config = write_config(
        dir.path(),
        "expand_repeated = true\n[logs]\nretention_in_days = 7\n",
    );
    let out = crate::support::bin()
        .args(["replay", "--dry-run", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .expect("run");
    let s = summary(&out);
    assert_eq!(s["would ship"], "3", "{s:#?}");
    assert!(
        s["skipped"].starts_with("1 (older than 14 days: 1"),
        "{s:#?}"
    );
    assert_eq!(s["metric InvalidUserMetrics"], "1");
    assert_eq!(s["metric FailedPasswordMetrics"], "5");
    assert_eq!(s["metric ClosedConnectionMetrics"], "1");
    assert_eq!(s["minutes would publish"], "2");
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("auth.log");
    let line = "Nov 26 15:52:59 vm sshd[21932]: Invalid user admin from 127.0.0.1 port 55762\n";
    std::fs::write(&log, line.repeat(20_000)).expect("log");
    let config = write_config(dir.path(), "");
    let command = format!(
        "{} replay --dry-run --config {} {}",
        crate::support::sshwatch_bin(),
        config.display(),
        log.display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it drew.
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TZ", "UTC")
        .env("TERM", "xterm")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run script (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("replay "), "no bar on the terminal: {tty:?}");
    assert!(
        tty.contains("iB/"),
        "no byte counts on the terminal: {tty:?}"
    );
    assert!(tty.contains("lines: 20000"), "no summary: {tty:?}");

    // Piped: the same summary, no bar.
    let out = crate::support::bin()
        .args(["replay", "--dry-run", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .expect("run");
    assert_eq!(summary(&out)["lines"], "20000");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("iB/"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let missing = dir.path().join("nope.log");
    let out = crate::support::bin()
        .args(["replay", "--dry-run", "--config"])
        .arg(&config)
        .arg(&missing)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.log"), "{err}");
}

#[test]
fn replay_ships_lines_with_their_timestamps_and_publishes_their_minutes() {
    let moto = crate::support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Whole minutes in the recent past, so CloudWatch accepts both the events and the datapoints.
    let base = (Utc::now() - ChronoDuration::minutes(45)).timestamp() / 60 * 60;
    let at = |secs: i64| chrono::DateTime::from_timestamp(base + secs, 0).expect("time");
    let trad = |secs: i64| at(secs).format("%b %e %H:%M:%S").to_string();
    let old = (Utc::now() - ChronoDuration::days(20))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lines = [
        format!(
            "{} vm sshd[1]: Invalid user admin from 192.0.2.1 port 1",
            trad(5)
        ),
        format!(
            "{} vm sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2",
            trad(6)
        ),
        format!(
            "{} vm sshd[1]: message repeated 4 times: [ Failed password for root from 192.0.2.1 port 1 ssh2]",
            trad(7)
        ),
        // A dated envelope keeps its own time; the seed's patterns do not fit it (CloudWatch's semantics).
        format!(
            "{} vm sshd[2]: Invalid user rfc from 192.0.2.2 port 2",
            at(65).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        format!(
            "{} vm sshd[2]: Connection closed by 192.0.2.2 port 2 [preauth]",
            trad(70)
        ),
        format!("{old} vm sshd[3]: Invalid user old from 192.0.2.3 port 3"),
    ];
    let log = dir.path().join("auth.log.1");
    std::fs::write(&log, lines.join("\n") + "\n").expect("log");
    let config = write_config(
        dir.path(),
        "expand_repeated = true\n[logs]\nlog_group_name = \"replayed\"\nlog_stream_name = \"host-a\"\n[metrics]\ntransport = \"put_metric_data\"\n",
    );
    let mut cmd = crate::support::sshwatch(&moto.endpoint);
    let out = cmd
        .env("TZ", "UTC")
        .args(["replay", "--config"])
        .arg(&config)
        .arg(&log)
        .output()
        .expect("run");
    let s = summary(&out);
    assert_eq!(s["shipped"], "5", "{s:#?}");
    assert!(
        s["skipped"].starts_with("1 (older than 14 days: 1"),
        "{s:#?}"
    );
    assert_eq!(s["minutes published"], "2");
    assert_eq!(s["rejected by CloudWatch"], "0 events, 0 datums");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sdk = moto.sdk_config().await;
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let got = logs
            .get_log_events()
            .log_group_name("replayed")
            .log_stream_name("host-a")
            .start_from_head(true)
            .send()
            .await
            .expect("get_log_events");
        let events: Vec<(i64, String)> = got
            .events()
            .iter()
            .map(|e| {
                (
                    e.timestamp().unwrap_or_default(),
                    e.message().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let want: Vec<(i64, String)> = [5, 6, 7, 65, 70]
            .iter()
            .zip(&lines)
            .map(|(secs, l)| ((base + secs) * 1000, l.clone()))
            .collect();
        assert_eq!(events, want);

        let cw = aws_sdk_cloudwatch::Client::new(&sdk);
        let sum = |metric: &'static str| {
            let cw = cw.clone();
            async move {
                let r = cw
                    .get_metric_statistics()
                    .namespace("SSH")
                    .metric_name(metric)
                    .start_time(aws_smithy_types::DateTime::from_secs(base - 60))
                    .end_time(aws_smithy_types::DateTime::from_secs(base + 180))
                    .period(60)
                    .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
                    .send()
                    .await
                    .expect("get_metric_statistics");
                let mut points: Vec<(i64, f64)> = r
                    .datapoints()
                    .iter()
                    .map(|d| {
                        (
                            d.timestamp().map_or(0, |t| t.secs()),
                            d.sum().unwrap_or_default(),
                        )
                    })
                    .collect();
                points.sort_by_key(|p| p.0);
                points
            }
        };
        assert_eq!(
            sum("FailedPasswordMetrics").await,
            vec![(base, 5.0), (base + 60, 0.0)]
        );
        assert_eq!(
            sum("InvalidUserMetrics").await,
            vec![(base, 1.0), (base + 60, 0.0)]
        );
        assert_eq!(
            sum("ClosedConnectionMetrics").await,
            vec![(base, 0.0), (base + 60, 1.0)]
        );
    });
}
