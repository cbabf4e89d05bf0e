//! The integration tests, one binary: the real `sshwatch` binary and library against real moto servers,
//! real files, a private journald and a fault-injecting proxy (see `support/`).

mod support;

mod bootstrap;
mod conformance;
mod daemon;
mod formats;
mod journal;
mod lose_nothing;
mod offline;
mod packaging;
mod pattern_props;
mod replay;
mod sinks;
mod source;
mod verify;
