//! The daemon's delivery under the faults that lost lines before: CloudWatch failing, throttling or
//! refusing while the log rotates, and the process killed. Each test is one scenario, run with the real
//! binary against moto behind the fault-injecting proxy; each asserts what arrived.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use crate::daemon::{
    Env, NotifySocket, append_to, assert_lines, assert_metrics, events, numbered, seq,
    wait_for_events,
};
use crate::support::Moto;
use crate::support::proxy::{Fault, Proxy};

/// PutLogEvents answers 503 while 100,000 lines are appended and the log is copytruncated; then it
/// recovers. The reader kept following the file while it could not ship: the copy was found and read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_during_503s_loses_nothing() {
    const N: usize = 100_200;
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(N);
    let mut daemon = env.start(&proxy.endpoint);
    env.append(&all[..200]);
    wait_for_events(&moto.endpoint, 200, Duration::from_secs(15)).await;
    proxy.set_default("PutLogEvents", Fault::Status(503));
    for chunk in all[200..].chunks(10_000) {
        env.append(chunk);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // logrotate's copytruncate.
    fs::copy(&env.log, env.dir.path().join("secure.1")).unwrap();
    fs::File::options()
        .write(true)
        .open(&env.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_default("PutLogEvents", Fault::Pass);
    let got = wait_for_events(&moto.endpoint, N, Duration::from_secs(120)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &all, "every line once, in order");
    assert_metrics(&moto.endpoint, &env.expected(&all), N).await;
}

/// Connections are dropped while the log is renamed away twice; then they go through. The middle
/// generation was kept open and is read between the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renames_during_dropped_connections_lose_nothing() {
    const N: usize = 30_200;
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(N);
    let mut daemon = env.start(&proxy.endpoint);
    env.append(&all[..200]);
    wait_for_events(&moto.endpoint, 200, Duration::from_secs(15)).await;
    proxy.set_default("*", Fault::Drop);
    let rotated = |from: &str, to: &str| {
        fs::rename(env.dir.path().join(from), env.dir.path().join(to)).unwrap();
    };
    env.append(&all[200..10_200]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    rotated("secure", "secure.1");
    env.append(&all[10_200..20_200]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    rotated("secure.1", "secure.2");
    rotated("secure", "secure.1");
    env.append(&all[20_200..]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set_default("*", Fault::Pass);
    let got = wait_for_events(&moto.endpoint, N, Duration::from_secs(90)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &all, "every line once, in order, across both renames");
    assert_metrics(&moto.endpoint, &env.expected(&all), N).await;
}

/// CloudWatch refuses a batch with InvalidParameterException: the daemon splits it, and only the event
/// CloudWatch refuses on its own is dropped (with an ERROR); the metrics count what CloudWatch stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_loses_only_what_cloudwatch_refuses() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let mut daemon = env.start(&proxy.endpoint);
    // One refusal of the whole batch, as CloudWatch answers a request it will not take: nothing is lost.
    let first = numbered(200);
    proxy.script("PutLogEvents", [Fault::InvalidParameter]);
    env.append(&first);
    wait_for_events(&moto.endpoint, 200, Duration::from_secs(15)).await;
    // An event CloudWatch refuses whatever it is sent with: only it is dropped.
    let mut second: Vec<String> = numbered(400)[200..].to_vec();
    second[57] = "Dec  9 05:20:36 host sshd[1]: Invalid user POISON from 192.0.2.9 port 5".into();
    proxy.refuse_events_containing("POISON");
    env.append(&second);
    let stored: Vec<String> = first
        .iter()
        .chain(second.iter().filter(|l| !l.contains("POISON")))
        .cloned()
        .collect();
    let got = wait_for_events(&moto.endpoint, stored.len(), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &stored, "everything but the refused event, once");
    let log = daemon.stderr();
    assert!(
        log.contains("refused a log event on its own") && log.contains("POISON"),
        "{log}"
    );
    assert_metrics(&moto.endpoint, &env.expected(&stored), stored.len()).await;
}

/// Twenty seconds of 503s with a 3 s watchdog: the daemon is retrying, so it is alive, and systemd gets
/// `WATCHDOG=1` all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_through_20_s_of_503s() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let notify = NotifySocket::bind(env.dir.path());
    let mut daemon = env.start_with(
        &proxy.endpoint,
        &[
            ("NOTIFY_SOCKET", notify.path.display().to_string()),
            ("WATCHDOG_USEC", "3000000".to_string()),
        ],
    );
    assert!(notify.wait_for("READY=1", Duration::from_secs(10)).await);
    let lines = numbered(300);
    proxy.set_default("*", Fault::Status(503));
    env.append(&lines);
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let pings: Vec<Instant> = notify
        .times("WATCHDOG=1")
        .into_iter()
        .filter(|t| *t >= outage)
        .collect();
    let longest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(pings.first().map(|t| *t - outage))
        .max()
        .unwrap_or(Duration::MAX);
    assert!(
        longest < Duration::from_secs(3),
        "a {longest:?} gap between watchdog pings during the outage ({} pings)\n{}",
        pings.len(),
        daemon.stderr()
    );
    assert!(proxy.count_fault("PutLogEvents", Fault::Status(503)) >= 3);
    proxy.set_default("*", Fault::Pass);
    let got = wait_for_events(&moto.endpoint, lines.len(), Duration::from_secs(45)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    assert_lines(&got, &lines, "everything once the endpoint is back");
}

/// Ten `kill -9` during steady appends, with the log renamed away between them: nothing is lost, and each
/// kill repeats at most the batch that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kills_with_renames_lose_nothing_and_repeat_at_most_a_batch_each() {
    const N: usize = 20_000;
    const KILLS: usize = 10;
    let moto = Moto::start();
    let env = Env::new("");
    fs::write(&env.log, "").unwrap();
    let all = numbered(N);
    let per_round = N / KILLS;
    for round in 0..KILLS {
        let mut daemon = env.start(&moto.endpoint);
        let chunk = &all[round * per_round..(round + 1) * per_round];
        for part in chunk.chunks(per_round / 4) {
            append_to(&env.log, part);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if round % 3 == 1 {
            let old = env.dir.path().join(format!("secure.{round}"));
            fs::rename(&env.log, &old).unwrap();
            fs::write(&env.log, "").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50 + 37 * round as u64)).await;
        daemon.kill9();
    }
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.terminate().success(), "{}", daemon.stderr());
    let mut count: HashMap<usize, usize> = HashMap::new();
    let mut first: Vec<usize> = Vec::new();
    for l in &got {
        let c = count.entry(seq(l)).or_default();
        *c += 1;
        if *c == 1 {
            first.push(seq(l));
        }
    }
    assert!(
        first.iter().copied().eq(0..N),
        "every line, in order: {} distinct of {N}",
        first.len()
    );
    // The repeats form at most one run per kill (the batch in flight when it came).
    let mut runs = 0;
    let mut next = 0usize;
    let mut in_run = false;
    for l in &got {
        let n = seq(l);
        if n < next {
            if !in_run {
                runs += 1;
            }
            in_run = true;
        } else {
            in_run = false;
            next = n + 1;
        }
    }
    assert!(
        runs <= KILLS,
        "{runs} runs of repeated lines for {KILLS} kills"
    );
    assert!(count.values().all(|&c| c <= 1 + KILLS));
}
