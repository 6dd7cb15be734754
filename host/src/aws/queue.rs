//! Amazon SQS through aws-sdk-sqs: the queue `serve` consumes (live events, shards of
//! scheduled runs) and `enqueue-run` fills. Blocking calls on a runtime of its own, like
//! the EC2 backend, so the service's loop stays plain code.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::AwsOptions;

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    /// The handle to delete it or change its visibility with.
    pub receipt: String,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent, Unix milliseconds (for queue lag).
    pub sent_ms: Option<i64>,
}

/// A queue.
pub struct Queue {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_sqs::Client,
    url: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("url", &self.url).finish_non_exhaustive()
    }
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    anyhow::anyhow!("{}", super::errors::causes(&e))
}

/// The region of a queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`), if it
/// names one.
pub fn region_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if crate::model::is_region_name(region) => Some(region.to_string()),
        _ => None,
    }
}

impl Queue {
    /// Connects to the queue at `url` with the standard credential chain (or `options`'
    /// profile and endpoint). `region` is used when the URL names none (an emulator's).
    pub fn connect(url: &str, options: &AwsOptions, region: &str) -> anyhow::Result<Queue> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the SQS runtime")?;
        let region = region_of(url).unwrap_or_else(|| region.to_string());
        let config = runtime.block_on(super::connect::sdk_config(options, &region))?;
        let client = aws_sdk_sqs::Client::new(&config);
        Ok(Queue { runtime, client, url: url.to_string() })
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether it is a FIFO queue (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    /// Long-polls for up to `max` messages, waiting up to `wait`; each is invisible to
    /// other consumers for `visibility`.
    pub fn receive(&self, max: i32, wait: Duration, visibility: Duration) -> anyhow::Result<Vec<Received>> {
        let call = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp);
        let out =
            self.runtime.block_on(call.send()).map_err(err).with_context(|| format!("receiving from {}", self.url))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
                Some(Received {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    sent_ms: attr(MessageSystemAttributeName::SentTimestamp).and_then(|v| v.parse().ok()),
                })
            })
            .collect())
    }

    /// Deletes a handled message.
    pub fn delete(&self, receipt: &str) -> anyhow::Result<()> {
        let call = self.client.delete_message().queue_url(&self.url).receipt_handle(receipt);
        self.runtime
            .block_on(call.send())
            .map_err(err)
            .with_context(|| format!("deleting a message from {}", self.url))?;
        Ok(())
    }

    /// Makes a message invisible for `timeout` more (extends work on it), or visible at
    /// once with zero (hands it back).
    pub fn set_visibility(&self, receipt: &str, timeout: Duration) -> anyhow::Result<()> {
        let call = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(timeout.as_secs().min(43_200) as i32);
        self.runtime
            .block_on(call.send())
            .map_err(err)
            .with_context(|| format!("changing visibility in {}", self.url))?;
        Ok(())
    }

    /// Sends a message; on a FIFO queue with a group and a deduplication id.
    pub fn send(&self, body: &str, fifo: Option<(&str, &str)>) -> anyhow::Result<()> {
        let mut call = self.client.send_message().queue_url(&self.url).message_body(body);
        if let Some((group, dedup)) = fifo {
            call = call.message_group_id(group).message_deduplication_id(dedup);
        }
        self.runtime.block_on(call.send()).map_err(err).with_context(|| format!("sending to {}", self.url))?;
        Ok(())
    }

    /// The receive count after which SQS moves a message to the dead-letter queue, from
    /// the queue's redrive policy; `None` when it has none.
    pub fn max_receive_count(&self) -> anyhow::Result<Option<u32>> {
        let call =
            self.client.get_queue_attributes().queue_url(&self.url).attribute_names(QueueAttributeName::RedrivePolicy);
        let out = self.runtime.block_on(call.send()).map_err(err).with_context(|| format!("reading {}", self.url))?;
        let policy = out.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)).cloned();
        Ok(policy.and_then(|p| {
            let v: serde_json::Value = serde_json::from_str(&p).ok()?;
            let n = &v["maxReceiveCount"];
            n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())).map(|n| n as u32)
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_queue_url_names_its_region_when_it_is_amazons() {
        assert_eq!(
            super::region_of("https://sqs.eu-west-1.amazonaws.com/111111111111/ami-events").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(super::region_of("http://127.0.0.1:5000/123456789012/q"), None);
        assert_eq!(super::region_of("not a url"), None);
    }
}
