//! Packaging inputs stay consistent: `generate-assets` output, the package metadata in `Cargo.toml`, the systemd unit.
//!
//! Building and installing the packages themselves is `scripts/package-test.sh` (root, Debian).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sshwatch::cli::DEFAULT_CONFIG;
use sshwatch::config::EXIT_CONFIG;

use crate::support::repo;

fn generate(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_sshwatch"))
        .arg("generate-assets")
        .arg(dir)
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run sshwatch generate-assets");
    assert!(
        out.status.success(),
        "generate-assets failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The visible subcommands, as the user types them.
fn subcommands() -> Vec<String> {
    use clap::CommandFactory as _;
    sshwatch::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

#[test]
fn generate_assets_writes_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("assets");
    generate(&out);

    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut expected: Vec<String> = sshwatch::assets::expected_files(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    let subs = subcommands();
    assert!(subs.len() >= 8, "subcommands: {subs:?}");

    let main_page = read(&out.join("sshwatch.1"));
    assert!(main_page.contains("\n.TH sshwatch 1 "), "{main_page}");
    for sub in &subs {
        let roff_name = format!("sshwatch\\-{}(1)", sub.replace('-', "\\-"));
        assert!(
            main_page.contains(&roff_name),
            "sshwatch.1 does not refer to {roff_name}"
        );
        let page = read(&out.join(format!("sshwatch-{sub}.1")));
        assert!(page.contains(&format!(".TH sshwatch-{sub} 1 ")), "{page}");
    }
    let test_pattern = read(&out.join("sshwatch-test-pattern.1"));
    assert!(
        test_pattern.contains("\\-\\-filter\\-pattern"),
        "{test_pattern}"
    );

    let bash = read(&out.join("sshwatch.bash"));
    let zsh = read(&out.join("_sshwatch"));
    let fish = read(&out.join("sshwatch.fish"));
    assert!(bash.contains("complete -F _sshwatch"), "{bash}");
    assert_eq!(zsh.lines().next(), Some("#compdef sshwatch"));
    assert!(fish.contains("complete -c sshwatch"), "{fish}");
    for sub in &subs {
        for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(
                text.contains(sub.as_str()),
                "{shell} completion lacks `{sub}`"
            );
        }
    }
    // The packaging-only subcommand is offered nowhere.
    for (name, text) in [
        ("sshwatch.1", &main_page),
        ("bash", &bash),
        ("zsh", &zsh),
        ("fish", &fish),
    ] {
        assert!(
            !text.contains("generate-assets"),
            "{name} offers the hidden `generate-assets`"
        );
    }
}

#[test]
fn generate_assets_reports_an_unwritable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sshwatch"))
        .arg("generate-assets")
        .arg(&file)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("`{}`", file.display())),
        "{stderr}"
    );
}

/// Package assets as (source, dest).
type Assets = Vec<(String, String)>;

/// The `assets` of `[package.metadata.deb]` and of `[package.metadata.generate-rpm]`.
fn package_assets() -> (Assets, Assets) {
    let manifest: toml::Value = toml::from_str(&read(&repo("Cargo.toml"))).unwrap();
    let metadata = &manifest["package"]["metadata"];
    let deb = metadata["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let rpm = metadata["generate-rpm"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["source"].as_str().unwrap().to_owned(),
                a["dest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (deb, rpm)
}

/// Whether `name` matches `pattern`, whose only wildcard is one `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => pattern == name,
    }
}

#[test]
fn package_metadata_names_files_that_exist_or_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let generated: Vec<String> = sshwatch::assets::expected_files(dir.path())
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            // scripts/package.sh gzips the pages and adds a stripped copy of the binary.
            if name.ends_with(".1") {
                format!("target/assets/{name}.gz")
            } else {
                format!("target/assets/{name}")
            }
        })
        // It also copies the docs into target/assets/doc/ (README.md at least, once it exists).
        .chain(
            [
                "target/assets/sshwatch",
                "target/release/sshwatch",
                "target/assets/doc/README.md",
            ]
            .map(str::to_owned),
        )
        .collect();
    let (deb, rpm) = package_assets();
    for (kind, assets) in [("deb", &deb), ("rpm", &rpm)] {
        for (source, dest) in assets {
            if source.starts_with("target/") {
                let n = generated.iter().filter(|g| matches(source, g)).count();
                assert!(
                    n > 0,
                    "{kind} asset `{source}` is neither built nor generated"
                );
            } else if !source.contains('*') {
                assert!(
                    repo(source).is_file(),
                    "{kind} asset `{source}` does not exist"
                );
            }
            if source.contains('*') {
                assert!(
                    dest.ends_with('/'),
                    "{kind}: a glob needs a directory destination, got `{dest}`"
                );
            }
        }
        let dests: Vec<&str> = assets
            .iter()
            .map(|(_, d)| d.trim_start_matches('/'))
            .collect();
        for want in [
            "usr/bin/",
            "etc/sshwatch/sshwatch.toml",
            "usr/share/man/man1/",
            "usr/share/bash-completion/completions/sshwatch",
        ] {
            assert!(
                dests.iter().any(|d| d.starts_with(want)),
                "{kind} installs nothing at {want}"
            );
        }
    }
    // Every generated page is packaged by a glob.
    for g in generated.iter().filter(|g| g.ends_with(".1.gz")) {
        assert!(
            deb.iter().any(|(s, _)| matches(s, g)),
            "the .deb does not package {g}"
        );
        assert!(
            rpm.iter().any(|(s, _)| matches(s, g)),
            "the .rpm does not package {g}"
        );
    }
    // The config in the packages is the one the daemon reads by default.
    let config_dest = DEFAULT_CONFIG.trim_start_matches('/');
    assert!(
        deb.iter()
            .any(|(s, d)| s == "config/sshwatch.toml" && d == config_dest)
    );
    assert!(
        rpm.iter()
            .any(|(s, d)| s == "config/sshwatch.toml" && d == DEFAULT_CONFIG)
    );
}

#[test]
fn maintainer_scripts_are_executable_shell_scripts() {
    use std::os::unix::fs::PermissionsExt as _;
    for name in ["postinst", "prerm", "postrm"] {
        let path = repo(&format!("packaging/deb/{name}"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{} is not executable", path.display());
        assert!(read(&path).starts_with("#!/bin/sh\n"), "{}", path.display());
    }
    for name in ["pre.sh", "post.sh", "preun.sh", "postun.sh"] {
        assert!(
            repo(&format!("packaging/rpm/{name}")).is_file(),
            "packaging/rpm/{name}"
        );
    }
    for path in [
        "packaging/deb/postinst",
        "packaging/deb/prerm",
        "packaging/deb/postrm",
        "packaging/rpm/post.sh",
    ] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(repo(path))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `[Service]` settings of the unit; repeated keys keep every value.
fn unit_service_settings() -> BTreeMap<String, Vec<String>> {
    let text = read(&repo("systemd/sshwatch.service"));
    let mut section = String::new();
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            settings.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    settings
}

#[test]
fn unit_matches_the_daemon() {
    let s = unit_service_settings();
    let one = |k: &str| -> &str {
        let v = s.get(k).unwrap_or_else(|| panic!("the unit has no {k}="));
        assert_eq!(v.len(), 1, "{k}= is set {} times", v.len());
        &v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert!(one("WatchdogSec").ends_with('s'));
    assert_eq!(one("Restart"), "on-failure");
    // Config errors do not loop: the unit names the exit status the binary uses for them.
    assert_eq!(one("RestartPreventExitStatus"), EXIT_CONFIG.to_string());
    assert_eq!(
        one("ExecStart"),
        format!("/usr/bin/sshwatch run --config {DEFAULT_CONFIG}")
    );
    assert!(
        !s.contains_key("ExecReload"),
        "the daemon does not reload on SIGHUP"
    );
    assert_eq!(one("User"), "sshwatch");
    assert_eq!(one("Group"), "sshwatch");
    assert_eq!(one("AmbientCapabilities"), "CAP_DAC_READ_SEARCH");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_DAC_READ_SEARCH");
    assert_eq!(one("StateDirectory"), "sshwatch");
    assert_eq!(one("StateDirectoryMode"), "0700");
    assert_eq!(one("ConfigurationDirectory"), "sshwatch");
    // AF_UNIX for journald and sd_notify, AF_INET/AF_INET6 for AWS; IMDS must stay reachable.
    assert_eq!(one("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
    assert!(!s.contains_key("IPAddressDeny") && !s.contains_key("PrivateNetwork"));
    // The journal source runs `journalctl --follow`, which reads /proc/sys/kernel/random/boot_id at start;
    // ProcSubset=pid hides it and journalctl exits at once (scripts/host-test.sh, scenario c).
    assert!(
        !s.contains_key("ProcSubset"),
        "ProcSubset= hides /proc/sys/kernel/random/boot_id from journalctl --follow"
    );
    // The state directory is where the default config keeps its checkpoint.
    let defaults = sshwatch::config::Config::defaults();
    assert_eq!(
        defaults.source.state_dir,
        Path::new("/var/lib").join(one("StateDirectory"))
    );
}
