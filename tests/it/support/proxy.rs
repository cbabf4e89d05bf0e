//! A scripted fault-injecting HTTP/1.1 proxy between an SDK client and moto: each request is passed
//! through or answered with one injected fault (throttling in each service's own spelling, 5xx,
//! InvalidParameter, a dropped connection, a lost response), as a test scripts it per operation.
//!
//! Faults moto cannot make, without a fake CloudWatch: every request that is not faulted reaches moto.
//! Bounded: one request per connection (answers carry `Connection: close`), at most [`MAX_CONNECTIONS`]
//! at once, socket timeouts of [`IO_TIMEOUT`], at most [`MAX_REQUESTS`] requests and [`MAX_LIFETIME`]
//! in all, at most [`MAX_KEPT_BODY_BYTES`] of request bodies kept for inspection.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// Read/write timeout on every socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests served in all; later ones are dropped.
pub const MAX_REQUESTS: usize = 100_000;
/// The proxy stops accepting after this long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// Request bodies kept for [`Proxy::seen`]; beyond, only the metadata is kept.
pub const MAX_KEPT_BODY_BYTES: usize = 64 << 20;
/// Largest request head or body read.
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward to moto and relay its answer.
    Pass,
    /// HTTP 400 with the service's throttling error: `ThrottlingException` (JSON) for CloudWatch Logs,
    /// `Throttling` (RPC v2 CBOR with its query-compatible code, or query XML) for CloudWatch.
    Throttle,
    /// This HTTP status: 500 with the service's internal error (`ServiceUnavailableException` /
    /// `InternalServiceError`), any other status with a bare HTML body, as a load balancer sends.
    Status(u16),
    /// HTTP 400 `InvalidParameterException` (Logs) / `InvalidParameterValue` (CloudWatch).
    InvalidParameter,
    /// Read the request, then close the connection without answering (moto never sees it).
    Drop,
    /// Forward to moto, then close without relaying the answer: the request took effect, the client
    /// cannot know.
    LoseResponse,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `logs`, `monitoring`, … from the SigV4 credential scope.
    pub service: String,
    /// `PutLogEvents` (from `X-Amz-Target`), `PutMetricData` (from the RPC v2 path or the query body's
    /// `Action`), or empty when it cannot be read (a gzip-compressed query body).
    pub operation: String,
    pub fault: Fault,
    /// Empty when the body budget was spent.
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// Per key (an operation, a service, or `*`): faults for the next requests, one each.
    scripts: Vec<(String, VecDeque<Fault>)>,
    /// Per key: the fault once its script is used up.
    defaults: Vec<(String, Fault)>,
    seen: Vec<Seen>,
    kept_body_bytes: usize,
    /// PutLogEvents requests whose body holds one of these are refused with InvalidParameter, as
    /// CloudWatch refuses a request for an event it will not take.
    refused_contents: Vec<Vec<u8>>,
}

impl State {
    fn decide(&mut self, service: &str, operation: &str) -> Fault {
        let matches = |key: &str| key == operation || key == service || key == "*";
        if let Some((_, q)) = self
            .scripts
            .iter_mut()
            .find(|(k, q)| matches(k) && !q.is_empty())
            && let Some(f) = q.pop_front()
        {
            return f;
        }
        self.defaults
            .iter()
            .find(|(k, _)| matches(k))
            .map_or(Fault::Pass, |(_, f)| *f)
    }
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    state: Mutex<State>,
    stop: AtomicBool,
    connections: AtomicUsize,
    requests: AtomicUsize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the test down with a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy, listening on a free loopback port until dropped.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK config.
    pub endpoint: String,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream_port` on 127.0.0.1 (e.g. `moto.port`).
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared {
            upstream: format!("127.0.0.1:{upstream_port}"),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::spawn(move || accept_loop(&listener, &s));
        Proxy {
            shared,
            accept: Some(accept),
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Queues `faults` for the next requests matching `key` (an operation such as `PutLogEvents`, a
    /// service such as `monitoring`, or `*`), one fault per request, after any already queued.
    pub fn script(&self, key: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut st = self.shared.state();
        let faults: Vec<Fault> = faults.into_iter().collect();
        match st.scripts.iter_mut().find(|(k, _)| k == key) {
            Some((_, q)) => q.extend(faults),
            None => st.scripts.push((key.to_owned(), faults.into())),
        }
    }

    /// What requests matching `key` get once their script is used up (initially [`Fault::Pass`]).
    pub fn set_default(&self, key: &str, fault: Fault) {
        let mut st = self.shared.state();
        st.defaults.retain(|(k, _)| k != key);
        st.defaults.insert(0, (key.to_owned(), fault));
    }

    /// Refuses (InvalidParameter) every PutLogEvents whose body contains `needle`, whatever else it holds.
    pub fn refuse_events_containing(&self, needle: &str) {
        self.shared
            .state()
            .refused_contents
            .push(needle.as_bytes().to_vec());
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    /// Requests of `operation` seen so far.
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .state()
            .seen
            .iter()
            .filter(|s| s.operation == operation)
            .count()
    }

    /// Requests of `operation` that got `fault`.
    pub fn count_fault(&self, operation: &str, fault: Fault) -> usize {
        self.shared
            .state()
            .seen
            .iter()
            .filter(|s| s.operation == operation && s.fault == fault)
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, s: &Arc<Shared>) {
    let started = Instant::now();
    while !s.stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
        match listener.accept() {
            Ok((conn, _)) => {
                if s.connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS
                    || s.requests.load(Ordering::Relaxed) >= MAX_REQUESTS
                {
                    let _ = conn.shutdown(Shutdown::Both);
                    continue;
                }
                s.connections.fetch_add(1, Ordering::Relaxed);
                let s = Arc::clone(s);
                std::thread::spawn(move || {
                    serve(conn, &s);
                    s.connections.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One HTTP/1.1 request: head lines (without CRLF) and body.
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

    /// The service from the SigV4 scope `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
    fn service(&self) -> String {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or("")
            .to_owned()
    }

    /// Whether the request speaks Smithy RPC v2 CBOR (CloudWatch's protocol in current SDKs).
    fn is_cbor(&self) -> bool {
        self.header("smithy-protocol") == Some("rpc-v2-cbor")
    }

    /// The operation from `X-Amz-Target` (JSON protocols), the RPC v2 path
    /// (`/service/SERVICE/operation/OPERATION`) or the query body's `Action`.
    fn operation(&self) -> String {
        if let Some(t) = self.header("x-amz-target") {
            return t.rsplit('.').next().unwrap_or(t).to_owned();
        }
        let path = self
            .head
            .first()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("");
        if let Some((_, op)) = path.split_once("/operation/") {
            return op.split(['?', '/']).next().unwrap_or(op).to_owned();
        }
        if self
            .header("content-encoding")
            .is_some_and(|e| e.contains("gzip"))
        {
            return String::new();
        }
        String::from_utf8_lossy(&self.body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned()
    }

    /// The bytes to send upstream, asking it to close after answering.
    fn to_upstream(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 1024);
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
    let mut head_bytes = 0;
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).ok()?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_MESSAGE_BYTES {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
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
    if len > MAX_MESSAGE_BYTES {
        return None;
    }
    req.body = vec![0; len];
    r.read_exact(&mut req.body).ok()?;
    Some(req)
}

fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(mut client) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    let service = req.service();
    let operation = req.operation();
    let fault = if n >= MAX_REQUESTS {
        Fault::Drop
    } else {
        let mut st = s.state();
        let refused = operation == "PutLogEvents"
            && st
                .refused_contents
                .iter()
                .any(|needle| memchr::memmem::find(&req.body, needle).is_some());
        if refused {
            Fault::InvalidParameter
        } else {
            st.decide(&service, &operation)
        }
    };
    {
        let mut st = s.state();
        let body = if st.kept_body_bytes + req.body.len() <= MAX_KEPT_BODY_BYTES {
            st.kept_body_bytes += req.body.len();
            req.body.clone()
        } else {
            Vec::new()
        };
        st.seen.push(Seen {
            service: service.clone(),
            operation,
            fault,
            body,
        });
    }
    let answer = match fault {
        Fault::Pass => forward(&req, &s.upstream),
        Fault::LoseResponse => {
            let _ = forward(&req, &s.upstream);
            None
        }
        Fault::Drop => None,
        Fault::Throttle => Some(error_answer(&req, &service, 400, ErrorKind::Throttle)),
        Fault::InvalidParameter => Some(error_answer(&req, &service, 400, ErrorKind::Invalid)),
        Fault::Status(500) => Some(error_answer(&req, &service, 500, ErrorKind::Internal)),
        Fault::Status(code) => Some(bare_status(code)),
    };
    match answer {
        Some(a) => {
            let _ = client.write_all(&a);
            let _ = client.flush();
            let _ = client.shutdown(Shutdown::Write);
        }
        None => {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

enum ErrorKind {
    Throttle,
    Invalid,
    Internal,
}

/// The service's own error answer: JSON 1.1 `__type` for CloudWatch Logs (and other JSON services); for
/// CloudWatch (`monitoring`) an RPC v2 CBOR error map with the query-compatible code in
/// `x-amzn-query-error` (what current SDKs read), or query XML `ErrorResponse` for a query request.
fn error_answer(req: &Request, service: &str, status: u16, kind: ErrorKind) -> Vec<u8> {
    let query = service == "monitoring";
    let (code, message) = match (kind, query) {
        (ErrorKind::Throttle, false) => ("ThrottlingException", "Rate exceeded"),
        (ErrorKind::Throttle, true) => ("Throttling", "Rate exceeded"),
        (ErrorKind::Invalid, false) => ("InvalidParameterException", "injected by the test proxy"),
        (ErrorKind::Invalid, true) => ("InvalidParameterValue", "injected by the test proxy"),
        (ErrorKind::Internal, false) => {
            ("ServiceUnavailableException", "injected by the test proxy")
        }
        (ErrorKind::Internal, true) => ("InternalServiceError", "injected by the test proxy"),
    };
    let sender = if status >= 500 { "Receiver" } else { "Sender" };
    let mut extra = String::new();
    let (content_type, body) = if query && req.is_cbor() {
        extra = format!("smithy-protocol: rpc-v2-cbor\r\nx-amzn-query-error: {code};{sender}\r\n");
        (
            "application/cbor",
            cbor_text_map(&[("__type", code), ("message", message)]),
        )
    } else if query {
        (
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>{sender}</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            )
            .into_bytes(),
        )
    } else {
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#).into_bytes(),
        )
    };
    let reason = if status >= 500 {
        "Internal Server Error"
    } else {
        "Bad Request"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{extra}x-amzn-RequestId: proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A CBOR map of short text keys and values (RFC 8949: major type 5 for the map, 3 for each text).
fn cbor_text_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, len: usize) {
        match len {
            0..=23 => out.push(major << 5 | len as u8),
            24..=255 => out.extend_from_slice(&[major << 5 | 24, len as u8]),
            _ => {
                out.push(major << 5 | 25);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
    }
    let mut out = Vec::new();
    head(&mut out, 5, pairs.len());
    for (k, v) in pairs {
        for text in [k, v] {
            head(&mut out, 3, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// A status with an HTML body and no AWS error code, as a load balancer answers.
fn bare_status(status: u16) -> Vec<u8> {
    let body = format!("<html><body><h1>{status}</h1></body></html>");
    format!(
        "HTTP/1.1 {status} Injected\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `req` to moto and returns its answer with `Connection: close`, or `None` when moto could not be
/// reached (the client then sees a dropped connection).
fn forward(req: &Request, upstream: &str) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).ok()?;
    up.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    up.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    up.write_all(&req.to_upstream()).ok()?;
    let mut raw = Vec::new();
    up.take(MAX_MESSAGE_BYTES as u64)
        .read_to_end(&mut raw)
        .ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut out = Vec::with_capacity(raw.len() + 32);
    for l in head.split("\r\n") {
        if l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&raw[split + 4..]);
    Some(out)
}
