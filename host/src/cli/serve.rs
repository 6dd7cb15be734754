//! `amiwarden serve` and `amiwarden enqueue-run`: the service's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use super::{BackendArgs, Cli, Use, backend, load_policy, load_policy_for, runtime};
use crate::aws::AwsOptions;
use crate::aws::queue::Queue;
use crate::error::InputError;
use crate::model::Timestamp;
use crate::serve::{Metrics, Schedule, Service, Settings, Shard};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Run enforcement on this cron schedule (UTC; 5 fields, or 6 with seconds first).
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// Consume live EC2 events and run shards from this SQS queue.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// Serve /metrics, /healthz and /readyz here: PORT (on 127.0.0.1) or ADDR:PORT.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Plan only: nothing is changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Runs, journals and the last handled tick (default $XDG_STATE_HOME/amiwarden/serve).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Scheduled runs whose directories are kept.
    #[arg(long, default_value_t = 20)]
    pub keep_runs: usize,
    /// Seconds a received message stays invisible to other workers (extended while in work).
    #[arg(long, default_value_t = 300)]
    pub visibility_timeout: u64,
    /// Seconds one receive waits for messages (SQS long polling, at most 20).
    #[arg(long, default_value_t = 5)]
    pub poll_wait: u64,
    /// SQS endpoint, e.g. an emulator on 127.0.0.1 (default: --endpoint-url).
    #[arg(long, value_name = "URL")]
    pub queue_endpoint_url: Option<String>,
    /// The queue's region when its URL names none (an emulator's); default: the URL's, else
    /// the policy's first region.
    #[arg(long, value_name = "REGION")]
    pub queue_region: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    /// The SQS queue (FIFO, so several schedulers enqueue a tick once).
    #[arg(long, value_name = "URL")]
    pub queue_url: String,
    /// The tick (RFC 3339); default now, to the minute.
    #[arg(long, value_name = "TIME")]
    pub tick: Option<String>,
    /// AWS profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// SQS endpoint, e.g. an emulator on 127.0.0.1.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The queue's region when its URL names none (an emulator's).
    #[arg(long, value_name = "REGION")]
    pub queue_region: Option<String>,
}

fn metrics_addr(text: &str) -> Result<SocketAddr, InputError> {
    let full = if text.contains(':') { text.to_string() } else { format!("127.0.0.1:{text}") };
    full.parse().map_err(|_| InputError(format!("--metrics: `{text}` is not PORT or ADDR:PORT")))
}

fn default_state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("amiwarden/serve")
}

fn queue(url: &str, options: &AwsOptions, home_region: &str) -> anyhow::Result<Queue> {
    Queue::connect(url, options, home_region)
}

pub(super) fn serve_command(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    if args.schedule.is_none() && args.queue_url.is_none() {
        return Err(InputError("serve needs --schedule CRON, --queue-url URL, or both".into()).into());
    }
    let policy = load_policy_for(&args.policy, &args.backend)?;
    let schedule = args.schedule.as_deref().map(Schedule::parse).transpose().map_err(InputError)?;
    let metrics_addr = args.metrics.as_deref().map(metrics_addr).transpose()?;
    let runtime = runtime(cli)?;
    let plugins = super::output::load_plugins(&runtime, &policy, super::output::progress_shown(cli))?;
    let backend = backend(&args.backend, &policy, Timestamp::now(), Use::Apply)?;
    let options = AwsOptions {
        profile: args.backend.profile.clone(),
        endpoint_url: args.queue_endpoint_url.clone().or_else(|| args.backend.endpoint_url.clone()),
        max_attempts: args.backend.max_attempts,
        ..AwsOptions::default()
    };
    let home = args.queue_region.clone().or_else(|| policy.scope.regions.iter().next().cloned());
    let home = home.unwrap_or_else(|| "us-east-1".into());
    let queue = args.queue_url.as_deref().map(|url| queue(url, &options, &home)).transpose()?;
    if let (Some(q), Some(_)) = (&queue, &schedule)
        && !q.is_fifo()
    {
        return Err(InputError(format!(
            "--schedule with --queue-url needs a FIFO queue (a name ending in .fifo), so that several schedulers enqueue each tick once; {} is not",
            q.url()
        ))
        .into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    let signals = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let notify = Arc::new(tokio::sync::Notify::new());
    {
        let (stop, notify) = (Arc::clone(&stop), Arc::clone(&notify));
        signals.spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return tracing::error!("cannot listen for SIGTERM: {e}"),
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the message in work, then stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing the message in work, then stopping"),
            }
            stop.store(true, Ordering::Relaxed);
            notify.notify_waiters();
        });
    }
    if let Some(addr) = metrics_addr {
        let (metrics, ready, notify) = (Arc::clone(&metrics), Arc::clone(&ready), Arc::clone(&notify));
        let listener = signals
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
        signals.spawn(async move {
            let limit = crate::serve::metrics::CONNECTION_LIMIT;
            if let Err(e) = crate::serve::metrics::serve(listener, metrics, ready, notify, limit).await {
                tracing::error!("metrics endpoint: {e:#}");
            }
        });
    }
    if let Some(q) = &queue {
        // Reachable and readable before the worker calls itself ready.
        q.max_receive_count()?;
    }
    let settings = Settings {
        schedule,
        dry_run: args.dry_run,
        state_dir: args.state_dir.clone().unwrap_or_else(default_state_dir),
        keep_runs: args.keep_runs,
        visibility: Duration::from_secs(args.visibility_timeout.max(2)),
        wait: Duration::from_secs(args.poll_wait.min(20)),
    };
    tracing::info!(
        policy = %args.policy.display(),
        backend = %backend.name(),
        queue = args.queue_url.as_deref().unwrap_or("-"),
        schedule = settings.schedule.as_ref().map_or("-", |s| s.as_str()),
        dry_run = settings.dry_run,
        "serving"
    );
    ready.store(true, Ordering::Relaxed);
    let clock = || Timestamp::now();
    let service = Service {
        settings,
        policy: &policy,
        plugins: &plugins,
        backend: backend.as_ref(),
        queue: queue.as_ref(),
        metrics,
        clock: &clock,
        stop,
    };
    service.run()?;
    Ok(0)
}

pub(super) fn enqueue_command(args: &EnqueueArgs) -> anyhow::Result<i32> {
    let policy = load_policy(&args.policy, &[], &[])?;
    let tick = match &args.tick {
        Some(text) => text.parse().map_err(|e: String| InputError(format!("--tick: {e}")))?,
        None => Timestamp(Timestamp::now().0 / 60 * 60),
    };
    let options =
        AwsOptions { profile: args.profile.clone(), endpoint_url: args.endpoint_url.clone(), ..AwsOptions::default() };
    let mut policy = policy;
    if policy.scope.organization {
        let found = crate::aws::organization::discover(&options)?;
        policy.scope.discover(found, "the organization (ListAccounts)")?;
    }
    let home = args.queue_region.clone().or_else(|| policy.scope.regions.iter().next().cloned());
    let queue = queue(&args.queue_url, &options, &home.unwrap_or_else(|| "us-east-1".into()))?;
    for account in &policy.scope.accounts {
        crate::serve::enqueue(&queue, &Shard::new(&tick.to_string(), account))?;
    }
    say!("enqueued {} shard(s) of the run at {tick} to {}", policy.scope.accounts.len(), queue.url());
    Ok(0)
}
