//! End-to-end tests of `sshwatch run`: the real binary, a real moto server over HTTP, temp files, and what
//! arrived read back through the AWS SDK.
//!
//! Metric assertions sum every minute's datapoints, so they do not depend on where the wall-clock minute
//! boundaries fall; SIGTERM publishes the open minute, so a test does not wait for minutes to close.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::proxy::{Fault, Proxy};
use crate::support::{Moto, sdk_config_for, sshwatch};
use aws_sdk_cloudwatch::types::Statistic;
use aws_smithy_types::DateTime;
use sshwatch::classify::{Classifier, Scratch};
use sshwatch::config::Config;

pub(crate) const GROUP: &str = "sshwatch-test";
pub(crate) const STREAM: &str = "host-a";
/// The seed's three metrics and the heartbeat, in the `SSH` namespace.
pub(crate) const METRICS: [&str; 3] = [
    "InvalidUserMetrics",
    "FailedPasswordMetrics",
    "ClosedConnectionMetrics",
];
pub(crate) const HEARTBEAT: &str = "LinesRead";
/// What ends each piece of a line too long for one CloudWatch event but the last.
pub(crate) const MARKER: &str = sshwatch::sink::batch::CONTINUED_MARKER;
/// Real sshd lines (OpenSSH 9.2, rsyslog's traditional format), with failed passwords, invalid users and
/// closed connections.
pub(crate) const FIXTURE: &str =
    "tests/fixtures/sshd/lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log";
pub(crate) const FIXTURE_2: &str =
    "tests/fixtures/sshd/lab-openssh10.5p1-penalties-off-traditional.auth.log";

/// `n` distinct real sshd lines: the fixture's lines in turn, each with its sequence number appended.
pub(crate) fn numbered(n: usize) -> Vec<String> {
    let base = crate::support::fixture_lines(FIXTURE);
    (0..n)
        .map(|i| format!("{} seq={i}", base[i % base.len()]))
        .collect()
}

/// A temp dir with a log, a state dir and a config for them.
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) log: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) config_text: String,
}

impl Env {
    /// A config whose metrics go through PutMetricData (which moto stores), plus `extra` in `[metrics]`.
    pub(crate) fn new(extra: &str) -> Env {
        Env::with_transport("put_metric_data", extra)
    }

    pub(crate) fn with_transport(transport: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("secure");
        let state = dir.path().join("state");
        let config = dir.path().join("sshwatch.toml");
        let config_text = format!(
            r#"
[source]
file_path = "{}"
state_dir = "{}"
start_position = "beginning"
poll_interval_seconds = 0.1
journal = false

[logs]
log_group_name = "{GROUP}"
log_stream_name = "{STREAM}"
force_flush_interval = 0.2

[metrics]
grace_seconds = 1
publish_spread_seconds = 0
transport = "{transport}"
{extra}
"#,
            log.display(),
            state.display()
        );
        fs::write(&config, &config_text).expect("write config");
        Env {
            dir,
            log,
            state,
            config,
            config_text,
        }
    }

    pub(crate) fn append(&self, lines: &[String]) {
        append_to(&self.log, lines);
    }

    pub(crate) fn start(&self, endpoint: &str) -> Daemon {
        self.start_with(endpoint, &[])
    }

    pub(crate) fn start_with(&self, endpoint: &str, env: &[(&str, String)]) -> Daemon {
        let stderr = self.dir.path().join(format!("stderr-{}.log", now_nanos()));
        let mut cmd = sshwatch(endpoint);
        cmd.arg("run").arg("--config").arg(&self.config);
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn sshwatch");
        Daemon { child, stderr }
    }

    /// Expected sums per metric for `lines`, from the library's own classifier and the config's filters.
    pub(crate) fn expected(&self, lines: &[String]) -> BTreeMap<String, f64> {
        let config = Config::from_toml_str(&self.config_text, None).expect("config");
        let classifier = Classifier::new(&config.metric_filters);
        let mut scratch = Scratch::default();
        let mut sums: BTreeMap<String, f64> = config
            .metric_filters
            .iter()
            .map(|f| (f.metric_name.clone(), 0.0))
            .collect();
        for l in lines {
            classifier.classify(l.as_bytes(), &mut scratch, |i, v| {
                *sums.get_mut(&config.metric_filters[i].metric_name).unwrap() += v.unwrap_or(0.0);
            });
        }
        sums
    }
}

pub(crate) fn append_to(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).expect("append");
}

pub(crate) fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A running `sshwatch run`, killed on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) stderr: PathBuf,
}

impl Daemon {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// SIGTERM, then the exit status, which must come within 10 s.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        let started = Instant::now();
        let status = self.wait(Duration::from_secs(15));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "exit took {took:?}\n{}",
            self.stderr()
        );
        status
    }

    pub(crate) fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    pub(crate) fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sshwatch did not exit\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every log line of the test stream, oldest first (empty when the stream does not exist yet): its events
/// but the EMF events of the metrics.
pub(crate) async fn events(endpoint: &str) -> Vec<String> {
    stream_events(endpoint)
        .await
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| !crate::support::is_emf(m))
        .collect()
}

/// Every event of the test stream, `(timestamp, message)`, oldest first.
pub(crate) async fn stream_events(endpoint: &str) -> Vec<(i64, String)> {
    let client = aws_sdk_cloudwatchlogs::Client::new(&sdk_config_for(endpoint).await);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = client
            .get_log_events()
            .log_group_name(GROUP)
            .log_stream_name(STREAM)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        let Ok(resp) = resp else { return out };
        let page = resp.events();
        if page.is_empty() {
            return out;
        }
        out.extend(page.iter().map(|e| {
            (
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_string(),
            )
        }));
        let next = resp.next_forward_token().map(str::to_string);
        if next.is_none() || next == token {
            return out;
        }
        token = next;
    }
}

/// Polls until at least `n` events arrived (or `timeout`), then returns them all.
pub(crate) async fn wait_for_events(endpoint: &str, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = events(endpoint).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sum, number of datapoints, and number of minutes with datapoints of `SSH/name` over the last hours.
pub(crate) async fn metric(endpoint: &str, name: &str) -> (f64, f64, usize) {
    let client = aws_sdk_cloudwatch::Client::new(&sdk_config_for(endpoint).await);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let resp = client
        .get_metric_statistics()
        .namespace("SSH")
        .metric_name(name)
        .start_time(DateTime::from_secs(now - 3 * 3600))
        .end_time(DateTime::from_secs(now + 3600))
        .period(60)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .expect("GetMetricStatistics");
    let points = resp.datapoints();
    (
        points.iter().filter_map(|p| p.sum()).sum(),
        points.iter().filter_map(|p| p.sample_count()).sum(),
        points.len(),
    )
}

/// Asserts that moto holds exactly the expected sum for each metric, and `lines` for the heartbeat.
pub(crate) async fn assert_metrics(endpoint: &str, expected: &BTreeMap<String, f64>, lines: usize) {
    for (name, want) in expected {
        let (sum, _, _) = metric(endpoint, name).await;
        assert_eq!(sum, *want, "sum of {name}");
    }
    let (sum, _, _) = metric(endpoint, HEARTBEAT).await;
    assert_eq!(sum, lines as f64, "sum of {HEARTBEAT}");
}

/// Asserts `got == want` for long line lists, printing where they first differ rather than both lists.
#[track_caller]
pub(crate) fn assert_lines(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} lines, want {}; first difference at {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(at).map(|l| l.chars().take(120).collect::<String>()),
        want.get(at)
            .map(|l| l.chars().take(120).collect::<String>()),
    );
}

/// The expected counts must exercise every metric, or the metric assertions prove little.
pub(crate) fn assert_all_metrics_exercised(expected: &BTreeMap<String, f64>) {
    for name in METRICS {
        assert!(
            expected[name] > 0.0,
            "fixture has no {name} match: {expected:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_every_line_once_in_order_and_publishes_the_matches() {
    let moto = Moto::start();
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let mut daemon = env.start(&moto.endpoint);
    let lines: Vec<String> = crate::support::fixture_lines(FIXTURE)
        .into_iter()
        .chain(crate::support::fixture_lines(FIXTURE_2))
        .collect();
    for chunk in lines.chunks(60) {
        env.append(chunk);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let got = wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(20)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &lines, "every line once, in order");
    assert_lines(
        &events(&moto.endpoint).await,
        &lines,
        "nothing more at shutdown",
    );
    let expected = env.expected(&lines);
    assert_all_metrics_exercised(&expected);
    assert_metrics(&moto.endpoint, &expected, lines.len()).await;
    // One run, one PutMetricData per minute: every minute has exactly one datapoint per metric.
    for name in METRICS.into_iter().chain([HEARTBEAT]) {
        let (_, samples, minutes) = metric(&moto.endpoint, name).await;
        assert_eq!(
            samples, minutes as f64,
            "one datapoint per minute of {name}"
        );
    }
    let cp = fs::read_to_string(env.state.join("checkpoint.json")).expect("checkpoint written");
    assert!(
        cp.contains("\"pending_minutes\": []"),
        "everything published: {cp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_rename_copytruncate_and_delete_recreate() {
    let moto = Moto::start();
    let env = Env::new("");
    let all = numbered(120);
    let part = |i: usize| all[i * 20..(i + 1) * 20].to_vec();
    env.append(&part(0));
    let mut daemon = env.start(&moto.endpoint);
    wait_for_events(&moto.endpoint, 20, Duration::from_secs(10)).await;

    // rename + create, as logrotate and rsyslog do it: the writer keeps its descriptor on the renamed file
    // until it is told to reopen, then writes to the new file.
    let mut old = OpenOptions::new().append(true).open(&env.log).unwrap();
    fs::rename(&env.log, env.dir.path().join("secure.1")).unwrap();
    for l in part(1) {
        writeln!(old, "{l}").unwrap();
    }
    drop(old);
    env.append(&part(2));
    wait_for_events(&moto.endpoint, 60, Duration::from_secs(10)).await;

    // copytruncate: copy, then truncate in place, then write on. (Lines written between the copy and the
    // truncation are lost by copytruncate itself, whatever reads the file; none are written here.)
    fs::copy(&env.log, env.dir.path().join("secure.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&env.log)
        .unwrap();
    env.append(&part(3));
    wait_for_events(&moto.endpoint, 80, Duration::from_secs(10)).await;

    // delete + recreate, with lines written just before the delete and right after the new file appears.
    env.append(&part(4));
    fs::remove_file(&env.log).unwrap();
    env.append(&part(5));
    let got = wait_for_events(&moto.endpoint, all.len(), Duration::from_secs(15)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(
        got, all,
        "every line once, in order, across the three rotations"
    );
    assert_metrics(&moto.endpoint, &env.expected(&all), all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_loss_or_duplicates() {
    let moto = Moto::start();
    let env = Env::new("");
    let all = numbered(300);
    env.append(&all[..100]);
    let mut daemon = env.start(&moto.endpoint);
    wait_for_events(&moto.endpoint, 100, Duration::from_secs(10)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());

    // Written while stopped.
    env.append(&all[100..200]);
    let mut daemon = env.start(&moto.endpoint);
    env.append(&all[200..]);
    let got = wait_for_events(&moto.endpoint, all.len(), Duration::from_secs(15)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &all, "every line once, in order");
    assert_eq!(
        events(&moto.endpoint).await.len(),
        all.len(),
        "nothing shipped at shutdown twice"
    );
    let expected = env.expected(&all);
    assert_all_metrics_exercised(&expected);
    assert_metrics(&moto.endpoint, &expected, all.len()).await;
}

/// The sequence number `numbered` put at the end of a line.
pub(crate) fn seq(line: &str) -> usize {
    line.rsplit_once("seq=")
        .and_then(|(_, n)| n.parse().ok())
        .expect("numbered line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_heavy_appends_loses_nothing_and_counts_nothing_twice() {
    const N: usize = 60_000;
    let moto = Moto::start();
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(N);
    let mut daemon = env.start(&moto.endpoint);

    // PutMetricData is sent a grace second after a minute closes (or as soon as a line of the next minute
    // is shipped). Killing well away from that moment keeps this test off the one documented double-count
    // window (a crash between PutMetricData's acceptance and the checkpoint write), which a test cannot
    // hit on purpose and must not hit by chance: the appends start between :12 and :40, the kill comes a
    // second or two later.
    loop {
        let sec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if (12..40).contains(&sec) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The writer appends in bursts for about five seconds while the daemon ships.
    let writer = {
        let all = all.clone();
        let log = env.log.clone();
        std::thread::spawn(move || {
            for chunk in all.chunks(500) {
                append_to(&log, chunk);
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    // Kill once some batches are accepted, while lines are still being appended and shipped.
    wait_for_events(&moto.endpoint, 1, Duration::from_secs(10)).await;
    let sec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    assert!((12..55).contains(&sec), "the kill would come at :{sec}");
    daemon.kill9();
    let shipped_before_restart = events(&moto.endpoint).await.len();
    writer.join().unwrap();
    assert!(
        shipped_before_restart < N,
        "the kill came after everything was shipped; the test proves nothing"
    );

    let mut daemon = env.start(&moto.endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = events(&moto.endpoint).await;
        let distinct: std::collections::HashSet<usize> = got.iter().map(|l| seq(l)).collect();
        if distinct.len() == N || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(daemon.terminate().success(), "{}", daemon.stderr());

    // No line lost; each at most once more, and only one run of lines (the batch in flight) repeats.
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut first: Vec<usize> = Vec::new();
    for l in &got {
        let n = seq(l);
        let c = seen.entry(n).or_default();
        *c += 1;
        if *c == 1 {
            first.push(n);
        }
    }
    assert!(
        first.iter().copied().eq(0..N),
        "every line, in order: {} distinct of {N}",
        first.len()
    );
    assert!(
        seen.values().all(|&c| c <= 2),
        "a line shipped more than twice"
    );
    let repeated = got.len() - N;
    assert!(
        repeated <= 10_000,
        "{repeated} lines shipped twice: more than one batch"
    );
    // The repeats are one run of consecutive lines (the batch in flight at the kill), shipped again right
    // after the restart.
    let mut next = 0usize;
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, l) in got.iter().enumerate() {
        let n = seq(l);
        if n < next {
            repeats.push((i, n));
        } else {
            next = n + 1;
        }
    }
    assert_eq!(repeats.len(), repeated);
    assert!(
        repeats
            .windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1),
        "the repeated lines are not one run: {:?}",
        &repeats[..repeats.len().min(20)]
    );

    // No match lost, none counted twice, and the heartbeat counted each line exactly once.
    let expected = env.expected(&all);
    assert_all_metrics_exercised(&expected);
    assert_metrics(&moto.endpoint, &expected, N).await;
}

/// The text of every datagram received on a test-owned NOTIFY_SOCKET.
pub(crate) struct NotifySocket {
    pub(crate) path: PathBuf,
    pub(crate) got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub(crate) fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => sink.lock().unwrap().push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).to_string(),
                    )),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        NotifySocket { path, got }
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// When each message holding the line `needle` came.
    pub(crate) fn times(&self, needle: &str) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == needle))
            .map(|(t, _)| *t)
            .collect()
    }

    pub(crate) fn count(&self, needle: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == needle))
            .count()
    }

    /// The last `STATUS=` text.
    pub(crate) fn status(&self) -> String {
        self.messages()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
            .next_back()
            .unwrap_or_default()
    }

    pub(crate) async fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needle) > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// The number after `read ` in a STATUS text.
pub(crate) fn status_read(status: &str) -> u64 {
    status
        .split("read ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_then_back_loses_nothing_and_memory_stays_bounded() {
    const N: usize = 150_000;
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    let notify = NotifySocket::bind(env.dir.path());
    fs::write(&env.log, "").unwrap();
    let all = numbered(N);
    let mut daemon = env.start_with(
        &proxy.endpoint,
        &[("NOTIFY_SOCKET", notify.path.display().to_string())],
    );
    env.append(&all[..100]);
    wait_for_events(&moto.endpoint, 100, Duration::from_secs(10)).await;

    proxy.set_default("*", Fault::Drop);
    for chunk in all[100..].chunks(10_000) {
        env.append(chunk);
    }
    let file_bytes = fs::metadata(&env.log).unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let read_while_down = status_read(&notify.status());
    let peak_kib = daemon.peak_rss_kib();
    assert!(
        proxy.count_fault("PutLogEvents", Fault::Drop) > 0,
        "the daemon kept trying"
    );
    assert!(
        read_while_down < N as u64 / 2,
        "reading went on while CloudWatch was down ({read_while_down} of {N} lines read): the file must be the buffer"
    );
    assert!(
        peak_kib < 48 * 1024,
        "peak RSS {peak_kib} KiB while down, with a {file_bytes}-byte backlog"
    );

    proxy.set_default("*", Fault::Pass);
    let got = wait_for_events(&moto.endpoint, N, Duration::from_secs(60)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(
        got.len(),
        N,
        "everything arrived once the endpoint was back"
    );
    assert_lines(&got, &all, "every line once, in order");
    assert_metrics(&moto.endpoint, &env.expected(&all), N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_loses_nothing() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    // Throttle PutLogEvents three times (twice in a row) and PutMetricData twice in a row.
    proxy.script(
        "PutLogEvents",
        [
            Fault::Throttle,
            Fault::Throttle,
            Fault::Pass,
            Fault::Throttle,
        ],
    );
    proxy.script("PutMetricData", [Fault::Throttle, Fault::Throttle]);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(2_000);
    let mut daemon = env.start(&proxy.endpoint);
    for chunk in all.chunks(200) {
        env.append(chunk);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let got = wait_for_events(&moto.endpoint, all.len(), Duration::from_secs(40)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &all, "every line once, in order, despite throttling");
    assert_eq!(proxy.count_fault("PutLogEvents", Fault::Throttle), 3);
    assert_eq!(proxy.count_fault("PutMetricData", Fault::Throttle), 2);
    assert!(
        daemon.stderr().contains("Throttling"),
        "the retries are logged"
    );
    assert_metrics(&moto.endpoint, &env.expected(&all), all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_and_overlong_lines_arrive() {
    let moto = Moto::start();
    let env = Env::new("");
    // Longer than a CloudWatch event (256 KiB) and than the longest line the source hands out whole (1 MiB).
    let long: String = (0..1_500_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let long_line = format!("Nov 26 15:54:57 vm sshd[1]: {long}");
    let mut raw = Vec::new();
    raw.extend_from_slice(
        b"Nov 26 15:54:56 vm sshd[1]: Invalid user \xff\xfeadmin from 127.0.0.1 port 1\n",
    );
    raw.extend_from_slice(long_line.as_bytes());
    raw.push(b'\n');
    raw.extend_from_slice(b"Nov 26 15:54:58 vm sshd[1]: after\n");
    fs::write(&env.log, &raw).unwrap();
    let mut daemon = env.start(&moto.endpoint);
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let got = events(&moto.endpoint).await;
        if got.last().is_some_and(|l| l.ends_with("after")) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(
        got[0],
        "Nov 26 15:54:56 vm sshd[1]: Invalid user \u{fffd}\u{fffd}admin from 127.0.0.1 port 1",
        "invalid UTF-8 arrives lossily"
    );
    assert_eq!(got.last().unwrap(), "Nov 26 15:54:58 vm sshd[1]: after");
    let pieces = &got[1..got.len() - 1];
    assert!(pieces.len() >= 6, "{} pieces", pieces.len());
    assert!(
        pieces.iter().all(|e| e.len() + 26 <= 256 * 1024),
        "every event within CloudWatch's event limit"
    );
    assert!(
        pieces[..pieces.len() - 1]
            .iter()
            .filter(|p| p.ends_with(MARKER))
            .count()
            >= pieces.len() - 2,
        "continued pieces are marked"
    );
    let rebuilt: String = pieces
        .iter()
        .map(|p| p.strip_suffix(MARKER).unwrap_or(p))
        .collect();
    assert!(
        rebuilt == long_line,
        "the over-long line arrived whole, in marked pieces"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_78_naming_the_key_before_reading_or_sending() {
    let moto = Moto::start();
    let cases = [
        ("unknown key", "[source]\nfile_pth = \"/x\"\n", "file_pth"),
        (
            "bad pattern",
            "[[metric_filters]]\nfilter_name = \"f\"\nfilter_pattern = \"[a, b\"\nmetric_name = \"M\"\n",
            "metric_filters[0].filter_pattern",
        ),
    ];
    for (what, text, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("secure");
        fs::write(
            &log,
            "Nov 26 15:54:56 vm sshd[1]: Invalid user a from 127.0.0.1 port 1\n",
        )
        .unwrap();
        let state = dir.path().join("state");
        let config = dir.path().join("sshwatch.toml");
        let text = text.replace(
            "[source]\n",
            &format!(
                "[source]\nfile_path = \"{}\"\nstate_dir = \"{}\"\n",
                log.display(),
                state.display()
            ),
        );
        let text = if text.contains("[source]") {
            text
        } else {
            format!(
                "[source]\nfile_path = \"{}\"\nstate_dir = \"{}\"\n{text}",
                log.display(),
                state.display()
            )
        };
        fs::write(&config, text).unwrap();
        let out = sshwatch(&moto.endpoint)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{what}: {stderr}");
        assert!(
            stderr.contains(key),
            "{what}: the message names `{key}`: {stderr}"
        );
        assert!(
            !state.exists(),
            "{what}: nothing written before the config is valid"
        );
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    let groups = logs.describe_log_groups().send().await.unwrap();
    assert!(
        groups.log_groups().is_empty(),
        "nothing sent before the config is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_stops_startup_and_is_kept() {
    let moto = Moto::start();
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    fs::create_dir_all(&env.state).unwrap();
    let garbage = "{\"version\": 1, \"shipped\": ";
    fs::write(env.state.join("checkpoint.json"), garbage).unwrap();
    let mut daemon = env.start(&moto.endpoint);
    let status = daemon.wait(Duration::from_secs(10));
    assert!(!status.success());
    assert_ne!(status.code(), Some(78), "not a config error");
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("corrupt checkpoint") && stderr.contains("checkpoint.json"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(env.state.join("checkpoint.json")).unwrap(),
        garbage,
        "left for the operator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_watchdog_status_and_stopping() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    let notify = NotifySocket::bind(env.dir.path());
    // The file does not exist yet: READY=1 all the same, saying it waits.
    let mut daemon = env.start_with(
        &proxy.endpoint,
        &[
            ("NOTIFY_SOCKET", notify.path.display().to_string()),
            ("WATCHDOG_USEC", "400000".to_string()),
        ],
    );
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(10)).await,
        "{:?}\n{}",
        notify.messages(),
        daemon.stderr()
    );
    let ready = notify
        .messages()
        .into_iter()
        .find(|m| m.contains("READY=1"))
        .unwrap();
    assert!(ready.contains("STATUS=waiting for"), "{ready}");
    // Idle and healthy: the watchdog is fed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(notify.count("WATCHDOG=1") >= 2, "{:?}", notify.messages());

    let lines = crate::support::fixture_lines(FIXTURE);
    env.append(&lines);
    wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(10)).await;
    // STATUS counts a batch as shipped once its checkpoint is written (an fsync, slow on a busy disk).
    let shipped = format!("shipped {}", lines.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !notify.status().contains(&shipped) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = notify.status();
    assert!(
        status.contains(&format!("read {} lines", lines.len())),
        "{status}"
    );
    assert!(status.contains(&shipped), "{status}\n{}", daemon.stderr());
    assert!(status.contains("FailedPasswordMetrics"), "{status}");

    // Through an outage (the endpoint swallows every request and the retries back off), the daemon is
    // alive: it keeps its promises to the watchdog, which is fed as often as when all is well. Only a task
    // past its promise (a hang) holds the pings back; the unit tests of `health` show that side.
    proxy.set_default("*", Fault::Drop);
    env.append(&lines);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = notify.count("WATCHDOG=1");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let during = notify.count("WATCHDOG=1") - before;
    assert!(
        proxy.count_fault("PutLogEvents", Fault::Drop) >= 2,
        "the outage was met"
    );
    assert!(
        during >= 8,
        "{during} watchdog pings in 3 s of outage with a 0.4 s watchdog\n{}",
        daemon.stderr()
    );
    proxy.set_default("*", Fault::Pass);
    wait_for_events(&moto.endpoint, 2 * lines.len(), Duration::from_secs(40)).await;

    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert!(notify.count("STOPPING=1") == 1, "{:?}", notify.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_endpoint_is_down_exits_in_time_and_the_next_start_sends_the_rest() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(400);
    let mut daemon = env.start(&proxy.endpoint);
    env.append(&all[..200]);
    wait_for_events(&moto.endpoint, 200, Duration::from_secs(10)).await;
    proxy.set_default("*", Fault::Drop);
    env.append(&all[200..]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // `terminate` asserts the exit comes within 10 s although nothing can be delivered.
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(
        events(&moto.endpoint).await.len(),
        200,
        "nothing got through the refusing proxy"
    );
    let cp = fs::read_to_string(env.state.join("checkpoint.json")).unwrap();
    assert!(
        cp.contains("\"minute\""),
        "the unpublished minute stays in the checkpoint: {cp}"
    );

    proxy.set_default("*", Fault::Pass);
    let mut daemon = env.start(&proxy.endpoint);
    let got = wait_for_events(&moto.endpoint, all.len(), Duration::from_secs(15)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &all, "the rest arrived after the restart, once");
    assert_metrics(&moto.endpoint, &env.expected(&all), all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_is_read_back_and_nothing_arrives_twice() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(600);
    let mut daemon = env.start(&proxy.endpoint);
    env.append(&all[..200]);
    wait_for_events(&moto.endpoint, 200, Duration::from_secs(10)).await;
    // The next PutLogEvents reaches CloudWatch, but its answer is lost: the sink reads its stream back
    // instead of sending the batch again.
    proxy.script("PutLogEvents", [Fault::LoseResponse]);
    env.append(&all[200..400]);
    wait_for_events(&moto.endpoint, 400, Duration::from_secs(15)).await;
    env.append(&all[400..]);
    let got = wait_for_events(&moto.endpoint, all.len(), Duration::from_secs(15)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(proxy.count_fault("PutLogEvents", Fault::LoseResponse), 1);
    assert!(proxy.count("GetLogEvents") >= 1, "the stream was read back");
    assert_lines(&got, &all, "every line once, the lost answer's batch too");
    assert!(
        daemon
            .stderr()
            .contains("the answer to PutLogEvents was lost"),
        "{}",
        daemon.stderr()
    );
    assert_metrics(&moto.endpoint, &env.expected(&all), all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_misses_of_a_format_the_patterns_cannot_fit_are_published() {
    // rsyslog's RFC 3339 default: the seed patterns see `Invalid`, `Failed password`
    // and never match. Each such line is a near miss, published as `FilterNearMisses`.
    let moto = Moto::start();
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let mut daemon = env.start(&moto.endpoint);
    let lines = crate::support::fixture_lines(
        "tests/fixtures/sshd/lab-deb12-openssh9.2p1-rsyslog-default.auth.log",
    );
    env.append(&lines);
    wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(20)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());

    // Expected: per line, the filters whose literal words are all present but
    // which do not match (the plain evaluator, independent of the classifier).
    let config = Config::from_toml_str(&env.config_text, None).expect("config");
    let mut want = 0.0;
    for l in &lines {
        for f in &config.metric_filters {
            let lits = f.filter_pattern.required_literals();
            if !lits.is_empty()
                && lits.iter().all(|w| l.contains(w.as_str()))
                && !f.filter_pattern.is_match(l)
            {
                want += 1.0;
            }
        }
    }
    assert!(want > 50.0, "the fixture has near misses: {want}");
    let (sum, _, _) = metric(&moto.endpoint, "FilterNearMisses").await;
    assert_eq!(sum, want, "FilterNearMisses");
    let (invalid, _, _) = metric(&moto.endpoint, "InvalidUserMetrics").await;
    assert_eq!(
        invalid, 0.0,
        "the seed pattern matches nothing in RFC 3339 lines"
    );
}

/// `daemon::run_with` in the test's own runtime: it reads, ships and publishes, and ends when the
/// shutdown signal stops it, publishing the open minute on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_process_until_the_shutdown_signal_stops_it() {
    use sshwatch::health::Notifier;
    use sshwatch::shutdown::Shutdown;
    use sshwatch::sink::LogsSink;
    use sshwatch::sink::MetricsSink;
    use sshwatch::sink::logs::Host;
    use sshwatch::source::checkpoint;

    let moto = Moto::start();
    let env = Env::new("");
    let lines = numbered(500);
    env.append(&lines);
    let config = Config::from_toml_str(&env.config_text, None).expect("config");
    let sdk = sdk_config_for(&moto.endpoint).await;
    let logs = LogsSink::with_stream_name(&sdk, &config.logs, STREAM.into());
    let metrics = Some(MetricsSink::new(&sdk));
    let host = Host {
        hostname: "test-host".into(),
        instance_id: None,
    };
    let loaded = checkpoint::load(&config.source.state_dir).expect("checkpoint");
    let shutdown = Shutdown::new();
    let daemon = tokio::spawn(sshwatch::daemon::run_with(
        config,
        shutdown.clone(),
        Notifier::from_env(),
        loaded,
        host,
        logs,
        metrics,
    ));
    let got = wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(15)).await;
    shutdown.stop();
    let ended = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("stopped within 10 s");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    assert_lines(&got, &lines, "every line once");
    assert_metrics(&moto.endpoint, &env.expected(&lines), lines.len()).await;
}

/// The default transport: each minute is one embedded metric format event riding at the head of the
/// lines' own batches, sent with PutLogEvents; no PutMetricData at all, and no PutLogEvents of its own
/// while lines flow. The events' values are the minute's sums, zeros and heartbeat included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_events_carry_every_minute_through_put_log_events() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::with_transport("emf", "");
    let lines = crate::support::fixture_lines(FIXTURE);
    env.append(&lines);
    let mut daemon = env.start(&proxy.endpoint);
    wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(15)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_eq!(proxy.count("PutMetricData"), 0);

    let stream = stream_events(&moto.endpoint).await;
    let shipped: Vec<String> = stream
        .iter()
        .filter(|(_, m)| !crate::support::is_emf(m))
        .map(|(_, m)| m.clone())
        .collect();
    assert_lines(&shipped, &lines, "every line once, beside the EMF events");
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut previous = i64::MIN;
    for (timestamp, message) in &stream {
        assert!(
            *timestamp >= previous,
            "the stream stays in chronological order"
        );
        previous = *timestamp;
        if !crate::support::is_emf(message) {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(message).expect("an EMF event is JSON");
        let ts = doc["_aws"]["Timestamp"].as_i64().expect("Timestamp");
        assert_eq!(ts % 60_000, 0, "the metrics carry their minute");
        assert!(ts <= *timestamp, "a minute is published after it began");
        for directive in doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives")
        {
            assert_eq!(directive["Namespace"], "SSH");
            for m in directive["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("name");
                *sums.entry(name.to_owned()).or_default() += doc[name].as_f64().expect("value");
            }
        }
    }
    let expected = env.expected(&lines);
    for (name, want) in &expected {
        assert_eq!(sums.get(name), Some(want), "{name}: {sums:?}");
    }
    assert_eq!(sums.get(HEARTBEAT), Some(&(lines.len() as f64)));
}
