//! A fault-injecting HTTP/1.1 proxy between aws-sdk-ec2 and moto, on a free 127.0.0.1
//! port, with std threads (one per client connection; keep-alive is honoured).
//!
//! Every request is read whole, its EC2 `Action` (form-encoded in the POST body) and
//! region (from the SigV4 credential scope) noted, and then either answered by a fault
//! or forwarded to moto on a fresh connection. What reached moto, and what moto answered,
//! is recorded: the counts the fault tests assert on are taken at the emulator side.

#![allow(dead_code, reason = "each test binary uses its own part of the proxy")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to a request a rule picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answered with this HTTP status and EC2 error document, never forwarded.
    Error { status: u16, code: &'static str, message: &'static str },
    /// The connection is closed without an answer; the request is never forwarded.
    Reset,
    /// Forwarded after this delay; moto's answer is passed on.
    Slow(Duration),
    /// Forwarded (moto applies it), then the connection is closed without the answer.
    LostAfterApply,
    /// Forwarded (moto applies it), then the answer is held: nothing is sent until the
    /// client goes away (the test kills it) or the proxy is dropped. `Proxy::held` counts
    /// these, so a test can kill the client at exactly this point.
    HoldAfterApply,
}

impl Fault {
    /// EC2 throttling: HTTP 503 with `RequestLimitExceeded`.
    pub fn throttled() -> Fault {
        Fault::Error { status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded." }
    }

    /// HTTP 500 `InternalError`.
    pub fn internal_error() -> Fault {
        Fault::Error { status: 500, code: "InternalError", message: "An internal error has occurred." }
    }

    /// HTTP 503 `Unavailable`.
    pub fn unavailable() -> Fault {
        Fault::Error { status: 503, code: "Unavailable", message: "The server is overloaded." }
    }

    fn name(&self) -> String {
        match self {
            Fault::Error { status, code, .. } => format!("{status} {code}"),
            Fault::Reset => "reset".into(),
            Fault::Slow(d) => format!("slow {} ms", d.as_millis()),
            Fault::LostAfterApply => "lost after apply".into(),
            Fault::HoldAfterApply => "held after apply".into(),
        }
    }
}

/// Which requests of one EC2 action get a fault: counting that action's requests from
/// 0, request `k` does when `k >= skip`, `(k - skip) % period == 0`, and fewer than
/// `limit` faults were injected by this rule so far.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: &'static str,
    pub fault: Fault,
    pub skip: u64,
    pub period: u64,
    pub limit: u64,
}

impl Rule {
    /// The first `n` requests of `action`.
    pub fn first(action: &'static str, n: u64, fault: Fault) -> Rule {
        Rule { action, fault, skip: 0, period: 1, limit: n }
    }

    /// The `n`-th request of `action` (counting from 0), once.
    pub fn nth(action: &'static str, n: u64, fault: Fault) -> Rule {
        Rule { action, fault, skip: n, period: 1, limit: 1 }
    }

    /// Every other request of `action` (the 1st, 3rd, ...), at most `limit` times.
    pub fn every_other(action: &'static str, limit: u64, fault: Fault) -> Rule {
        Rule { action, fault, skip: 0, period: 2, limit }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    pub region: String,
    /// The resource it names: ImageId, SnapshotId, SourceImageId or the first ResourceId.
    pub target: String,
    /// The fault injected, if any.
    pub fault: Option<String>,
    /// Whether it reached moto.
    pub forwarded: bool,
    /// moto's HTTP status, when it was forwarded.
    pub status: Option<u16>,
    /// The request's form parameters (`Action`, `ImageId`, `LaunchPermission.Remove.1.UserId`, ...).
    pub params: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    rules: Vec<(Rule, u64)>,
    per_action: BTreeMap<String, u64>,
    log: Vec<Seen>,
    /// Answers held (`Fault::HoldAfterApply`) so far.
    held: usize,
}

/// The proxy; stops accepting when dropped.
pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Proxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, up, st) = (s.clone(), upstream.clone(), st.clone());
                std::thread::spawn(move || serve(conn, &up, &s, &st));
            }
        });
        Proxy { url: format!("http://127.0.0.1:{port}"), state, stop, port }
    }

    /// Replaces the rules (and restarts their counts; the per-action request counts go on).
    pub fn arm(&self, rules: Vec<Rule>) {
        let mut state = lock(&self.state);
        state.rules = rules.into_iter().map(|r| (r, 0)).collect();
        state.per_action.clear();
    }

    /// Drops every rule: from now on everything is forwarded untouched.
    pub fn disarm(&self) {
        self.arm(Vec::new());
    }

    /// How many answers were held (`Fault::HoldAfterApply`) so far.
    pub fn held(&self) -> usize {
        lock(&self.state).held
    }

    /// Waits until `n` answers were held, at most `timeout`; whether they were.
    pub fn wait_held(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.held() < n {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Everything seen so far; the log is emptied.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut lock(&self.state).log)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Request {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Serves one client connection until it closes or a fault closes it.
fn serve(conn: TcpStream, upstream: &str, state: &Mutex<State>, stop: &AtomicBool) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone the socket"));
    let mut writer = conn;
    while let Some(request) = read_request(&mut reader, &mut writer) {
        let params = form(&request.body);
        let action = params.get("Action").cloned().unwrap_or_default();
        let region = request
            .header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(2))
            .unwrap_or("")
            .to_string();
        let target = ["ImageId", "SnapshotId", "SourceImageId", "ResourceId.1"]
            .iter()
            .find_map(|k| params.get(*k))
            .cloned()
            .unwrap_or_default();
        let fault = {
            let mut state = lock(state);
            let k = {
                let n = state.per_action.entry(action.clone()).or_default();
                *n += 1;
                *n - 1
            };
            let mut chosen = None;
            for (rule, injected) in &mut state.rules {
                if rule.action == action
                    && k >= rule.skip
                    && (k - rule.skip) % rule.period == 0
                    && *injected < rule.limit
                {
                    *injected += 1;
                    chosen = Some(rule.fault.clone());
                    break;
                }
            }
            chosen
        };
        let mut seen = Seen {
            action,
            region,
            target,
            fault: fault.as_ref().map(Fault::name),
            forwarded: false,
            status: None,
            params,
        };
        let answer = match &fault {
            Some(Fault::Error { status, code, message }) => Some(error_response(*status, code, message)),
            Some(Fault::Reset) => None,
            Some(Fault::Slow(delay)) => {
                std::thread::sleep(*delay);
                Some(forward(&request, upstream, &mut seen))
            }
            Some(Fault::LostAfterApply) => {
                forward(&request, upstream, &mut seen);
                None
            }
            Some(Fault::HoldAfterApply) => {
                forward(&request, upstream, &mut seen);
                {
                    let mut state = lock(state);
                    state.log.push(seen);
                    state.held += 1;
                }
                hold(&mut reader, stop);
                return;
            }
            None => Some(forward(&request, upstream, &mut seen)),
        };
        lock(state).log.push(seen);
        match answer {
            Some(bytes) => {
                if writer.write_all(&bytes).and_then(|()| writer.flush()).is_err() {
                    return;
                }
            }
            None => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Sends nothing until the client closes the connection (or dies) or the proxy stops.
fn hold(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) {
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0; 4096];
    while !stop.load(Ordering::SeqCst) {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut request = Request { line, headers, body: Vec::new() };
    if request.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    if request.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        request.body = read_chunked(reader)?;
        request.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
        let n = request.body.len().to_string();
        request.headers.push(("Content-Length".into(), n));
    } else {
        let len: usize = request.header("content-length").map_or(Some(0), |v| v.parse().ok())?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        request.body = body;
    }
    Some(request)
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            let mut trailer = String::new();
            loop {
                trailer.clear();
                reader.read_line(&mut trailer).ok()?;
                if trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

/// Sends `request` to moto on a fresh connection and returns the answer for the client
/// (re-framed with a Content-Length, keep-alive).
fn forward(request: &Request, upstream: &str, seen: &mut Seen) -> Vec<u8> {
    seen.forwarded = true;
    let mut up = TcpStream::connect(upstream).expect("moto answers");
    let mut head = format!("{}\r\n", request.line);
    for (k, v) in &request.headers {
        if !["connection", "keep-alive", "proxy-connection"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).and_then(|()| up.write_all(&request.body)).expect("write to moto");
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).expect("read from moto");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("moto's answer has a head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("HTTP/1.1 502 Bad Gateway").to_string();
    seen.status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let mut headers = Vec::new();
    let mut chunked = false;
    let mut length = None;
    for h in lines {
        let Some((k, v)) = h.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if !["connection", "keep-alive"].iter().any(|x| k.eq_ignore_ascii_case(x)) {
            headers.push(format!("{k}: {v}"));
        }
    }
    let body = if chunked {
        read_chunked(&mut rest).expect("moto's chunked answer")
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    let version_rest = status_line.split_once(' ').map_or("502 Bad Gateway", |(_, r)| r);
    let mut out = format!("HTTP/1.1 {version_rest}\r\n");
    for h in headers {
        out.push_str(&h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: keep-alive\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

fn error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>f0000000-0000-4000-8000-000000000000</RequestID></Response>"
    );
    let reason = match status {
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\
         Connection: keep-alive\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The form-encoded parameters of a query-protocol body.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
