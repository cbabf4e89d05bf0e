//! Fuzz target: the compiled classifier, whatever strategy its filters select (the seed's byte-level
//! path, the literal prefilter, the general path), against the plain evaluator.
//!
//! The input holds up to three patterns and a buffer of lines, separated by NUL bytes (all decoded
//! lossily). Every line's matches and values, per line and through the bulk `count_buffer`, must be the
//! plain evaluator's; nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::{MetricFilter, MetricValue};
use sshwatch::pattern::FilterPattern;

fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<&[u8]> = data.splitn(4, |&b| b == 0).collect();
    let buffer = parts.pop().unwrap_or_default();
    let mut filters = Vec::new();
    for (i, text) in parts.iter().enumerate() {
        let text = String::from_utf8_lossy(text);
        let Ok(filter_pattern) = FilterPattern::parse(&text) else {
            continue;
        };
        filters.push(MetricFilter {
            filter_name: format!("f{i}"),
            filter_pattern,
            metric_name: format!("m{i}"),
            metric_namespace: "Fuzz".into(),
            metric_value: if i == 1 {
                MetricValue::Field("$1".into())
            } else {
                MetricValue::Number(1.0)
            },
            default_value: None,
        });
    }
    if filters.is_empty() {
        return;
    }
    let classifier = Classifier::new(&filters);
    let mut scratch = Scratch::default();
    let mut per_line = vec![0u64; filters.len()];
    let body = buffer.strip_suffix(b"\n").unwrap_or(buffer);
    let mut lines = 0u64;
    if !buffer.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            lines += 1;
            let line = sshwatch::text::strip_cr(line);
            if line.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let mut got = Vec::new();
            classifier.classify(line, &mut scratch, |i, _| got.push(i));
            let want: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| f.filter_pattern.is_match(&text))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(got, want, "line {text:?}");
            for i in got {
                per_line[i] += 1;
            }
        }
    }
    let mut bulk = vec![0u64; filters.len()];
    let counted = classifier.count_buffer(buffer, &mut scratch, |i, _| bulk[i] += 1);
    assert_eq!(counted, lines);
    assert_eq!(bulk, per_line);
});
