//! `amiwarden serve`: enforcement as a long-running service. A schedule (cron, UTC)
//! starts runs; live EC2 events and shards of scheduled runs arrive through Amazon SQS;
//! any number of workers share one queue. Every message goes through `enforce` (locks,
//! journal, guardrails, re-reads) and is deleted only once its actions are journaled; a
//! message that keeps failing stays in the queue until SQS moves it to the dead-letter
//! queue. See docs/serve.md.

mod message;
pub mod metrics;
mod schedule;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use message::{Message, Shard};
pub use metrics::Metrics;
pub use schedule::Schedule;

use crate::aws::queue::{Queue, Received};
use crate::backend::{ActionOutcome, Backend};
use crate::config::Policy;
use crate::enforce::{self, Origin};
use crate::error::{Busy, GuardrailStop};
use crate::model::Timestamp;
use crate::plan::Source;
use crate::plugin::Plugin;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub schedule: Option<Schedule>,
    /// Plan only: nothing is changed.
    pub dry_run: bool,
    /// Runs, journals and the last handled tick live here.
    pub state_dir: PathBuf,
    /// How many scheduled runs' directories are kept.
    pub keep_runs: usize,
    /// How long a received message stays invisible; extended while it is in work.
    pub visibility: Duration,
    /// The longest a receive waits for messages (long polling).
    pub wait: Duration,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (or not ours to handle): deleted.
    Done(&'static str),
    /// Failed: left in the queue; SQS redelivers it, and moves it to the dead-letter
    /// queue after its redrive policy's receive count.
    Failed(String),
    /// Another apply holds the state: handed back to be received again soon.
    Retry(String),
}

/// The service: a policy, its plugins, a backend, and an optional queue.
pub struct Service<'a> {
    pub settings: Settings,
    pub policy: &'a Policy,
    pub plugins: &'a [Plugin],
    pub backend: &'a dyn Backend,
    pub queue: Option<&'a Queue>,
    pub metrics: Arc<Metrics>,
    /// The clock: `Timestamp::now` in production, driven by tests.
    pub clock: &'a (dyn Fn() -> Timestamp + Sync),
    /// Set on SIGTERM or SIGINT: stop receiving, finish the message in work.
    pub stop: Arc<AtomicBool>,
}

fn safe_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

impl Service<'_> {
    /// Runs until `stop` is set: scheduled runs when due, queue messages as they come.
    pub fn run(&self) -> anyhow::Result<()> {
        let started = (self.clock)();
        std::fs::create_dir_all(&self.settings.state_dir)
            .with_context(|| format!("cannot create the state directory {}", self.settings.state_dir.display()))?;
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(tick) = self.tick(started)? {
                tracing::info!(tick = %tick, "scheduled run handled");
            }
            match self.queue {
                Some(_) => {
                    self.poll()?;
                }
                None => std::thread::sleep(Duration::from_millis(500).min(self.settings.wait)),
            }
        }
        tracing::info!("stopped");
        Ok(())
    }

    fn last_tick_path(&self) -> PathBuf {
        self.settings.state_dir.join("last-tick")
    }

    /// The scheduler's step: when a tick is due (missed ticks coalesce into the latest),
    /// enqueue one shard per account (with a queue) or run them here, then record the
    /// tick. Returns the tick handled, if any.
    pub fn tick(&self, started: Timestamp) -> anyhow::Result<Option<Timestamp>> {
        let Some(schedule) = &self.settings.schedule else { return Ok(None) };
        let handled = std::fs::read_to_string(self.last_tick_path()).ok().and_then(|t| t.trim().parse().ok());
        let Some(tick) = schedule.due(handled, started, (self.clock)()) else { return Ok(None) };
        let shards: Vec<Shard> = self.policy.scope.accounts.iter().map(|a| Shard::new(&tick.to_string(), a)).collect();
        match self.queue {
            Some(queue) => {
                for shard in &shards {
                    enqueue(queue, shard)?;
                }
            }
            None => {
                for shard in &shards {
                    let disposition = self.run_shard(shard);
                    tracing::info!(account = %shard.account, ?disposition, "shard");
                }
            }
        }
        crate::files::write_atomically(&self.last_tick_path(), format!("{tick}\n").as_bytes())?;
        self.prune_runs();
        Ok(Some(tick))
    }

    /// Receives one batch and handles it: each message's visibility is extended while it
    /// is in work; on stop, messages not yet started are handed back at once.
    pub fn poll(&self) -> anyhow::Result<usize> {
        let Some(queue) = self.queue else { return Ok(0) };
        let messages = queue.receive(10, self.settings.wait, self.settings.visibility)?;
        let n = messages.len();
        for (i, message) in messages.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                for rest in &messages[i..] {
                    let _ = queue.set_visibility(&rest.receipt, Duration::ZERO);
                }
                break;
            }
            self.handle_received(queue, message);
        }
        Ok(n)
    }

    fn handle_received(&self, queue: &Queue, message: &Received) {
        if let Some(sent) = message.sent_ms {
            let now_ms = (self.clock)().0.saturating_mul(1000);
            self.metrics.queue_lag_seconds.observe((now_ms.saturating_sub(sent)).max(0) as f64 / 1000.0);
        }
        let started = Instant::now();
        let disposition = with_heartbeat(queue, &message.receipt, self.settings.visibility, || {
            self.handle(&message.id, &message.body)
        });
        self.metrics.event_seconds.observe(started.elapsed().as_secs_f64());
        let result = match &disposition {
            Disposition::Done(_) => queue.delete(&message.receipt),
            Disposition::Retry(why) => {
                tracing::info!(message = %message.id, "handed back: {why}");
                queue.set_visibility(&message.receipt, Duration::from_secs(2))
            }
            Disposition::Failed(why) => {
                tracing::error!(message = %message.id, receive_count = message.receive_count, "failed: {why}");
                if queue.max_receive_count().ok().flatten().is_some_and(|max| message.receive_count >= max) {
                    self.metrics.dead_lettered.get_or_create(&vec![("kind", "message".to_string())]).inc();
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(message = %message.id, "{e:#}");
        }
    }

    /// Handles one message body (the queue does the rest).
    pub fn handle(&self, id: &str, body: &str) -> Disposition {
        match message::parse(body) {
            Err(why) => {
                self.metrics.received("unreadable");
                self.metrics.handled("unreadable", "failed");
                Disposition::Failed(format!("message {id} is not one amiwarden reads: {why}"))
            }
            Ok(Message::Shard(shard)) => {
                self.metrics.received("shard");
                self.run_shard(&shard)
            }
            Ok(Message::Events(events)) => {
                self.metrics.received("event");
                let mut last = Disposition::Done("no events");
                for (n, text) in events.iter().enumerate() {
                    last = self.handle_event(&format!("{id}-{n}"), text);
                    if !matches!(last, Disposition::Done(_)) {
                        break;
                    }
                }
                last
            }
        }
    }

    fn handle_event(&self, key: &str, text: &str) -> Disposition {
        let parsed = match crate::event::parse(text) {
            Ok(parsed) => parsed,
            Err(why) => {
                self.metrics.handled("event", "failed");
                return Disposition::Failed(format!("event {key}: {why}"));
            }
        };
        let events = match parsed {
            crate::event::Parsed::Ignored(note) => {
                tracing::info!(event = %key, "{note}");
                self.metrics.handled("event", "ignored");
                return Disposition::Done("ignored");
            }
            crate::event::Parsed::Events(list) => list,
        };
        let mut accounts: Vec<&str> = events.iter().map(|e| e.account.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        for account in accounts {
            let in_scope = events.iter().any(|e| {
                e.account == account
                    && self.policy.scope.accounts.contains(account)
                    && self.policy.scope.regions.contains(&e.region)
            });
            if !in_scope {
                tracing::info!(event = %key, account, "outside the policy's scope: acknowledged");
                self.metrics.handled("event", "out-of-scope");
                continue;
            }
            let source = Source::Event { text: text.to_string(), origin: format!("sqs:{key}") };
            let journal = self.settings.state_dir.join("events").join(format!("{}.jsonl", safe_name(key)));
            let disposition = self.enforce(&source, &journal, "event");
            if !matches!(disposition, Disposition::Done(_)) {
                return disposition;
            }
        }
        Disposition::Done("handled")
    }

    /// One shard of a scheduled run: every image of one account.
    pub fn run_shard(&self, shard: &Shard) -> Disposition {
        if !self.policy.scope.accounts.contains(&shard.account) {
            self.metrics.runs.get_or_create(&vec![("result", "out-of-scope".to_string())]).inc();
            return Disposition::Done("out-of-scope");
        }
        let started = Instant::now();
        let dir = self.settings.state_dir.join("runs").join(safe_name(&shard.tick));
        let journal = dir.join(format!("{}.jsonl", shard.account));
        let source = Source::Shard { account: shard.account.clone() };
        let disposition = self.enforce(&source, &journal, "shard");
        self.metrics.run_seconds.observe(started.elapsed().as_secs_f64());
        let result = match &disposition {
            Disposition::Done(r) => *r,
            Disposition::Failed(_) => "failed",
            Disposition::Retry(_) => "retry",
        };
        self.metrics.runs.get_or_create(&vec![("result", result.to_string())]).inc();
        disposition
    }

    /// Plans (and, unless a dry run, applies) `source`, journaling to `journal`; the plan
    /// is kept beside the journal. A shard or an event collects only its account.
    fn enforce(&self, source: &Source, journal: &Path, kind: &str) -> Disposition {
        let before = self.backend.call_counts();
        let result = self.enforce_inner(self.policy, source, journal);
        self.metrics.ec2_calls(&before, &self.backend.call_counts());
        let disposition = match result {
            Ok(result) => Disposition::Done(result),
            Err(e) if e.chain().any(|c| c.downcast_ref::<Busy>().is_some()) => Disposition::Retry(format!("{e:#}")),
            Err(e) if e.chain().any(|c| c.downcast_ref::<GuardrailStop>().is_some()) => {
                self.metrics.handled(kind, "stopped");
                return Disposition::Failed(format!("{e:#}"));
            }
            Err(e) => Disposition::Failed(format!("{e:#}")),
        };
        let result = match &disposition {
            Disposition::Done(r) => *r,
            Disposition::Failed(_) => "failed",
            Disposition::Retry(_) => "retry",
        };
        self.metrics.handled(kind, result);
        disposition
    }

    fn enforce_inner(&self, policy: &Policy, source: &Source, journal: &Path) -> anyhow::Result<&'static str> {
        if let Some(dir) = journal.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let now = (self.clock)();
        // Queue behind another worker on the same state rather than bounce the message.
        let _locks = enforce::lock(self.backend, journal, self.settings.visibility / 2)?;
        let mut prepared =
            enforce::prepare(policy, self.plugins, self.backend, journal, Origin::Fresh(source), now, &|_, _| {})?;
        for note in &prepared.notes {
            tracing::info!("{note}");
        }
        self.metrics.plan(&prepared.plan);
        let plan_file = journal.with_extension("plan.json");
        crate::files::write_atomically(&plan_file, serde_json::to_string_pretty(&prepared.plan)?.as_bytes())?;
        if let Some(stop) = prepared.stop.take() {
            return Err(stop.into());
        }
        if self.settings.dry_run {
            tracing::info!(actions = prepared.plan.actions.len(), plan = %plan_file.display(), "dry run: planned, nothing changed");
            return Ok("planned");
        }
        if prepared.plan.actions.is_empty() {
            return Ok("no-change");
        }
        let metrics = &self.metrics;
        let report = prepared.execute(policy, self.backend, now, &|action, outcome| {
            let result = match outcome {
                ActionOutcome::Done { .. } => "done",
                ActionOutcome::Skipped { .. } => "skipped",
                ActionOutcome::Failed { .. } => "failed",
            };
            metrics.action(&action.op.kind().to_string(), result);
            tracing::info!(action = %action.id, image = %action.image_id, op = %action.op.verb(), result, "applied");
        })?;
        if report.failed.is_empty() {
            Ok("applied")
        } else {
            anyhow::bail!("{} action(s) failed (journal {})", report.failed.len(), journal.display())
        }
    }

    /// Keeps the newest `keep_runs` run directories.
    fn prune_runs(&self) {
        let runs = self.settings.state_dir.join("runs");
        let Ok(entries) = std::fs::read_dir(&runs) else { return };
        let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        let excess = dirs.len().saturating_sub(self.settings.keep_runs.max(1));
        for dir in &dirs[..excess] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Sends one shard to the queue. On a FIFO queue the deduplication id comes from the tick
/// and account, so every scheduler that enqueues the same tick makes one message.
pub fn enqueue(queue: &Queue, shard: &Shard) -> anyhow::Result<()> {
    let body = serde_json::to_string(shard)?;
    let dedup = shard.dedup_id();
    queue.send(&body, queue.is_fifo().then_some((shard.account.as_str(), dedup.as_str())))
}

/// Runs `work` while a second thread extends the message's visibility every half
/// timeout, so a long run never lets the message reappear to another worker.
fn with_heartbeat<T>(queue: &Queue, receipt: &str, visibility: Duration, work: impl FnOnce() -> T) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let every = (visibility / 2).max(Duration::from_secs(1));
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every) {
                if let Err(e) = queue.set_visibility(receipt, visibility) {
                    tracing::warn!("extending a message's visibility: {e:#}");
                }
            }
        });
        let out = work();
        drop(done);
        out
    })
}
