//! What a queue message holds: a live EC2 event (raw as EventBridge delivers it to SQS,
//! wrapped in an SNS notification, or a batch of them), or one shard of a scheduled run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One shard of a scheduled run: every image of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Always `shard`: marks the message as ours.
    pub amiwarden: String,
    /// The tick the run is for (RFC 3339), which also names its run directory.
    pub tick: String,
    pub account: String,
}

impl Shard {
    /// The shard of `account` for `tick`.
    pub fn new(tick: &str, account: &str) -> Shard {
        Shard { amiwarden: "shard".into(), tick: tick.into(), account: account.into() }
    }

    /// The FIFO deduplication id: the same tick and account enqueued by any number of
    /// schedulers is one message.
    pub fn dedup_id(&self) -> String {
        crate::model::id::stable_id("shard", format!("{}/{}", self.tick, self.account).as_bytes(), 32)
    }
}

/// A message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// EventBridge events (JSON text each), to evaluate in order.
    Events(Vec<String>),
    /// A shard of a scheduled run.
    Shard(Shard),
}

/// The longest message body read, in bytes (SQS allows 256 KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// Parses a message body; an error says why it is not one we understand (the message
/// then goes to the dead-letter queue, it is never dropped).
pub fn parse(body: &str) -> Result<Message, String> {
    if body.len() > MAX_BODY {
        return Err(format!("the body is {} bytes, over the limit of {MAX_BODY}", body.len()));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    from_value(value, 0)
}

fn from_value(value: Value, depth: u8) -> Result<Message, String> {
    if depth > 2 {
        return Err("envelopes nested more than twice".into());
    }
    match value {
        Value::Array(items) => {
            let mut events = Vec::new();
            for item in items {
                match from_value(item, depth + 1)? {
                    Message::Events(list) => events.extend(list),
                    Message::Shard(_) => return Err("a batch holds a shard message".into()),
                }
            }
            if events.is_empty() { Err("an empty batch".into()) } else { Ok(Message::Events(events)) }
        }
        Value::Object(ref map) => {
            if map.get("amiwarden").and_then(Value::as_str) == Some("shard") {
                return serde_json::from_value(value).map(Message::Shard).map_err(|e| format!("a shard message: {e}"));
            }
            if map.get("Type").and_then(Value::as_str) == Some("Notification") {
                // SNS: the event is the `Message` field's text.
                let inner =
                    map.get("Message").and_then(Value::as_str).ok_or("an SNS notification without `Message`")?;
                let inner: Value =
                    serde_json::from_str(inner).map_err(|e| format!("the SNS `Message` is not JSON: {e}"))?;
                return from_value(inner, depth + 1);
            }
            if map.contains_key("detail-type") && map.contains_key("source") {
                return Ok(Message::Events(vec![value.to_string()]));
            }
            Err("neither an EventBridge event (no `source` and `detail-type`), an SNS notification, nor a shard".into())
        }
        _ => Err("the body is not a JSON object or array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"version":"0","id":"1","detail-type":"EC2 AMI State Change","source":"aws.ec2","account":"111111111111","region":"us-east-1","detail":{"ImageId":"ami-0123456789abcdef0","State":"available"}}"#;

    #[test]
    fn events_arrive_raw_wrapped_by_sns_or_batched() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": EVENT}).to_string();
        let batch = format!("[{EVENT},{EVENT}]");
        let rows = [(EVENT.to_string(), 1), (sns, 1), (batch, 2)];
        for (body, n) in rows {
            match parse(&body) {
                Ok(Message::Events(list)) => {
                    assert_eq!(list.len(), n, "{body}");
                    assert!(list.iter().all(|e| crate::event::parse(e).is_ok()), "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_shard_round_trips_and_its_dedup_id_depends_only_on_tick_and_account() {
        let shard = Shard::new("2026-11-24T03:00:00Z", "111111111111");
        let body = serde_json::to_string(&shard).unwrap();
        assert_eq!(parse(&body), Ok(Message::Shard(shard.clone())));
        assert_eq!(shard.dedup_id(), Shard::new("2026-11-24T03:00:00Z", "111111111111").dedup_id());
        assert_ne!(shard.dedup_id(), Shard::new("2026-11-24T04:00:00Z", "111111111111").dedup_id());
    }

    #[test]
    fn what_is_not_ours_says_why() {
        let rows = [
            ("not json", "not JSON"),
            ("42", "not a JSON object"),
            (r#"{"hello": 1}"#, "neither"),
            (r#"{"Type": "Notification", "Message": "{"}"#, "SNS `Message` is not JSON"),
            ("[]", "empty batch"),
            (r#"{"amiwarden": "shard", "tick": 1}"#, "a shard message"),
        ];
        for (body, needle) in rows {
            let err = parse(body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        assert!(parse(&"x".repeat(MAX_BODY + 1)).unwrap_err().contains("over the limit"));
    }
}
