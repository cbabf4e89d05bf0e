//! The journald source against a real, private `systemd-journald`.
//!
//! Each test starts its own journald in a new mount namespace (`unshare -m`) with tmpfs over
//! `/run/systemd/journal` and `/run/log/journal`, so the host's journal is never touched. Real
//! `logger` (through the namespace's `/dev/log` socket, reached as `/proc/PID/root/…`) and
//! `systemd-cat` (inside the namespace via `nsenter`) write into it; the source reads the journal
//! files through `journalctl --directory=/proc/PID/root/run/log/journal`. Needs root (CI runs as root).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::{Config, StartPosition};
use sshwatch::format::{LineFormat, parse_envelope};
use sshwatch::source::Line;
use sshwatch::source::Position;
use sshwatch::source::journal::{JournalOptions, JournalSource};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A private journald, killed (and its namespace with its tmpfs gone) on drop.
#[derive(Debug)]
struct PrivateJournald {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl PrivateJournald {
    fn start() -> PrivateJournald {
        PrivateJournald::start_in(None, None)
    }

    /// A private journald that stamps its entries with `boot_id` (bind-mounted over the kernel's, as
    /// systemd-nspawn does) and writes them into `journal_dir` (else a tmpfs): two of them one after the
    /// other on one directory, with two boot ids, are a reboot.
    fn start_in(boot_id: Option<&str>, journal_dir: Option<&Path>) -> PrivateJournald {
        assert!(
            Path::new(JOURNALD).exists(),
            "{JOURNALD} is missing: apt-get install systemd"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let boot = match boot_id {
            Some(id) => {
                let file = dir.path().join("boot_id");
                std::fs::write(&file, format!("{id}\n")).expect("write boot_id");
                format!(
                    "mount --bind {} /proc/sys/kernel/random/boot_id\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let journal = match journal_dir {
            Some(d) => format!("mount --bind {} /run/log/journal\n", d.display()),
            None => "mount -t tmpfs tmpfs /run/log/journal\n".to_string(),
        };
        let script = format!(
            "set -e\n\
             {boot}\
             mkdir -p /run/systemd/journal /run/log/journal\n\
             mount -t tmpfs tmpfs /run/systemd/journal\n\
             {journal}\
             if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi\n\
             echo $$ > {}\n\
             exec {JOURNALD}\n",
            pid_file.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare (util-linux)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "the private journald did not start (needs root and unshare)"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        PrivateJournald::wait_ready(
            PrivateJournald {
                child,
                pid,
                _dir: dir,
            },
            deadline,
        )
    }

    fn wait_ready(j: PrivateJournald, deadline: Instant) -> PrivateJournald {
        while !(j.socket("dev-log").exists() && j.socket("stdout").exists()) {
            assert!(
                Instant::now() < deadline,
                "the private journald did not create its sockets"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        j
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.root().join("run/systemd/journal").join(name)
    }

    fn options(&self, start: StartPosition) -> JournalOptions {
        JournalOptions {
            journalctl: PathBuf::from("journalctl"),
            directory: Some(self.root().join("run/log/journal")),
            start,
        }
    }

    /// `logger -t TAG --id=PID` with one message per line of `messages`, through the syslog socket.
    fn logger(&self, tag: &str, pid: u32, messages: &[&str]) {
        let mut child = Command::new("logger")
            .arg("--socket")
            .arg(self.socket("dev-log"))
            .args(["-t", tag, &format!("--id={pid}")])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run logger");
        let mut stdin = child.stdin.take().expect("stdin");
        for m in messages {
            writeln!(stdin, "{m}").expect("write to logger");
        }
        drop(stdin);
        assert!(child.wait().expect("logger").success());
    }

    /// `systemd-cat -t TAG` inside the namespace (its stream socket path is fixed).
    fn systemd_cat(&self, tag: &str, message: &str) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "systemd-cat", "-t", tag])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nsenter systemd-cat");
        writeln!(child.stdin.take().expect("stdin"), "{message}").expect("write");
        assert!(child.wait().expect("systemd-cat").success());
    }
}

impl Drop for PrivateJournald {
    fn drop(&mut self) {
        // The test started this process; kill exactly it.
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines until `n` arrived (or panics after 30 s).
async fn read_lines(source: &mut JournalSource, n: usize) -> Vec<Line> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let batch = tokio::time::timeout_at(deadline, source.next_lines(4096))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} journal lines arrived", out.len()))
            .expect("next_lines")
            .lines;
        assert!(!batch.is_empty());
        out.extend(batch);
    }
    out
}

/// `(InvalidUser, FailedPassword, ClosedConnection)` of the seed filters over `lines`.
fn seed_counts<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> (u64, u64, u64) {
    let config = Config::defaults();
    let classifier = Classifier::new(&config.metric_filters);
    let mut scratch = Scratch::default();
    let mut c = [0u64; 3];
    for l in lines {
        classifier.classify(l, &mut scratch, |i, _| c[i] += 1);
    }
    (c[0], c[1], c[2])
}

/// `(tag without pid, pid, message)` of each line of the rsyslog-traditional capture.
fn traditional_events(file: &str) -> (Vec<String>, Vec<(String, u32, String)>) {
    let text = std::fs::read_to_string(crate::support::sshd_fixture(file)).expect("fixture");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let events = lines
        .iter()
        .map(|l| {
            let env = parse_envelope(l).expect("traditional line");
            let tag = env.tag.expect("tag").trim_end_matches(':');
            let (ident, pid) = tag.split_once('[').expect("ident[pid]");
            let pid: u32 = pid.trim_end_matches(']').parse().expect("pid");
            (ident.to_string(), pid, env.message(l).to_string())
        })
        .collect();
    (lines, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_lines_classify_like_the_rsyslog_traditional_file() {
    let journald = PrivateJournald::start();
    let file = "lab-openssh10.5p1-penalties-off-traditional.auth.log";
    let (file_lines, events) = traditional_events(file);

    // Follow from the start: also what arrives while following.
    let mut source = JournalSource::with_options(journald.options(StartPosition::Beginning), None)
        .expect("source");
    // Same events, same order: one logger per run of lines under one ident[pid].
    let mut i = 0;
    while i < events.len() {
        let (ident, pid, _) = &events[i];
        let mut j = i;
        while j < events.len() && events[j].0 == *ident && events[j].1 == *pid {
            j += 1;
        }
        let msgs: Vec<&str> = events[i..j].iter().map(|e| e.2.as_str()).collect();
        journald.logger(ident, *pid, &msgs);
        i = j;
    }
    // Not sshd: never read.
    journald.logger(
        "CRON",
        77,
        &["pam_unix(cron:session): Invalid user in a cron line"],
    );
    // systemd-cat's stream transport, under the old `sshd` identifier.
    journald.systemd_cat("sshd", "Invalid user catuser from 192.0.2.9 port 4242");

    let lines = read_lines(&mut source, events.len() + 1).await;
    assert_eq!(lines.len(), events.len() + 1);
    for (line, (ident, pid, message)) in lines.iter().zip(&events) {
        let text = String::from_utf8(line.bytes.to_vec()).expect("utf8");
        let env = parse_envelope(&text).unwrap_or_else(|| panic!("not a syslog line: {text}"));
        assert!(
            matches!(
                env.format,
                LineFormat::Traditional | LineFormat::TraditionalPadded
            ),
            "{text}"
        );
        assert_eq!(env.tag, Some(format!("{ident}[{pid}]:").as_str()), "{text}");
        // journald drops the trailing blank rsyslog keeps; the rest is the same text.
        assert_eq!(env.message(&text), message.trim_end(), "{text}");
        assert!(matches!(&line.end, Position::Journal { cursor } if cursor.starts_with("s=")));
    }
    let last = String::from_utf8_lossy(&lines[events.len()].bytes).into_owned();
    assert!(
        last.contains(" sshd: Invalid user catuser") || last.contains(" sshd["),
        "{last}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| String::from_utf8_lossy(&l.bytes).contains("cron"))
    );

    // The seed patterns count the rendered lines exactly like the rsyslog file of the same events.
    let expected = seed_counts(file_lines.iter().map(|l| l.as_bytes()));
    assert_eq!(expected, (11, 35, 17));
    let got = seed_counts(lines[..events.len()].iter().map(|l| &l.bytes[..]));
    assert_eq!(got, expected);
    assert_eq!(
        seed_counts(lines.iter().map(|l| &l.bytes[..])),
        (12, 35, 17)
    );

    // Resuming at a line's cursor yields the line after it, and nothing before.
    let resume = lines[49].end.clone();
    drop(source);
    let mut resumed =
        JournalSource::with_options(journald.options(StartPosition::End), Some(resume))
            .expect("source");
    let again = read_lines(&mut resumed, 1).await;
    assert_eq!(again[0].bytes, lines[50].bytes);
    assert_eq!(again[0].end, lines[50].end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reboot_the_entries_of_the_earlier_boot_after_the_cursor_are_read() {
    // journalctl --follow matches the newest boot only (systemd 250 and later), and --after-cursor skips
    // the first entry when the cursor's is of another boot: the daemon's source must read both.
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).expect("journal dir");
    let options = |start| JournalOptions {
        journalctl: PathBuf::from("journalctl"),
        directory: Some(journal.clone()),
        start,
    };
    let before: Vec<String> = (0..6)
        .map(|i| format!("Invalid user u{i} from 192.0.2.{i} port 22"))
        .collect();
    let after: Vec<String> = (0..2)
        .map(|i| format!("Failed password for root from 198.51.100.{i} port 22 ssh2"))
        .collect();
    let boot1 =
        PrivateJournald::start_in(Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), Some(&journal));
    boot1.logger(
        "sshd",
        20,
        &before.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut first =
        JournalSource::with_options(options(StartPosition::Beginning), None).expect("source");
    let lines = read_lines(&mut first, 6).await;
    drop(first);
    drop(boot1);
    let boot2 =
        PrivateJournald::start_in(Some("1e2d3c4b-5a69-7887-96a5-b4c3d2e1f00f"), Some(&journal));
    boot2.logger(
        "sshd-session",
        21,
        &after.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // The checkpoint holds the second entry of the first boot.
    let mut resumed =
        JournalSource::with_options(options(StartPosition::End), Some(lines[1].end.clone()))
            .expect("source");
    let rest = read_lines(&mut resumed, 6).await;
    let text: Vec<String> = rest
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
    let expected = before[2..]
        .iter()
        .map(|m| format!(" sshd[20]: {m}"))
        .chain(after.iter().map(|m| format!(" sshd-session[21]: {m}")));
    for (t, e) in text.iter().zip(expected) {
        assert!(t.ends_with(&e), "{text:#?}");
    }
    assert_eq!(rest[3].end, lines[5].end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_old_entries_and_batches_respect_max_bytes() {
    let journald = PrivateJournald::start();
    journald.logger("sshd", 10, &["Invalid user old from 192.0.2.1 port 1"]);
    // Let journald write it before the source looks for the newest entry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut source =
        JournalSource::with_options(journald.options(StartPosition::End), None).expect("source");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new: Vec<String> = (0..20)
        .map(|i| format!("Failed password for root from 192.0.2.{i} port 22 ssh2"))
        .collect();
    let refs: Vec<&str> = new.iter().map(String::as_str).collect();
    journald.logger("sshd-session", 11, &refs);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 20 {
        // A small budget: at least one line per batch, never more than fits.
        let batch = tokio::time::timeout_at(deadline, source.next_lines(150))
            .await
            .expect("lines in time")
            .expect("next_lines")
            .lines;
        assert!(!batch.is_empty());
        let size: usize = batch.iter().map(|l| l.bytes.len()).sum();
        assert!(
            batch.len() == 1 || size <= 150,
            "{size} bytes in {} lines",
            batch.len()
        );
        got.extend(batch);
    }
    let text: Vec<String> = got
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
    assert!(
        !text.iter().any(|t| t.contains("Invalid user old")),
        "{text:#?}"
    );
    for (t, m) in text.iter().zip(&new) {
        assert!(t.ends_with(&format!(" sshd-session[11]: {m}")), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_ships_journal_lines_that_count_like_the_traditional_file() {
    let journald = PrivateJournald::start();
    let moto = crate::support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = "lab-openssh10.5p1-penalties-off-traditional.auth.log";
    let (file_lines, events) = traditional_events(file);
    for (ident, pid, message) in &events {
        journald.logger(ident, *pid, &[message.as_str()]);
    }
    let config = dir.path().join("sshwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\njournal = true\nstart_position = \"beginning\"\nstate_dir = {:?}\n\
             [logs]\nlog_group_name = \"journal-test\"\nlog_stream_name = \"host-j\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .expect("config");
    // The daemon runs inside the namespace, where journalctl finds the private journal at its
    // usual place; the network is the host's, so moto is reachable.
    let stderr = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
    let mut daemon = Command::new("nsenter")
        .args(["-t", &journald.pid.to_string(), "-m", "--"])
        .arg(crate::support::sshwatch_bin())
        .args(["run", "--config"])
        .arg(&config)
        .envs(moto.env())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("run the daemon");

    let sdk = moto.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let deadline = Instant::now() + Duration::from_secs(60);
    let shipped: Vec<String> = loop {
        let got = logs
            .get_log_events()
            .log_group_name("journal-test")
            .log_stream_name("host-j")
            .start_from_head(true)
            .send()
            .await;
        let messages: Vec<String> = got
            .map(|r| {
                r.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_string))
                    .filter(|m| !crate::support::is_emf(m))
                    .collect()
            })
            .unwrap_or_default();
        if messages.len() >= events.len() || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let status = daemon.wait().expect("daemon exit");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    assert_eq!(shipped.len(), events.len(), "daemon log:\n{log}");
    assert!(status.success(), "daemon exit {status}; log:\n{log}");
    for (line, (ident, pid, message)) in shipped.iter().zip(&events) {
        let env = parse_envelope(line).unwrap_or_else(|| panic!("not a syslog line: {line}"));
        assert_eq!(env.tag, Some(format!("{ident}[{pid}]:").as_str()), "{line}");
        assert_eq!(env.message(line), message.trim_end(), "{line}");
    }
    let expected = seed_counts(file_lines.iter().map(|l| l.as_bytes()));
    assert_eq!(seed_counts(shipped.iter().map(|l| l.as_bytes())), expected);
}
