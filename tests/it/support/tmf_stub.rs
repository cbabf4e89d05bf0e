//! A loopback stand-in for CloudWatch Logs' `TestMetricFilter` (moto does not implement it), answering only from recorded AWS responses.
//!
//! It speaks the awsJson1.1 protocol the SDK uses (`X-Amz-Target:
//! Logs_20140328.TestMetricFilter`), enforces the API's own limits (1 to 50
//! messages, each at least one character), answers each message from the
//! recording, and fails loudly on a pair it has no recording for. Tests can
//! make it throttle the next calls, and read back every call it received.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

/// CloudWatch's answer for one (pattern, message): `None` = no match, else the `extractedValues`.
pub type Answer = Option<BTreeMap<String, String>>;
/// Recorded answers keyed by (pattern, message).
pub type Recorded = HashMap<(String, String), Answer>;

/// Undoes the TSV escapes of the conformance table (`\t`, `\n`, `\r`; any other backslash is literal).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('t') => {
                    out.push('\t');
                    chars.next();
                }
                Some('n') => {
                    out.push('\n');
                    chars.next();
                }
                Some('r') => {
                    out.push('\r');
                    chars.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Loads `match`/`nomatch` rows of a table in the conformance format.
pub fn load_recorded(path: &Path) -> Recorded {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut recorded = Recorded::new();
    for row in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(cols.len() >= 5, "short row: {row}");
        let answer = match cols[3] {
            "match" => Some(serde_json::from_str(cols[4]).unwrap_or_else(|e| panic!("{row}: {e}"))),
            "nomatch" => None,
            _ => continue,
        };
        recorded.insert((unescape(cols[1]), unescape(cols[2])), answer);
    }
    recorded
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct StubCall {
    pub pattern: String,
    pub messages: Vec<String>,
    pub at: Instant,
    /// Answered with a `ThrottlingException`.
    pub throttled: bool,
    /// Rejected because it broke an API limit (a bug in the caller).
    pub invalid: bool,
}

#[derive(Debug)]
struct State {
    answers: Recorded,
    throttle_next: usize,
    calls: Vec<StubCall>,
}

/// The stub server, stopped on drop.
#[derive(Debug)]
pub struct TmfStub {
    pub endpoint: String,
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TmfStub {
    /// Starts serving `answers` on a free loopback port.
    pub fn start(answers: Recorded) -> TmfStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State {
            answers,
            throttle_next: 0,
            calls: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        TmfStub {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            state,
            stop,
        }
    }

    /// Answers the next `n` calls with `ThrottlingException`.
    pub fn throttle_next(&self, n: usize) {
        self.state.lock().expect("stub state").throttle_next = n;
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<StubCall> {
        self.state.lock().expect("stub state").calls.clone()
    }
}

impl Drop for TmfStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        let mut target = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, reply) = handle(&target, &body, state);
        let reply = reply.to_string();
        let reason = if status == 200 { "OK" } else { "Bad Request" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: tmf-stub\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn error(code: &str, message: String) -> (u16, Value) {
    (400, json!({ "__type": code, "message": message }))
}

fn handle(target: &str, body: &[u8], state: &Mutex<State>) -> (u16, Value) {
    if target != "Logs_20140328.TestMetricFilter" {
        return error(
            "UnknownOperationException",
            format!("the stub serves only TestMetricFilter, not `{target}`"),
        );
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error("SerializationException", e.to_string()),
    };
    let pattern = req["filterPattern"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let messages: Vec<String> = req["logEventMessages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut st = state.lock().expect("stub state");
    let invalid =
        messages.is_empty() || messages.len() > 50 || messages.iter().any(String::is_empty);
    let throttled = !invalid && st.throttle_next > 0;
    st.calls.push(StubCall {
        pattern: pattern.clone(),
        messages: messages.clone(),
        at: Instant::now(),
        throttled,
        invalid,
    });
    if invalid {
        return error(
            "InvalidParameterException",
            format!(
                "1 validation error: logEventMessages must have 1 to 50 members of at least 1 character (got {})",
                messages.len()
            ),
        );
    }
    if throttled {
        st.throttle_next -= 1;
        return error("ThrottlingException", "Rate exceeded".to_string());
    }
    let mut matches = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match st.answers.get(&(pattern.clone(), m.clone())) {
            None => {
                return error(
                    "StubHasNoRecording",
                    format!("no recorded AWS answer for pattern {pattern:?} and message {m:?}"),
                );
            }
            Some(None) => {}
            Some(Some(values)) => matches.push(json!({
                // 1-based, as TestMetricFilter numbers events today.
                "eventNumber": i + 1,
                "eventMessage": m,
                "extractedValues": values,
            })),
        }
    }
    (200, json!({ "matches": matches }))
}
