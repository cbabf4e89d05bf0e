//! Generated assets for packaging: the man pages and shell completions, from the clap definitions.
//!
//! `sshwatch generate-assets DIR` writes them; `scripts/package.sh` gzips the pages and the
//! `.deb`/`.rpm` metadata in `Cargo.toml` installs everything from that directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The shells whose completions are packaged, with the file name `clap_complete` gives each.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "sshwatch.bash"),
    (Shell::Zsh, "_sshwatch"),
    (Shell::Fish, "sshwatch.fish"),
];

/// Writes `sshwatch.1`, one `sshwatch-SUBCOMMAND.1` per visible subcommand (the main page refers
/// to them) and the completions for bash, zsh and fish into `dir`, creating it if needed.
///
/// The files written are the ones [`expected_files`] lists.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into `{}`", dir.display()))?;
    let mut cmd = without_hidden_subcommands(Cli::command());
    for (shell, file) in SHELLS {
        let written =
            clap_complete::generate_to(shell, &mut cmd, "sshwatch", dir).with_context(|| {
                format!(
                    "cannot write the {shell} completion into `{}`",
                    dir.display()
                )
            })?;
        // A different name would break the paths in the package metadata: fail here, not there.
        anyhow::ensure!(
            written.file_name() == Some(file.as_ref()),
            "the {shell} completion was written as `{}`, expected `{file}`",
            written.display()
        );
    }
    Ok(())
}

/// `cmd` rebuilt without its hidden subcommands (`generate-assets`), which the completion generators
/// would offer otherwise; clap has no way to remove a subcommand in place.
fn without_hidden_subcommands(cmd: clap::Command) -> clap::Command {
    let mut visible = clap::Command::new("sshwatch")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(cmd.is_subcommand_required_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}

/// The files [`generate`] writes into `dir`: the man pages, then the completions.
pub fn expected_files(dir: &Path) -> Vec<PathBuf> {
    let cmd = Cli::command();
    let pages = std::iter::once("sshwatch.1".to_owned()).chain(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("sshwatch-{}.1", s.get_name())),
    );
    pages
        .chain(SHELLS.iter().map(|(_, file)| (*file).to_owned()))
        .map(|name| dir.join(name))
        .collect()
}
