//! Receiving from the queue: a batch at a time, every message of it kept invisible until
//! it is disposed of.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Disposition, Service};
use crate::apply::lock;
use crate::aws::queue::{Queue, Received};

impl Service<'_> {
    /// Receives one batch and handles it: every message of it stays invisible until it is
    /// disposed of; on stop, messages not yet started are handed back at once.
    pub fn poll(&self) -> anyhow::Result<usize> {
        let Some(queue) = self.queue else { return Ok(0) };
        let messages = queue.receive(10, self.settings.wait, self.settings.visibility)?;
        let n = messages.len();
        // Every message of the batch stays invisible until it is disposed of, not only the
        // one in work: the first ones' work may outlast the later ones' visibility timeout,
        // and those would reach another worker while this one still holds them.
        let pending: std::sync::Mutex<Vec<&str>> =
            std::sync::Mutex::new(messages.iter().map(|m| m.receipt.as_str()).collect());
        with_heartbeat(queue, &pending, self.settings.visibility, || {
            for (i, message) in messages.iter().enumerate() {
                if self.stop.load(Ordering::Relaxed) {
                    lock(&pending).clear();
                    for rest in &messages[i..] {
                        let _ = queue.set_visibility(&rest.receipt, Duration::ZERO);
                    }
                    break;
                }
                self.handle_received(queue, message, &pending);
            }
        });
        Ok(n)
    }

    pub(super) fn handle_received(&self, queue: &Queue, message: &Received, pending: &std::sync::Mutex<Vec<&str>>) {
        if let Some(sent) = message.sent_ms {
            let now_ms = (self.clock)().0.saturating_mul(1000);
            self.metrics.queue_lag_seconds.observe((now_ms.saturating_sub(sent)).max(0) as f64 / 1000.0);
        }
        let started = Instant::now();
        let disposition = self.handle(&message.id, &message.body);
        self.metrics.event_seconds.observe(started.elapsed().as_secs_f64());
        // No longer extended (under the lock: an extension in flight ends first, so none
        // lands after the message is deleted or handed back).
        lock(pending).retain(|r| *r != message.receipt);
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
}

/// Runs `work` while a second thread extends the visibility of every message still in
/// `pending` every half timeout, so a long run never lets a message reappear to another
/// worker while this one holds it.
fn with_heartbeat<T>(
    queue: &Queue,
    pending: &std::sync::Mutex<Vec<&str>>,
    visibility: Duration,
    work: impl FnOnce() -> T,
) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let every = (visibility / 2).max(Duration::from_secs(1));
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every) {
                for receipt in lock(pending).iter() {
                    if let Err(e) = queue.set_visibility(receipt, visibility) {
                        tracing::warn!("extending a message's visibility: {e:#}");
                    }
                }
            }
        });
        let out = work();
        drop(done);
        out
    })
}
