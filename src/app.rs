//! Command dispatch: load the config, run the subcommand, map errors to exit statuses.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{Cli, Command, DEFAULT_CONFIG};
use crate::config::{Config, ConfigError, EXIT_CONFIG};
use crate::pattern::PatternError;

/// Exit status of `test-pattern` for an invalid pattern (as the AWS CLI's usage errors).
pub const EXIT_INVALID_PATTERN: u8 = 2;

/// Runs one command line to completion and returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    crate::logging::init(&cli.log_level);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Prints an error chain on stderr and picks the exit status for it.
fn report(e: &anyhow::Error) -> ExitCode {
    if let Some(config) = e.downcast_ref::<ConfigError>() {
        eprintln!("sshwatch: {config}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    if let Some(pattern) = e.downcast_ref::<PatternError>() {
        eprintln!("sshwatch: invalid filter pattern: {pattern}");
        return ExitCode::from(EXIT_INVALID_PATTERN);
    }
    eprintln!("sshwatch: {e:#}");
    ExitCode::FAILURE
}

/// Loads `path`; only the default path may be missing (then the seed defaults apply).
pub fn load_config(path: &std::path::Path) -> Result<Config, ConfigError> {
    Config::load(path, path == std::path::Path::new(DEFAULT_CONFIG))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The daemon's runtime: one thread runs every task (plus tokio's pool for blocking calls such as the
/// checkpoint's fsync). The work is a pipeline with CloudWatch as the slow end, so a second worker
/// thread buys no throughput, only hand-offs between threads.
fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// SIGTERM and SIGINT, caught from start-up on (before READY=1): the first stops `shutdown`, a second
/// aborts it (gives up on CloudWatch calls still failing).
fn stop_on_signals(shutdown: crate::shutdown::Shutdown) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        for _ in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if shutdown.is_stopping() {
                tracing::warn!("second signal: giving up on pending AWS calls now");
                shutdown.abort();
            } else {
                shutdown.stop();
            }
        }
    });
    Ok(())
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    match command {
        Command::TestPattern(args) => {
            crate::offline::test_pattern(&args, std::io::stdin().lock(), &mut stdout.lock())?;
        }
        Command::Classify(args) => {
            let config = match &args.config {
                Some(path) => Config::load(path, false)?,
                None => Config::defaults(),
            };
            crate::offline::classify(&config, &args.files, &mut stdout.lock())?;
        }
        Command::Run(args) => {
            let config = load_config(&args.config.config)?;
            crate::memory::use_one_arena();
            daemon_runtime()?.block_on(async {
                let shutdown = crate::shutdown::Shutdown::new();
                stop_on_signals(shutdown.clone())?;
                crate::daemon::run(config, shutdown).await
            })?;
        }
        Command::Bootstrap(args) => {
            let config = load_config(&args.config.config)?;
            runtime()?.block_on(crate::bootstrap::run(
                &config,
                args.dry_run,
                &mut stdout.lock(),
            ))?;
        }
        Command::IamPolicy(args) => {
            let config = load_config(&args.config)?;
            crate::iam::print(&config, &mut stdout.lock())?;
        }
        Command::Verify(args) => {
            let config = load_config(&args.config.config)?;
            let agree = runtime()?.block_on(crate::verify::run(
                &config,
                args.lines,
                args.file.as_deref(),
                &mut stdout.lock(),
            ))?;
            if !agree {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Init(args) => crate::init::run(&args, &mut stdout.lock())?,
        Command::Replay(args) => {
            let config = load_config(&args.config.config)?;
            runtime()?.block_on(crate::replay::run(&config, &args.files, args.dry_run))?;
        }
        Command::GenerateAssets(args) => crate::assets::generate(&args.out_dir)?,
    }
    Ok(ExitCode::SUCCESS)
}
