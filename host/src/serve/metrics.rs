//! The service's Prometheus metrics (prometheus-client), and the small HTTP endpoint that
//! serves them with `/healthz` and `/readyz` (hyper).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::PluginFailure;
use crate::plan::{Plan, RefusalKind};

type Labels = Vec<(&'static str, String)>;

/// Every metric the service keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages received, by kind: `event`, `shard`, `unreadable`.
    pub received: Family<Labels, Counter>,
    /// Messages handled, by kind and result: `applied`, `planned` (dry run), `out-of-scope`,
    /// `ignored`, `failed`, `stopped`, `retry`.
    pub handled: Family<Labels, Counter>,
    /// Messages that failed and will reach the dead-letter queue at the next failure.
    pub dead_lettered: Family<Labels, Counter>,
    /// Actions by op and outcome (`done`, `skipped`, `failed`).
    pub actions: Family<Labels, Counter>,
    /// Proposals refused by kind (`vetoed`, `guardrail`, …).
    pub refused: Family<Labels, Counter>,
    /// Plugin failures by cause (`timeout`, `out-of-memory`, `trap`, …).
    pub plugin_failures: Family<Labels, Counter>,
    /// EC2 calls by operation.
    pub ec2_calls: Family<Labels, Counter>,
    /// Scheduled runs (per shard), by result.
    pub runs: Family<Labels, Counter>,
    /// Seconds per shard of a scheduled run.
    pub run_seconds: Histogram,
    /// Seconds per event, received to handled.
    pub event_seconds: Histogram,
    /// Seconds a message waited in the queue before it was received.
    pub queue_lag_seconds: Histogram,
}

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

fn slug<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "other".into())
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("amiwarden");
        let counters = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let received = counters(&mut registry, "messages_received", "Queue messages received, by kind");
        let handled = counters(&mut registry, "messages_handled", "Queue messages handled, by kind and result");
        let dead_lettered = counters(
            &mut registry,
            "messages_dead_lettered",
            "Messages failed for the last time: SQS moves them to the dead-letter queue",
        );
        let actions = counters(&mut registry, "actions", "Actions applied, by op and outcome");
        let refused = counters(&mut registry, "refused", "Proposals refused, by kind");
        let plugin_failures = counters(&mut registry, "plugin_failures", "Plugin failures, by cause");
        let ec2_calls = counters(&mut registry, "ec2_calls", "EC2 API calls, by operation");
        let runs = counters(&mut registry, "runs", "Shards of scheduled runs, by result");
        let histogram = |registry: &mut Registry, name: &str, help: &str| {
            let h = Histogram::new(exponential_buckets(0.005, 2.0, 18));
            registry.register(name, help, h.clone());
            h
        };
        let run_seconds = histogram(&mut registry, "run_seconds", "Seconds per shard of a scheduled run");
        let event_seconds = histogram(&mut registry, "event_seconds", "Seconds to handle one event message");
        let queue_lag_seconds = histogram(&mut registry, "queue_lag_seconds", "Seconds a message waited in the queue");
        Metrics {
            registry,
            received,
            handled,
            dead_lettered,
            actions,
            refused,
            plugin_failures,
            ec2_calls,
            runs,
            run_seconds,
            event_seconds,
            queue_lag_seconds,
        }
    }
}

impl Metrics {
    /// Counts a received message of `kind`.
    pub fn received(&self, kind: &str) {
        self.received.get_or_create(&label("kind", kind)).inc();
    }

    /// Counts a handled message of `kind` with `result`.
    pub fn handled(&self, kind: &str, result: &str) {
        self.handled.get_or_create(&vec![("kind", kind.to_string()), ("result", result.to_string())]).inc();
    }

    /// Counts what a plan refused and which plugins failed.
    pub fn plan(&self, plan: &Plan) {
        for r in &plan.refused {
            self.refused.get_or_create(&label("kind", slug::<RefusalKind>(&r.kind))).inc();
        }
        for e in &plan.errors {
            let cause = match &e.failure {
                PluginFailure::Timeout(_) => "timeout",
                PluginFailure::OutOfMemory(_) => "out-of-memory",
                PluginFailure::HostWork(_) => "host-work",
                PluginFailure::Trap(_) => "trap",
                PluginFailure::Policy(..) => "policy-error",
                PluginFailure::Malformed(_) => "malformed",
                PluginFailure::Instantiate(_) => "instantiate",
            };
            self.plugin_failures.get_or_create(&label("cause", cause)).inc();
        }
    }

    /// Counts one applied action.
    pub fn action(&self, op: &str, outcome: &str) {
        self.actions.get_or_create(&vec![("op", op.to_string()), ("outcome", outcome.to_string())]).inc();
    }

    /// Adds EC2 calls made since the last count: `now` and `before` are the backend's
    /// running totals.
    pub fn ec2_calls(&self, before: &[(String, u64)], now: &[(String, u64)]) {
        for (op, n) in now {
            let was = before.iter().find(|(o, _)| o == op).map_or(0, |(_, n)| *n);
            if *n > was {
                self.ec2_calls.get_or_create(&label("operation", op.clone())).inc_by(n - was);
            }
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The longest one connection to the metrics server is served (scrapes take milliseconds).
pub const CONNECTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The pause after a failed accept, so a lack of file descriptors is not a busy loop.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves `/metrics`, `/healthz` (the process is up) and `/readyz` (plugins loaded, queue
/// reachable) on `listener` until `stop` is notified, each connection for at most
/// `connection_limit` (`CONNECTION_LIMIT`); runs on the caller's tokio runtime.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stop: Arc<tokio::sync::Notify>,
    connection_limit: std::time::Duration,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.notified() => return Ok(()),
        };
        // A failed accept (out of file descriptors under a flood, a connection reset
        // before it was taken) is that connection's, not the server's: `/healthz` must
        // outlive it.
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics: accepting a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (metrics, ready) = (Arc::clone(&metrics), Arc::clone(&ready));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (metrics, ready) = (Arc::clone(&metrics), Arc::clone(&ready));
                async move { Ok::<_, std::convert::Infallible>(respond(req.uri().path(), &metrics, &ready)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that sends nothing, or a byte a minute, holds its connection (and a
            // file descriptor) no longer than this.
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            let _ = tokio::time::timeout(connection_limit, connection).await;
        });
    }
}

fn respond(path: &str, metrics: &Metrics, ready: &AtomicBool) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if ready.load(Ordering::Relaxed) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found: /metrics, /healthz, /readyz\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_with_their_labels() {
        let m = Metrics::default();
        m.received("event");
        m.handled("event", "applied");
        m.action("deregister", "done");
        m.ec2_calls(&[("DescribeImages".into(), 2)], &[("DescribeImages".into(), 5), ("CopyImage".into(), 1)]);
        m.event_seconds.observe(0.02);
        let text = m.render();
        for line in [
            r#"amiwarden_messages_received_total{kind="event"} 1"#,
            r#"amiwarden_messages_handled_total{kind="event",result="applied"} 1"#,
            r#"amiwarden_actions_total{op="deregister",outcome="done"} 1"#,
            r#"amiwarden_ec2_calls_total{operation="DescribeImages"} 3"#,
            r#"amiwarden_ec2_calls_total{operation="CopyImage"} 1"#,
            "amiwarden_event_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    /// A client that connects and sends nothing is dropped after the limit, and the server
    /// goes on answering others.
    #[test]
    fn an_idle_connection_is_dropped_after_the_limit_and_the_server_goes_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(tokio::sync::Notify::new());
            let (metrics, ready) = (Arc::new(Metrics::default()), Arc::new(AtomicBool::new(true)));
            let limit = std::time::Duration::from_millis(200);
            let server = tokio::spawn(serve(listener, metrics, ready, Arc::clone(&stop), limit));
            let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
            let started = std::time::Instant::now();
            let mut buf = Vec::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
            assert!(read.is_ok(), "the idle connection is closed by the server");
            assert!(started.elapsed() >= limit, "not before the limit: {:?}", started.elapsed());
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
            stop.notify_waiters();
            server.await.unwrap().unwrap();
        });
    }

    #[test]
    fn health_is_always_ok_and_readiness_waits_for_start() {
        let m = Metrics::default();
        let ready = AtomicBool::new(false);
        assert_eq!(respond("/healthz", &m, &ready).status(), StatusCode::OK);
        assert_eq!(respond("/readyz", &m, &ready).status(), StatusCode::SERVICE_UNAVAILABLE);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(respond("/readyz", &m, &ready).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &m, &ready).status(), StatusCode::NOT_FOUND);
    }
}
