//! The `sshwatch` binary: parse the command line, hand it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sshwatch::app::main(sshwatch::cli::Cli::parse())
}
