//! `sshwatch init`: detect the log's format and write a config whose filters fit it.
//!
//! The sample is `--from FILE` (its last [`SAMPLE_BYTES`]), else `/var/log/secure`, else
//! `/var/log/auth.log`, else sshd's entries in the journal. The three filters keep the seed's names
//! and metrics (so the seed's alarms apply) and put their conditions right after the detected
//! envelope: `[Mon, day, timestamp, ip, id, status = Invalid, ...]` for traditional syslog,
//! `[ts, host, id, status = Invalid, ...]` for RFC 3339. A journal sample (live, or a
//! `journalctl -o json` export) gives `journal = true` and the seed's filters, since the journal
//! source renders traditional lines. Each filter carries a comment with its count on the sample.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::classify::{Classifier, Scratch};
use crate::cli::InitArgs;
use crate::config::{Config, default_metric_filters};
use crate::format::{FormatReport, LineFormat};

/// How much of the end of the sample file is read.
pub(crate) const SAMPLE_BYTES: u64 = 4 << 20;

/// How many journal entries a journal sample takes.
const JOURNAL_SAMPLE_ENTRIES: usize = 5000;

/// Sample files tried when `--from` is not given.
const DEFAULT_SAMPLES: [&str; 2] = ["/var/log/secure", "/var/log/auth.log"];

/// Where the sample came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A log file, to be followed as it is.
    File(PathBuf),
    /// A `journalctl -o json` export (rendered like the journal source does).
    JournalExport(PathBuf),
    /// The live journal.
    Journal,
}

/// The sample lines, as the daemon would see them.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub origin: Origin,
    pub lines: Vec<String>,
    /// Formats of the lines as read (before any journal rendering).
    pub report: FormatReport,
}

/// What `init` decided.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub origin: Origin,
    /// The format the filters are written for (`None` for an empty sample).
    pub format: Option<LineFormat>,
    pub report: FormatReport,
    pub journal: bool,
    pub expand_repeated: bool,
    /// `message repeated` lines in the sample and the events they stand for.
    pub repeat_lines: usize,
    pub repeat_events: u64,
    pub sample_lines: usize,
    /// `(filter_name, pattern, metric_name, matches on the sample)`.
    pub filters: Vec<(String, String, String, f64)>,
}

/// The words each of the three filters looks for, after the envelope.
const FILTER_TAILS: [(&str, &str, &str); 3] = [
    (
        "SSHInvalidUserFilter",
        "status = Invalid",
        "InvalidUserMetrics",
    ),
    (
        "SSHFailedPasswordFilter",
        "msg1 = Failed, msg2 = password",
        "FailedPasswordMetrics",
    ),
    (
        "SSHClosedConnectionFilter",
        "msg1 = Connection, msg2 = closed",
        "ClosedConnectionMetrics",
    ),
];

/// The seed's filter pattern text for a filter name (traditional envelope).
fn seed_pattern(name: &str) -> Option<String> {
    default_metric_filters()
        .into_iter()
        .find(|f| f.filter_name == name)
        .map(|f| f.filter_pattern.text().to_string())
}

/// Envelope field names for a format's envelope width.
fn envelope_names(fields: usize) -> Vec<&'static str> {
    match fields {
        3 => vec!["ts", "host", "id"],
        6 => vec!["dow", "date", "time", "tz", "host", "id"],
        7 => vec!["pri", "ts", "host", "app", "procid", "msgid", "sd"],
        n => (0..n).map(|_| "f").collect(),
    }
}

/// The three `(name, pattern, metric)` for a format.
pub(crate) fn filters_for(format: LineFormat) -> Vec<(String, String, String)> {
    let fields = format.envelope_fields().unwrap_or(5);
    FILTER_TAILS
        .iter()
        .map(|(name, tail, metric)| {
            let pattern = if fields == 5 {
                seed_pattern(name)
                    .unwrap_or_else(|| format!("[Mon, day, timestamp, ip, id, {tail}, ...]"))
            } else {
                let mut entries: Vec<String> = envelope_names(fields)
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        if *n == "f" {
                            format!("f{}", i + 1)
                        } else {
                            (*n).to_string()
                        }
                    })
                    .collect();
                entries.push((*tail).to_string());
                entries.push("...".to_string());
                format!("[{}]", entries.join(", "))
            };
            ((*name).to_string(), pattern, (*metric).to_string())
        })
        .collect()
}

/// Reads the sample.
pub(crate) fn load_sample(from: Option<&Path>) -> anyhow::Result<Sample> {
    let path = match from {
        Some(p) => p.to_path_buf(),
        None => match DEFAULT_SAMPLES.iter().map(Path::new).find(|p| p.exists()) {
            Some(p) => p.to_path_buf(),
            None if crate::source::journal::available() => return journal_sample(),
            None => anyhow::bail!(
                "no sample log: neither `/var/log/secure` nor `/var/log/auth.log` exists and there is no journal; \
                 pass `--from FILE`"
            ),
        },
    };
    let lines = crate::source::tail::sample(&path, SAMPLE_BYTES)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let report = FormatReport::of_lines(lines.iter().map(String::as_str));
    if report.dominant() == Some(LineFormat::JournalJson) {
        let rendered = render_json_lines(lines.iter().map(String::as_str));
        return Ok(Sample {
            origin: Origin::JournalExport(path),
            lines: rendered,
            report,
        });
    }
    Ok(Sample {
        origin: Origin::File(path),
        lines,
        report,
    })
}

/// `journalctl -o json` lines rendered as the journal source renders them.
fn render_json_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .filter_map(|l| serde_json::from_str::<Map<String, Value>>(l).ok())
        .filter_map(|e| crate::source::journal::render_entry(&e, &chrono::Local))
        .map(|r| String::from_utf8_lossy(&r.line).into_owned())
        .collect()
}

/// The newest sshd entries of the live journal.
fn journal_sample() -> anyhow::Result<Sample> {
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["--output=json", "--all", "--no-pager", "--quiet"])
        .arg(format!("--lines={JOURNAL_SAMPLE_ENTRIES}"));
    for i in crate::source::journal::IDENTIFIERS {
        cmd.arg(format!("SYSLOG_IDENTIFIER={i}"));
    }
    cmd.arg("+");
    for i in crate::source::journal::IDENTIFIERS {
        cmd.arg(format!("_COMM={i}"));
    }
    let out = cmd.output().context("cannot run `journalctl`")?;
    if !out.status.success() {
        anyhow::bail!(
            "`journalctl` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let raw: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let report = FormatReport::of_lines(raw.iter().copied());
    Ok(Sample {
        origin: Origin::Journal,
        lines: render_json_lines(raw.into_iter()),
        report,
    })
}

/// Decides the config for a sample.
pub(crate) fn plan(sample: &Sample) -> Plan {
    let journal = matches!(sample.origin, Origin::Journal | Origin::JournalExport(_));
    // Journal entries are rendered as traditional lines, whatever the export looked like.
    let format = if journal {
        Some(LineFormat::Traditional)
    } else {
        sample.report.dominant()
    };
    let mut repeat_lines = 0;
    let mut repeat_events = 0;
    for l in &sample.lines {
        if let Some(r) = crate::repeat::parse(l.as_bytes()) {
            repeat_lines += 1;
            repeat_events += r.count;
        }
    }
    let expand_repeated = repeat_lines > 0;
    let specs = filters_for(format.unwrap_or(LineFormat::Traditional));
    let counts = count_matches(&specs, &sample.lines, expand_repeated);
    Plan {
        origin: sample.origin.clone(),
        format,
        report: sample.report.clone(),
        journal,
        expand_repeated,
        repeat_lines,
        repeat_events,
        sample_lines: sample.lines.len(),
        filters: specs
            .into_iter()
            .zip(counts)
            .map(|((n, p, m), c)| (n, p, m, c))
            .collect(),
    }
}

/// Sum of each filter's values over `lines` (repeat lines expanded when `expand`).
fn count_matches(specs: &[(String, String, String)], lines: &[String], expand: bool) -> Vec<f64> {
    let text = render_filters(specs);
    let Ok(config) = Config::from_toml_str(&text, None) else {
        return vec![0.0; specs.len()];
    };
    let classifier = Classifier::new(&config.metric_filters);
    let mut scratch = Scratch::default();
    let mut sums = vec![0.0; specs.len()];
    for l in lines {
        classifier.classify_expanded(l.as_bytes(), &mut scratch, expand, |i, v| {
            if let Some(v) = v {
                sums[i] += v;
            }
        });
    }
    sums
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn render_filters(specs: &[(String, String, String)]) -> String {
    let mut t = String::new();
    for (name, pattern, metric) in specs {
        t.push_str(&format!(
            "[[metric_filters]]\nfilter_name = {}\nfilter_pattern = {}\nmetric_name = {}\nmetric_namespace = \"SSH\"\nmetric_value = \"1\"\n",
            toml_str(name),
            toml_str(pattern),
            toml_str(metric)
        ));
    }
    t
}

fn count_text(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The annotated configuration file.
pub(crate) fn render(plan: &Plan) -> String {
    let mut t = String::new();
    let origin = match &plan.origin {
        Origin::File(p) => format!("`{}`", p.display()),
        Origin::JournalExport(p) => format!("the journal export `{}`", p.display()),
        Origin::Journal => "sshd's entries in the journal".to_string(),
    };
    t.push_str(&format!(
        "# sshwatch configuration written by `sshwatch init` from {origin}.\n#\n"
    ));
    match plan.format {
        Some(f) => {
            if plan.report.total() == 0 {
                t.push_str("# Sample: no sshd lines yet.\n");
            } else {
                t.push_str(&format!("# Sample: {}.\n", plan.report.summary()));
            }
            if plan.journal {
                t.push_str(
                    "# Journal entries are read by the journal source and rendered as traditional\n\
                     # syslog lines (`Mmm dd HH:MM:SS host sshd[pid]: …`), so the seed's patterns fit.\n",
                );
            } else {
                t.push_str(&format!(
                    "# Detected format: {f}; {} fields come before the message, so the filters'\n\
                     # first condition is field {}.\n",
                    f.envelope_fields().unwrap_or(0),
                    f.envelope_fields().unwrap_or(0) + 1,
                ));
            }
        }
        None => {
            t.push_str("# The sample was empty: the filters are the seed's (traditional syslog).\n")
        }
    }
    t.push_str(
        "#\n# Every key left out has its built-in default (the seed setup: log group `secure`,\n\
         # namespace `SSH`, the seed's alarms on these metrics). Check the result with\n\
         # `sshwatch classify --config THIS_FILE LOG` and `sshwatch verify`.\n\n[source]\n",
    );
    match &plan.origin {
        Origin::File(p) => {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            t.push_str(&format!(
                "file_path = {}\n",
                toml_str(&abs.to_string_lossy())
            ));
            if plan.format.is_some_and(is_journal_rendering) {
                t.push_str(
                    "# This sample is a journalctl rendering: to follow the journal itself, set\n\
                     # `journal = true` and run `sshwatch init` without `--from` for filters that fit.\n",
                );
            }
            t.push_str("journal = false\n");
        }
        Origin::JournalExport(_) | Origin::Journal => {
            t.push_str("# Read sshd and sshd-session entries from the journal.\njournal = true\n");
        }
    }
    if plan.expand_repeated {
        t.push_str(&format!(
            "# The sample has {} `message repeated N times: [ … ]` lines standing for {} events\n\
             # (rsyslog's $RepeatedMsgReduction): count each as N copies of its message.\n\
             expand_repeated = true\n",
            plan.repeat_lines, plan.repeat_events
        ));
    } else {
        t.push_str("# rsyslog's `message repeated N times` lines count once each (none in the sample).\nexpand_repeated = false\n");
    }
    t.push('\n');
    for (name, pattern, metric, count) in &plan.filters {
        t.push_str(&format!(
            "# Matched {} of the {} sample lines.\n",
            count_text(*count),
            plan.sample_lines
        ));
        t.push_str(&render_filters(&[(
            name.clone(),
            pattern.clone(),
            metric.clone(),
        )]));
        t.push('\n');
    }
    t
}

fn is_journal_rendering(f: LineFormat) -> bool {
    matches!(
        f,
        LineFormat::JournalShort
            | LineFormat::JournalShortPrecise
            | LineFormat::JournalShortIso
            | LineFormat::JournalShortIsoPrecise
            | LineFormat::JournalShortFull
            | LineFormat::JournalShortUnix
            | LineFormat::MessageOnly
    )
}

/// Writes the detected config to `args.output` (`-` = `out`).
pub(crate) fn run(args: &InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let sample = load_sample(args.from.as_deref())?;
    let plan = plan(&sample);
    let text = render(&plan);
    // What init writes must load; a failure here is a bug in init.
    Config::from_toml_str(&text, None).context("the generated configuration does not load")?;
    if args.output == Path::new("-") {
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    write_new(&args.output, &text, args.force)?;
    let counts: Vec<String> = plan
        .filters
        .iter()
        .map(|(n, _, _, c)| format!("{n}: {}", count_text(*c)))
        .collect();
    writeln!(
        out,
        "wrote `{}` ({}; sample matches: {})",
        args.output.display(),
        plan.format.map_or("empty sample", LineFormat::describe),
        counts.join(", ")
    )?;
    Ok(())
}

/// Writes `text` to `path` (temporary file + rename), refusing to replace a file without `force`.
fn write_new(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if !force && path.symlink_metadata().is_ok() {
        anyhow::bail!(
            "`{}` already exists; pass `--force` to overwrite it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}
