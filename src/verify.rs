//! `sshwatch verify`: the local engine against CloudWatch's TestMetricFilter on real lines.
//!
//! The last N lines of the log go through every configured filter twice: the
//! local engine, and CloudWatch's own `TestMetricFilter` (at most 50 messages a
//! call, at most 5 calls a second, backing off when throttled). Every line on
//! which the two differ is reported with both answers: match or not and, for
//! space-delimited patterns, the extracted `$fields`. The command fails (exit
//! status 1) when there is any disagreement. Empty lines are skipped: the API
//! takes only messages of at least one character.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata as _;
use aws_sdk_cloudwatchlogs::types::MetricFilterMatchRecord;
use serde_json::json;
use tracing::warn;

use crate::config::{Config, MetricFilter};
use crate::pattern::{FilterPattern, PatternKind};

/// `TestMetricFilter` takes at most 50 messages per call.
pub(crate) const MAX_MESSAGES_PER_CALL: usize = 50;
/// At most 5 calls a second: TestMetricFilter shares the account's Logs
/// control-plane rate, which other tools need too.
const MIN_CALL_SPACING: Duration = Duration::from_millis(200);
/// Tries per call on throttling, unavailability or a network error. The SDK's
/// own retries are off for this client: they would not keep to the pace.
const MAX_TRIES: u32 = 6;
/// First backoff after a failed try; doubles each time, capped at [`MAX_BACKOFF`],
/// and the sleep is drawn between half of it and all of it.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// Returns whether the local engine and CloudWatch agreed on every line.
pub(crate) async fn run(
    config: &Config,
    lines: usize,
    file: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let path: PathBuf = match file {
        Some(p) => p.to_path_buf(),
        None if config.source.journal == Some(true) => bail!(
            "`verify` reads a log file and the config reads the journal: pass FILE (e.g. `journalctl -u sshd -o short > sample.log`)"
        ),
        None => config.source.file_path.clone(),
    };
    let tail = crate::source::tail::last_lines(&path, lines)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let messages: Vec<(u64, String)> = tail
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            (
                tail.first_line + i as u64,
                String::from_utf8_lossy(l).into_owned(),
            )
        })
        .collect();
    let skipped = tail.lines.len() - messages.len();
    if messages.is_empty() {
        bail!(
            "no non-empty line among the last {lines} lines of `{}`: nothing to verify",
            path.display()
        );
    }

    let sdk = crate::aws::sdk_config(&config.aws).await;
    // Retries are ours (see `Api::call`), so that every try is paced.
    let client_config = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let mut api = Api::new(aws_sdk_cloudwatchlogs::Client::from_conf(client_config));
    let texts: Vec<&str> = messages.iter().map(|(_, m)| m.as_str()).collect();
    let mut disagreements = 0usize;
    for filter in &config.metric_filters {
        let answers = match api.test(filter.filter_pattern.text(), &texts).await? {
            Ok(answers) => answers,
            Err(rejection) => {
                disagreements += 1;
                writeln!(
                    out,
                    "filter `{}` (`{}`): CloudWatch rejects the pattern, sshwatch accepts it: {rejection}",
                    filter.filter_name,
                    filter.filter_pattern.text()
                )?;
                continue;
            }
        };
        for ((line_no, message), aws) in messages.iter().zip(&answers) {
            let local = local_answer(&filter.filter_pattern, message);
            if let Some(d) = compare(filter, *line_no, message, &local, aws) {
                disagreements += 1;
                out.write_all(d.as_bytes())?;
            }
        }
    }

    let checks = messages.len() * config.metric_filters.len();
    let skipped_note = if skipped > 0 {
        format!(" ({skipped} empty skipped)")
    } else {
        String::new()
    };
    let verdict = match disagreements {
        0 => "sshwatch and CloudWatch agree on every line".to_string(),
        1 => "1 disagreement".to_string(),
        n => format!("{n} disagreements"),
    };
    writeln!(
        out,
        "verify: {} lines of {} (lines {}-{}){skipped_note}, {} filters, {checks} checks, {} TestMetricFilter calls: {verdict}",
        messages.len(),
        path.display(),
        tail.first_line,
        tail.first_line + tail.lines.len().saturating_sub(1) as u64,
        config.metric_filters.len(),
        api.calls,
    )?;
    Ok(disagreements == 0)
}

/// One engine's answer for one message: `None` = no match, else the extracted `$fields`.
type Answer = Option<BTreeMap<String, String>>;

fn local_answer(pattern: &FilterPattern, message: &str) -> Answer {
    if !pattern.is_match(message) {
        return None;
    }
    let values = pattern
        .extract(message)
        .map(|e| e.values)
        .unwrap_or_default();
    Some(values.into_iter().map(|(k, v)| (dollar(k), v)).collect())
}

/// Field names as TestMetricFilter spells them: with a leading `$`.
fn dollar(k: String) -> String {
    if k.starts_with('$') {
        k
    } else {
        format!("${k}")
    }
}

/// A report of the disagreement on one line, or `None` when both engines agree.
/// Extracted values are compared only for space-delimited patterns: for term
/// and JSON patterns CloudWatch reports none.
fn compare(
    filter: &MetricFilter,
    line_no: u64,
    message: &str,
    local: &Answer,
    aws: &Answer,
) -> Option<String> {
    let compare_values = filter.filter_pattern.kind() == PatternKind::Delimited;
    let differs = match (local, aws) {
        (Some(l), Some(a)) => compare_values && l != a,
        (None, None) => false,
        _ => true,
    };
    if !differs {
        return None;
    }
    let verdict = |a: &Answer| if a.is_some() { "match" } else { "no match" };
    let values = |a: &Answer| match a {
        Some(v) => json!(v).to_string(),
        None => "-".to_string(),
    };
    let what = if local.is_some() && aws.is_some() {
        "both match, extracted values differ".to_string()
    } else {
        format!("sshwatch: {}, CloudWatch: {}", verdict(local), verdict(aws))
    };
    Some(format!(
        "line {line_no}: filter `{}` (`{}`): {what}\n  message:           {}\n  sshwatch values:   {}\n  CloudWatch values: {}\n",
        filter.filter_name,
        filter.filter_pattern.text(),
        json!(message),
        values(local),
        values(aws),
    ))
}

/// Places TestMetricFilter's match records back onto the messages of one call.
///
/// `eventNumber` is 1-based today (the 2014 examples show 0-based numbers), so
/// each record is checked against its message: 1-based first, then 0-based,
/// then by message text; a record that fits none is an error.
fn place_matches(
    messages: &[&str],
    records: &[MetricFilterMatchRecord],
) -> anyhow::Result<Vec<Answer>> {
    let mut answers: Vec<Answer> = vec![None; messages.len()];
    for r in records {
        let text = r.event_message();
        let n = r.event_number();
        let fits = |i: i64| {
            usize::try_from(i).ok().filter(|&i| {
                i < messages.len() && answers[i].is_none() && text.is_none_or(|t| t == messages[i])
            })
        };
        let index = fits(n - 1)
            .or_else(|| fits(n))
            .or_else(|| {
                let t = text?;
                (0..messages.len()).find(|&i| answers[i].is_none() && messages[i] == t)
            })
            .ok_or_else(|| anyhow!("TestMetricFilter answered with event {n} ({text:?}), which is not one of the messages sent"))?;
        let values = r
            .extracted_values()
            .map(|v| {
                v.iter()
                    .map(|(k, v)| (dollar(k.clone()), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        answers[index] = Some(values);
    }
    Ok(answers)
}

/// Throttling, unavailability, 5xx, timeouts and network failures: worth another try.
fn is_transient(
    e: &aws_sdk_cloudwatchlogs::error::SdkError<
        aws_sdk_cloudwatchlogs::operation::test_metric_filter::TestMetricFilterError,
        aws_sdk_cloudwatchlogs::config::http::HttpResponse,
    >,
) -> bool {
    use aws_sdk_cloudwatchlogs::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            s.raw().status().is_server_error()
                || matches!(
                    s.err().code(),
                    Some(
                        "ThrottlingException"
                            | "Throttling"
                            | "TooManyRequestsException"
                            | "ServiceUnavailableException"
                            | "InternalFailure"
                    )
                )
        }
        _ => false,
    }
}

/// The TestMetricFilter caller: batches, paces and retries.
struct Api {
    client: aws_sdk_cloudwatchlogs::Client,
    last_call: Option<tokio::time::Instant>,
    calls: usize,
}

impl Api {
    fn new(client: aws_sdk_cloudwatchlogs::Client) -> Api {
        Api {
            client,
            last_call: None,
            calls: 0,
        }
    }

    /// CloudWatch's answer for every message, or (inner `Err`) its rejection of the pattern.
    async fn test(
        &mut self,
        pattern: &str,
        messages: &[&str],
    ) -> anyhow::Result<Result<Vec<Answer>, String>> {
        let mut answers = Vec::with_capacity(messages.len());
        for batch in messages.chunks(MAX_MESSAGES_PER_CALL) {
            match self.call(pattern, batch).await? {
                Ok(records) => answers.extend(place_matches(batch, &records)?),
                Err(rejection) => return Ok(Err(rejection)),
            }
        }
        Ok(Ok(answers))
    }

    async fn call(
        &mut self,
        pattern: &str,
        batch: &[&str],
    ) -> anyhow::Result<Result<Vec<MetricFilterMatchRecord>, String>> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(t) = self.last_call {
                tokio::time::sleep_until(t + MIN_CALL_SPACING).await;
            }
            self.last_call = Some(tokio::time::Instant::now());
            self.calls += 1;
            let sent = self
                .client
                .test_metric_filter()
                .filter_pattern(pattern)
                .set_log_event_messages(Some(batch.iter().map(|m| (*m).to_string()).collect()))
                .send()
                .await;
            let e = match sent {
                Ok(out) => return Ok(Ok(out.matches().to_vec())),
                Err(e) => e,
            };
            if let Some(s) = e.as_service_error()
                && s.is_invalid_parameter_exception()
            {
                return Ok(Err(s.message().unwrap_or("invalid parameter").to_string()));
            }
            let code = e.code().unwrap_or("").to_string();
            if !is_transient(&e) || attempt >= MAX_TRIES {
                return Err(
                    anyhow!("{}", aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)).context(
                        format!("`TestMetricFilter` for `{pattern}` failed after {attempt} tries"),
                    ),
                );
            }
            let sleep = backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0);
            warn!(code = %code, attempt, sleep_ms = sleep.as_millis() as u64, "TestMetricFilter failed, backing off");
            tokio::time::sleep(sleep).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_cloudwatchlogs::types::MetricFilterMatchRecord;

    use super::place_matches;

    fn record(n: i64, msg: &str, values: &[(&str, &str)]) -> MetricFilterMatchRecord {
        let v: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MetricFilterMatchRecord::builder()
            .event_number(n)
            .event_message(msg)
            .set_extracted_values(Some(v))
            .build()
    }

    #[test]
    fn matches_are_placed_by_one_based_event_number_checked_against_the_text() {
        let msgs = ["a x", "b y", "a x"];
        let got = place_matches(
            &msgs,
            &[record(1, "a x", &[("$1", "a")]), record(3, "a x", &[])],
        )
        .expect("placed");
        assert!(got[0].as_ref().is_some_and(|v| v["$1"] == "a"));
        assert!(got[1].is_none());
        assert!(got[2].is_some());
        // 0-based numbering (the 2014 examples) still lands on the right message.
        let got = place_matches(&msgs, &[record(1, "b y", &[])]).expect("placed");
        assert!(got[1].is_some() && got[0].is_none());
        assert!(place_matches(&msgs, &[record(1, "zzz", &[])]).is_err());
    }
}
