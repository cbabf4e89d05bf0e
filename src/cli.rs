//! Command-line definitions (clap derive types only, no logic).
//!
//! This file depends on nothing but `clap` and `std` so that packaging can
//! generate the man page and shell completions from the same definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/sshwatch/sshwatch.toml";

/// On-host SSH brute-force watcher for Amazon CloudWatch.
#[derive(Debug, Parser)]
#[command(name = "sshwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log level filter (error, warn, info, debug, trace) or a tracing directive.
    #[arg(long, global = true, env = "SSHWATCH_LOG", default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow the log, ship its lines to CloudWatch Logs and publish per-minute counts.
    Run(RunArgs),
    /// Offline twin of `aws logs test-metric-filter`: print the matches as AWS's JSON.
    TestPattern(TestPatternArgs),
    /// Count the matches of the configured metric filters in log files (or stdin).
    Classify(ClassifyArgs),
    /// Create the log group, alarms, SNS topic and dashboard (idempotent).
    Bootstrap(BootstrapArgs),
    /// Print the least-privilege IAM policies for `run` and `bootstrap`.
    IamPolicy(ConfigArgs),
    /// Check the local engine against CloudWatch's TestMetricFilter on real lines.
    Verify(VerifyArgs),
    /// Detect the log's format and write a config whose filters fit it.
    Init(InitArgs),
    /// Backfill old or rotated log files with their own timestamps.
    Replay(ReplayArgs),
    /// Write the man page and shell completions (used by packaging).
    #[command(hide = true)]
    GenerateAssets(GenerateAssetsArgs),
}

/// `--config PATH`, shared by most subcommands.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file; a missing file at the default path means all defaults.
    #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Arguments of `sshwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Arguments of `sshwatch test-pattern`.
#[derive(Debug, Args)]
pub struct TestPatternArgs {
    /// The filter pattern, as given to `aws logs test-metric-filter`.
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub filter_pattern: String,
    /// Log event messages (may contain newlines); without them, one message per line of stdin.
    #[arg(long, value_name = "MSG", num_args = 1.., allow_hyphen_values = true)]
    pub log_event_messages: Vec<String>,
}

/// Arguments of `sshwatch classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Configuration file whose `[[metric_filters]]` to use (default: the built-in seed filters).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log files to read; stdin when none.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of `sshwatch bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Call nothing; print the plan (every AWS call with its parameters) as JSON.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `sshwatch verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// How many lines to take from the end of the log.
    #[arg(long, default_value_t = 200)]
    pub lines: usize,
    /// The log to sample (default: `[source] file_path`).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Arguments of `sshwatch init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Sample log to detect the format from (default: /var/log/secure, else /var/log/auth.log).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Where to write the config (`-` for stdout).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub output: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `sshwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Parse and count, call nothing; print what would be sent.
    #[arg(long)]
    pub dry_run: bool,
    /// Old or rotated log files, oldest first.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of the hidden `generate-assets` subcommand.
#[derive(Debug, Args)]
pub struct GenerateAssetsArgs {
    /// Directory to write `sshwatch.1` and the completions into.
    #[arg(value_name = "DIR")]
    pub out_dir: PathBuf,
}
