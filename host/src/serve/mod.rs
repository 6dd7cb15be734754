//! `amiwarden serve`: enforcement as a long-running service. A schedule (cron, UTC)
//! starts runs; live EC2 events and shards of scheduled runs arrive through Amazon SQS;
//! any number of workers share one queue. Every message goes through `enforce` (locks,
//! journal, guardrails, re-reads) and is deleted only once its actions are journaled; a
//! message that keeps failing stays in the queue until SQS moves it to the dead-letter
//! queue. See docs/serve.md.

mod ledger;
mod message;
pub mod metrics;
mod receive;
mod schedule;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use message::{Message, Shard};
pub use metrics::Metrics;
pub use schedule::Schedule;

use crate::aws::queue::Queue;
use crate::backend::{ActionOutcome, Backend};
use crate::config::Policy;
use crate::enforce::{self, Origin};
use crate::error::{Busy, GuardrailStop};
use crate::model::Timestamp;
use crate::plan::Source;
use crate::plugin::Plugin;
use upkeep::{PRUNE_EVERY, retry_pause};

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

/// How far ahead of this worker's clock a shard's tick may be (another scheduler's clock).
const CLOCK_SKEW_SECONDS: i64 = 300;
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
        // SQS or the disk failing (a network blip, a throttled receive, a full disk) is
        // logged and tried again, waiting longer after each failure in a row: the service
        // outlives what the next loop may not see.
        let mut failures: u32 = 0;
        let mut pruned: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                self.prune_events();
                pruned = Some(Instant::now());
            }
            let step = self.tick(started).map(|tick| {
                if let Some(tick) = tick {
                    tracing::info!(tick = %tick, "scheduled run handled");
                }
            });
            let step = step.context("the scheduler").and_then(|()| match self.queue {
                Some(_) => self.poll().map(|_| ()).context("receiving from the queue"),
                None => {
                    std::thread::sleep(Duration::from_millis(500).min(self.settings.wait));
                    Ok(())
                }
            });
            match step {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = retry_pause(failures);
                    tracing::warn!("{e:#}; trying again in {} s", pause.as_secs());
                    self.metrics.handled("service", "error");
                    self.sleep_unless_stopped(pause);
                }
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
                    // A message is one run, however many events it holds.
                    last = self.handle_event(&format!("{id}-{n}"), text, &format!("message {id}"));
                    if !matches!(last, Disposition::Done(_)) {
                        break;
                    }
                }
                last
            }
        }
    }

    fn handle_event(&self, key: &str, text: &str, run: &str) -> Disposition {
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
            let disposition = match self.enforce(&source, &journal, "event", run) {
                // Nothing else judges this image again (a schedule may not run): the message
                // stays, to be tried again and, failing for good, dead-lettered for a person.
                Disposition::Done("incomplete") => Disposition::Failed(format!(
                    "event {key}: a plugin failed on its images (their destructive actions were blocked; the plan's \
                 errors are in {}); left in the queue to be judged again",
                    journal.with_extension("plan.json").display()
                )),
                other => other,
            };
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
        // The tick names the run's directory, and run directories are pruned oldest first
        // by name: a tick that is not one the scheduler writes (a time in its canonical
        // form, not later than now) would sort after every real run and have them pruned.
        let now = (self.clock)();
        match shard.tick.parse::<Timestamp>() {
            Ok(tick) if tick.to_string() == shard.tick && tick.0 <= now.0.saturating_add(CLOCK_SKEW_SECONDS) => {}
            _ => {
                self.metrics.runs.get_or_create(&vec![("result", "refused".to_string())]).inc();
                return Disposition::Failed(format!(
                    "shard of {}: its tick {:?} is not a scheduled time (RFC 3339 in UTC, as the scheduler writes it, not after {now})",
                    shard.account, shard.tick
                ));
            }
        }
        let started = Instant::now();
        let dir = self.settings.state_dir.join("runs").join(safe_name(&shard.tick));
        let journal = dir.join(format!("{}.jsonl", shard.account));
        let source = Source::Shard { account: shard.account.clone() };
        let disposition = self.enforce(&source, &journal, "shard", &format!("scheduled run {}", shard.tick));
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
    fn enforce(&self, source: &Source, journal: &Path, kind: &str, run: &str) -> Disposition {
        let before = self.backend.call_counts();
        let result = self.enforce_inner(self.policy, source, journal, run);
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

    /// `run` names the run this piece belongs to (its destructive actions are counted
    /// with the other pieces' against `guardrails.max_destructive`).
    fn enforce_inner(
        &self,
        policy: &Policy,
        source: &Source,
        journal: &Path,
        run: &str,
    ) -> anyhow::Result<&'static str> {
        if let Some(dir) = journal.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let now = (self.clock)();
        // Queue behind another worker on the same state rather than bounce the message.
        let _locks = enforce::lock(self.backend, journal, self.settings.visibility / 2)?;
        let mut prepared =
            enforce::prepare(policy, self.plugins, self.backend, journal, Origin::Fresh(source), now, &|_, _| {})?;
        // A plugin failed on some image: the rest is applied, and the run says it is not whole.
        let failed_somewhere = !prepared.plan.errors.is_empty();
        let whole = |done: &'static str| if failed_somewhere { "incomplete" } else { done };
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
            return Ok(whole("planned"));
        }
        if prepared.plan.actions.is_empty() {
            return Ok(whole("no-change"));
        }
        let ledger = ledger::Ledger::in_dir(&self.settings.state_dir);
        let pending = prepared
            .plan
            .actions
            .iter()
            .filter(|a| a.op.is_destructive() && prepared.journal.finished(&a.id).is_none())
            .count();
        let (earlier, limit) = (ledger.count(run), policy.guardrails.max_destructive);
        if pending > 0 && earlier + pending > limit {
            return Err(GuardrailStop(format!(
                "the {run} has done {earlier} destructive action(s) in its other pieces; these {pending} would take it \
                 past guardrails.max_destructive = {limit}; nothing was changed"
            ))
            .into());
        }
        let metrics = &self.metrics;
        let report = prepared.execute(policy, self.backend, now, &|action, outcome| {
            let result = match outcome {
                ActionOutcome::Done { .. } => "done",
                ActionOutcome::Skipped { .. } => "skipped",
                ActionOutcome::Failed { .. } => "failed",
            };
            metrics.action(&action.op.kind().to_string(), result);
            if action.op.is_destructive()
                && matches!(outcome, ActionOutcome::Done { .. })
                && let Err(e) = ledger.record(run, &action.id, now)
            {
                tracing::warn!("recording a destructive action of the {run}: {e:#}");
            }
            tracing::info!(action = %action.id, image = %action.image_id, op = %action.op.verb(), result, "applied");
        })?;
        if report.failed.is_empty() {
            Ok(whole("applied"))
        } else {
            anyhow::bail!("{} action(s) failed (journal {})", report.failed.len(), journal.display())
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
