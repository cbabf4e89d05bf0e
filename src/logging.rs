//! Tracing setup: structured fields to journald under systemd, plain text to stderr otherwise.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `level` is a level or a tracing directive.
///
/// journald is chosen when stderr is already connected to it (systemd sets
/// `JOURNAL_STREAM`), so `journalctl -u sshwatch` shows structured fields.
pub(crate) fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_journald && let Ok(journald) = tracing_journald::layer() {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("sshwatch".to_string()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
