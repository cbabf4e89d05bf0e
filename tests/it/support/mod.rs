//! Shared test harness: a real moto server on a free loopback port, and the `sshwatch` binary wired to it.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `sshwatch` binary under test.
pub fn sshwatch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sshwatch")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// `rel` under the repository this test runs in: `cargo test` sets `CARGO_MANIFEST_DIR` when it runs the
/// test too, which is right when a shared `CARGO_TARGET_DIR` holds a build made from another clone; the
/// directory the test was built in otherwise.
pub fn repo(rel: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join(rel)
}

/// The `moto_server` executable: `$SSHWATCH_MOTO_SERVER`, the repo's `.venv`, or `PATH`.
fn moto_server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SSHWATCH_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = repo(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// Reads moto's stderr to its end (its request log must not fill the pipe) and sends the port of its
/// ` * Running on http://127.0.0.1:PORT` line.
fn announced_port(stderr: ChildStderr) -> mpsc::Receiver<u16> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let port = line.split("http://127.0.0.1:").nth(1).and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u16>().ok()
            });
            if let Some(port) = port
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(port);
            }
        }
    });
    rx
}

/// A moto server, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    /// Starts a fresh server and waits until it accepts connections. The server picks its own port
    /// (`-p 0`) and says which on stderr: a port chosen here and bound later could be taken meanwhile by
    /// another test's server, which this one would then share.
    pub fn start() -> Moto {
        let mut last_err = String::new();
        for _ in 0..3 {
            let child = Command::new(moto_server_path())
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot start moto_server ({e}); run .ci/run or `python3 -m venv .venv && .venv/bin/pip install 'moto[server]'`"
                ),
            };
            let port = child.stderr.take().map(announced_port);
            match port.and_then(|rx| rx.recv_timeout(Duration::from_secs(30)).ok()) {
                Some(port) => {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < deadline {
                        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                            return Moto {
                                child,
                                port,
                                endpoint: format!("http://127.0.0.1:{port}"),
                            };
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    last_err = format!("moto_server announced port {port} but does not accept");
                }
                None => {
                    last_err = match child.try_wait() {
                        Ok(Some(status)) => format!("moto_server exited with {status}"),
                        _ => "moto_server did not announce its port within 30 s".to_owned(),
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start: {last_err}");
    }

    /// Environment for an AWS SDK client (the binary or the test's own) aimed at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        aws_env(&self.endpoint)
    }

    /// An SDK configuration aimed at this server, for reading back what arrived.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a process that talks to `endpoint` with dummy credentials.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
    ]
}

/// An SDK configuration aimed at `endpoint`, retries off, for the test's own reads.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// A `Command` for the binary, detached from any systemd of the test's own (no `NOTIFY_SOCKET`, no
/// `JOURNAL_STREAM`: logs go to stderr) and in UTC.
pub fn bin() -> Command {
    let mut cmd = Command::new(sshwatch_bin());
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env("TZ", "UTC");
    cmd
}

/// A `Command` for the binary with the AWS environment of `endpoint`.
pub fn sshwatch(endpoint: &str) -> Command {
    let mut cmd = bin();
    for (k, v) in aws_env(endpoint) {
        cmd.env(k, v);
    }
    cmd
}

/// A file of `tests/fixtures/sshd/`.
pub fn sshd_fixture(name: &str) -> PathBuf {
    repo("tests/fixtures/sshd").join(name)
}

/// The non-empty lines of a file under the repository root.
pub fn fixture_lines(path: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("fixture `{path}`: {e}"));
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The TestMetricFilter stub for `verify` tests.
pub mod tmf_stub;

/// A scripted fault-injecting proxy (throttling, 5xx, InvalidParameter, drops) for the sink tests.
pub mod proxy;

/// Whether a log event is one of the daemon's embedded-metric-format events (they ride in the lines'
/// stream): a JSON object with an `_aws` member. No log line starts with `{`.
pub fn is_emf(message: &str) -> bool {
    message.starts_with('{') && message.contains("\"_aws\"")
}
