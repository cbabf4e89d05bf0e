//! A fault-injecting HTTP proxy in front of moto: passes requests through, refuses connections (endpoint
//! down), or answers with the services' own throttling errors, switchable while a test runs.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the upstream endpoint.
    Pass,
    /// Close every connection without answering (the SDK sees a dropped connection).
    Refuse,
    /// Answer the first request to each service, and after that about one request in `n`, picked
    /// pseudo-randomly (a fixed sequence, so runs repeat, but not periodic, so no retry loop falls in step
    /// with it), with the service's throttling error; forward the others.
    ThrottleOneIn(u64),
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    upstream: String,
    stop: AtomicBool,
    requests: AtomicU64,
    throttled: AtomicU64,
    /// Throttled requests to CloudWatch Logs and to CloudWatch (metrics).
    throttled_logs: AtomicU64,
    throttled_metrics: AtomicU64,
    refused: AtomicU64,
}

/// The proxy, listening on a free loopback port until dropped.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    pub port: u16,
    pub endpoint: String,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            upstream: format!("127.0.0.1:{upstream_port}"),
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            throttled_logs: AtomicU64::new(0),
            throttled_metrics: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        FaultProxy {
            shared,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Requests seen (all modes).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with a throttling error.
    pub fn throttled(&self) -> u64 {
        self.shared.throttled.load(Ordering::Relaxed)
    }

    /// Requests to CloudWatch Logs answered with `ThrottlingException`.
    pub fn throttled_logs(&self) -> u64 {
        self.shared.throttled_logs.load(Ordering::Relaxed)
    }

    /// Requests to CloudWatch (metrics) answered with `Throttling`.
    pub fn throttled_metrics(&self) -> u64 {
        self.shared.throttled_metrics.load(Ordering::Relaxed)
    }

    /// Connections closed unanswered.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One HTTP/1.1 request: head lines and body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The bytes to send upstream, asking it to close after answering.
    fn to_upstream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.head {
            if l.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut req = Request {
        head,
        body: Vec::new(),
    };
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len];
    r.read_exact(&mut req.body).ok()?;
    Some(req)
}

fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut client = write_half;
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let n = s.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mode = *s.mode.lock().unwrap();
        let answer = match mode {
            Mode::Refuse => {
                s.refused.fetch_add(1, Ordering::Relaxed);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Mode::ThrottleOneIn(k) if should_throttle(&req, n, k, s) => {
                s.throttled.fetch_add(1, Ordering::Relaxed);
                throttling(&req)
            }
            _ => match forward(&req, &s.upstream) {
                Some(a) => a,
                None => {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                }
            },
        };
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Whether to throttle request `n` in [`Mode::ThrottleOneIn`]`(k)` (and count it per service).
fn should_throttle(req: &Request, n: u64, k: u64, s: &Shared) -> bool {
    let per_service = if is_logs(req) {
        &s.throttled_logs
    } else {
        &s.throttled_metrics
    };
    let first = per_service.load(Ordering::Relaxed) == 0;
    let throttle = first || (k > 0 && scramble(n).is_multiple_of(k));
    if throttle {
        per_service.fetch_add(1, Ordering::Relaxed);
    }
    throttle
}

/// CloudWatch Logs speaks JSON with `X-Amz-Target`; CloudWatch metrics (awsQuery) does not.
fn is_logs(req: &Request) -> bool {
    req.header("x-amz-target").is_some()
}

/// A fixed pseudo-random permutation of request numbers (splitmix64's finalizer).
fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The throttling error of the service `req` is for: JSON `ThrottlingException` for CloudWatch Logs,
/// query/XML `Throttling` for CloudWatch.
fn throttling(req: &Request) -> Vec<u8> {
    let (content_type, body) = if is_logs(req) {
        (
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        )
    } else {
        (
            "text/xml",
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type>\
             <Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
                .to_string(),
        )
    };
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: proxy\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `req` upstream and returns the answer with `Connection: close` dropped from its head, so the
/// client may keep its connection to the proxy.
fn forward(req: &Request, upstream: &str) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    up.write_all(&req.to_upstream()).ok()?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let mut out = Vec::new();
    for l in head.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:")
            || lower.starts_with("content-length:")
            || lower.starts_with("transfer-encoding:")
        {
            continue;
        }
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // The body was read to the end: send it with its exact length.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol]).split(';').next()?.trim(),
            16,
        )
        .ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
