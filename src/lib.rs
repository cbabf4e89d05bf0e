//! sshwatch: follow the SSH auth log, classify each line with CloudWatch-exact
//! filter patterns, ship the lines to CloudWatch Logs and publish per-minute counts.
//!
//! # Layout
//!
//! ```text
//! source (file / journal) ─▶ tally (filters, minutes) ─▶ batches ─▶ sink::logs ─▶ PutLogEvents
//!                                                          │ accepted counts        ▲ EMF events at a batch's head
//!                                 checkpoint ◀── ledger ◀──┘ ─▶ due minutes ────────┴─ or sink::metrics ─▶ PutMetricData
//! config ─▶ daemon wires it all · health talks to systemd · bootstrap creates alarms
//! ```
//!
//! ARCHITECTURE.md has the delivery protocol and the invariants.
//!
//! - [`pattern`]: the CloudWatch filter-pattern language; pure and total.
//! - [`classify`]: all configured patterns compiled together.
//! - [`config`]: the TOML file, checked once into [`config::Config`].
//! - [`offline`]: `test-pattern` and `classify`.
//! - [`source`]: the only code that reads the log (file tail, journal) and the checkpoint.
//! - [`tally`]: what events mean (repeat expansion, filters, near misses, per-minute counts); pure.
//! - [`counter`]: pure per-minute counts.
//! - [`sink`]: the only code that calls PutLogEvents and PutMetricData (and writes EMF events).
//! - [`daemon`]: `run`, the long-running service; [`shutdown`] is the one stop signal of its tasks;
//!   [`health`] talks to systemd; [`memory`] hands memory freed after a burst back to the system.
//! - [`format`], [`detector`], [`repeat`]: log-format detection, the silent-miss detector,
//!   `message repeated N times` expansion.
//! - [`bootstrap`], [`iam`], [`verify`]: the AWS-side setup and checks.
//! - [`init`], [`replay`]: format detection and backfill.
//! - [`aws`]: the only place that builds the SDK configuration; [`time`]: Unix time as sshwatch counts
//!   it; [`text`]: a log's bytes as lines and text.
//! - [`app`], [`cli`], [`logging`], [`assets`]: the command-line glue.

pub mod app;
pub mod assets;
pub(crate) mod aws;
pub(crate) mod bootstrap;
pub mod classify;
pub mod cli;
pub mod config;
pub mod counter;
pub mod daemon;
pub mod detector;
pub mod format;
pub mod health;
pub(crate) mod iam;
pub(crate) mod init;
pub(crate) mod logging;
pub(crate) mod memory;
pub(crate) mod offline;
pub mod pattern;
pub(crate) mod repeat;
pub(crate) mod replay;
pub mod shutdown;
pub mod sink;
pub mod source;
pub(crate) mod tally;
pub mod text;
pub mod time;
pub(crate) mod verify;
