//! The offline commands: `test-pattern` (AWS's TestMetricFilter, locally) and `classify`.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use crate::cli::TestPatternArgs;
use crate::config::Config;
use crate::counter::saturating_add;
use crate::pattern::FilterPattern;
use crate::tally::Tally;

/// `sshwatch test-pattern`: prints `{"matches":[…]}` exactly as
/// `aws logs test-metric-filter` does (1-based event numbers, matching events only).
pub(crate) fn test_pattern(
    args: &TestPatternArgs,
    stdin: impl BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pattern = FilterPattern::parse(&args.filter_pattern)?;
    let messages: Vec<String> = if args.log_event_messages.is_empty() {
        read_messages(stdin)?
    } else {
        args.log_event_messages.clone()
    };
    let report = test_messages(&pattern, &messages);
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)?;
    Ok(())
}

/// The TestMetricFilter response for `messages`.
pub(crate) fn test_messages(pattern: &FilterPattern, messages: &[String]) -> Value {
    let matches: Vec<Value> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, message)| {
            let extracted = pattern.extract(message)?;
            let values: Map<String, Value> = extracted
                .values
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Some(json!({
                "eventNumber": i + 1,
                "eventMessage": message,
                "extractedValues": values,
            }))
        })
        .collect();
    json!({ "matches": matches })
}

/// One message per line of `input` (terminators stripped, invalid UTF-8 decoded lossily).
fn read_messages(mut input: impl BufRead) -> anyhow::Result<Vec<String>> {
    let mut messages = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input
            .read_until(b'\n', &mut buf)
            .context("cannot read stdin")?
            == 0
        {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = crate::text::strip_cr(line);
        messages.push(String::from_utf8_lossy(line).into_owned());
    }
    Ok(messages)
}

/// Read size of `classify`: big enough for the literal search to run at memory speed.
const CLASSIFY_CHUNK: usize = 4 << 20;

/// Per-metric totals of a classification run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    pub lines: u64,
    /// `(metric_name, sum of values)` in the order the filters first name them.
    pub metrics: Vec<(String, f64)>,
}

/// Streams `reader` through the daemon's [`Tally`], chunk by chunk, splitting only at newlines.
pub(crate) fn classify_reader(config: &Config, mut reader: impl Read) -> anyhow::Result<Totals> {
    let mut quiet = config.clone();
    quiet.detector.enabled = false;
    let mut tally = Tally::new(&quiet);
    let mut lines = 0u64;
    let mut buf = vec![0u8; CLASSIFY_CHUNK];
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            // A single line longer than the buffer: grow rather than split it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = reader
            .read(&mut buf[filled..])
            .context("cannot read input")?;
        let eof = n == 0;
        filled += n;
        let cut = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => i + 1,
                None => continue,
            }
        };
        lines += tally.count_buffer(&buf[..cut]);
        buf.copy_within(cut..filled, 0);
        filled -= cut;
        if eof {
            break;
        }
    }
    let counter = tally.take();
    let mut metrics: Vec<(String, f64)> = Vec::new();
    for (t, target) in counter.rules().targets.iter().enumerate() {
        let sum = counter
            .minutes()
            .map(|(_, c)| c.sums.get(t).copied().unwrap_or(0.0))
            .fold(0.0, saturating_add);
        match metrics.iter_mut().find(|(n, _)| *n == target.name) {
            Some(m) => m.1 = saturating_add(m.1, sum),
            None => metrics.push((target.name.clone(), sum)),
        }
    }
    Ok(Totals { lines, metrics })
}

/// `sshwatch classify`: prints `{"lines": N, "metrics": {"InvalidUserMetrics": n, …}}`.
pub(crate) fn classify(
    config: &Config,
    files: &[PathBuf],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut total = Totals::default();
    if files.is_empty() {
        total = classify_reader(config, std::io::stdin().lock())?;
    } else {
        for path in files {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            let t = classify_reader(config, file)
                .with_context(|| format!("cannot classify `{}`", path.display()))?;
            total.lines += t.lines;
            if total.metrics.is_empty() {
                total.metrics = t.metrics;
            } else {
                for ((_, sum), (_, add)) in total.metrics.iter_mut().zip(t.metrics) {
                    *sum += add;
                }
            }
        }
    }
    let metrics: Map<String, Value> = total
        .metrics
        .iter()
        .map(|(name, v)| (name.clone(), number(*v)))
        .collect();
    serde_json::to_writer(
        &mut *out,
        &json!({ "lines": total.lines, "metrics": metrics }),
    )?;
    writeln!(out)?;
    Ok(())
}

/// A JSON number, integral when the value is (counts print as `3`, not `3.0`).
pub(crate) fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}
