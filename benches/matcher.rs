//! Matcher throughput: the compiled classifier, the plain evaluator and a naive
//! one-regex-per-filter baseline, over real sshd lines, in bytes per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::bytes::Regex;

use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::default_metric_filters;

/// Real sshd output (OpenSSH 9.2 and 10.5 through rsyslog's traditional format).
const FIXTURES: [&str; 4] = [
    include_str!("../tests/fixtures/sshd/lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log"),
    include_str!("../tests/fixtures/sshd/lab-openssh10.5p1-penalties-off-traditional.auth.log"),
    include_str!("../tests/fixtures/sshd/lab-openssh10.5p1-penalties-on-traditional.auth.log"),
    include_str!("../tests/fixtures/sshd/lab-deb12-openssh9.2p1-repeatreduce-traditional.auth.log"),
];

/// About 4 MiB of real lines, repeated.
fn corpus() -> Vec<u8> {
    let one: String = FIXTURES.concat();
    let mut out = Vec::with_capacity(4 << 20);
    while out.len() < 4 << 20 {
        out.extend_from_slice(one.as_bytes());
    }
    out
}

/// The naive baseline: each seed pattern written as one regex, run on every line.
fn naive_regexes() -> Vec<Regex> {
    let env = r"^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]+[^ \t]+[ \t]+[^ \t]+[ \t]+[^ \t]+[ \t]+";
    [
        "Invalid(?:[ \t]|$)",
        "Failed[ \t]+password(?:[ \t]|$)",
        "Connection[ \t]+closed(?:[ \t]|$)",
    ]
    .iter()
    .map(|tail| Regex::new(&format!("{env}{tail}")).expect("baseline regex"))
    .collect()
}

fn bench(c: &mut Criterion) {
    let data = corpus();
    let filters = default_metric_filters();
    let classifier = Classifier::new(&filters);
    let regexes = naive_regexes();

    let mut group = c.benchmark_group("seed-filters");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);

    group.bench_function("classifier/count_buffer", |b| {
        let mut scratch = Scratch::default();
        b.iter(|| {
            let mut n = 0u64;
            classifier.count_buffer(black_box(&data), &mut scratch, |_, _| n += 1);
            n
        })
    });
    group.bench_function("classifier/per-line", |b| {
        let mut scratch = Scratch::default();
        b.iter(|| {
            let mut n = 0u64;
            for line in black_box(&data).split(|&x| x == b'\n') {
                classifier.classify(line, &mut scratch, |_, _| n += 1);
            }
            n
        })
    });
    group.bench_function("plain-evaluator/per-line", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for line in black_box(&data).split(|&x| x == b'\n') {
                let text = String::from_utf8_lossy(line);
                for f in &filters {
                    n += u64::from(f.filter_pattern.is_match(&text));
                }
            }
            n
        })
    });
    group.bench_function("naive-regex/per-line", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for line in black_box(&data).split(|&x| x == b'\n') {
                for r in &regexes {
                    n += u64::from(r.is_match(line));
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
