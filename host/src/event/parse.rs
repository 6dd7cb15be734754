//! Parsing live events: EventBridge "EC2 AMI State Change" and "AWS API Call via
//! CloudTrail" records, turned into typed events about images.

use serde_json::Value;

use crate::model::{EventKind, Principal, is_image_id};

/// One parsed event about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEvent {
    pub kind: EventKind,
    pub account: String,
    pub region: String,
    pub image_id: String,
}

/// What an input event turned into: events, or a note on why it needs no evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Events(Vec<SourceEvent>),
    Ignored(String),
}

fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| format!("field `{path}` is missing"))?;
    }
    Ok(cur)
}

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    field(v, path)?.as_str().ok_or_else(|| format!("field `{path}` is not a string"))
}

fn image_id(v: &Value, path: &str) -> Result<String, String> {
    let id = text(v, path)?;
    if is_image_id(id) { Ok(id.to_string()) } else { Err(format!("field `{path}`: `{id}` is not an AMI id")) }
}

/// Parses one EventBridge event (JSON text).
pub fn parse(text_in: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(text_in).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("an event must be a JSON object".into());
    }
    let source = text(&v, "source")?;
    if source != "aws.ec2" {
        return Err(format!("field `source` is `{source}`; only aws.ec2 events are understood"));
    }
    match text(&v, "detail-type")? {
        "EC2 AMI State Change" => state_change(&v),
        "AWS API Call via CloudTrail" => cloudtrail(&v),
        other => Err(format!("field `detail-type`: `{other}` is not an event amiwarden understands")),
    }
}

fn state_change(v: &Value) -> Result<Parsed, String> {
    let image_id = image_id(v, "detail.ImageId")?;
    let kind = match text(v, "detail.State")? {
        "available" => EventKind::Created,
        "deregistered" => EventKind::Deregistered,
        "disabled" => EventKind::Disabled,
        "failed" => {
            return Ok(Parsed::Ignored(format!("image {image_id} failed to become available; nothing to evaluate")));
        }
        "pending" => {
            return Ok(Parsed::Ignored(format!("image {image_id} is pending; it is evaluated once available")));
        }
        other => return Err(format!("field `detail.State`: `{other}` is not an AMI state")),
    };
    Ok(Parsed::Events(vec![SourceEvent {
        kind,
        account: text(v, "account")?.to_string(),
        region: text(v, "region")?.to_string(),
        image_id,
    }]))
}

fn principals(items: Option<&Value>, path: &str) -> Result<Vec<Principal>, String> {
    let Some(items) = items else { return Ok(Vec::new()) };
    let list =
        items.get("items").and_then(Value::as_array).ok_or_else(|| format!("field `{path}.items` is not a list"))?;
    list.iter()
        .map(|item| {
            let pick = |k: &str| item.get(k).and_then(Value::as_str);
            let p = if pick("group") == Some("all") {
                Principal::Public
            } else if let Some(s) = pick("userId").or(pick("organizationArn")).or(pick("organizationalUnitArn")) {
                s.parse().map_err(|e| format!("field `{path}.items`: {e}"))?
            } else {
                return Err(format!(
                    "field `{path}.items`: an item names no userId, group, organizationArn or organizationalUnitArn"
                ));
            };
            Ok(p)
        })
        .collect()
}

fn cloudtrail(v: &Value) -> Result<Parsed, String> {
    let name = text(v, "detail.eventName")?;
    if let Some(code) = v.pointer("/detail/errorCode").and_then(Value::as_str) {
        return Ok(Parsed::Ignored(format!("{name} failed with {code}; a failed call changes nothing")));
    }
    let account = v
        .pointer("/detail/recipientAccountId")
        .and_then(Value::as_str)
        .map(Ok)
        .unwrap_or_else(|| text(v, "account"))?
        .to_string();
    let region = v
        .pointer("/detail/awsRegion")
        .and_then(Value::as_str)
        .map(Ok)
        .unwrap_or_else(|| text(v, "region"))?
        .to_string();
    let one = |kind: EventKind, image_id: String| {
        Ok(Parsed::Events(vec![SourceEvent { kind, account: account.clone(), region: region.clone(), image_id }]))
    };
    match name {
        "CreateImage" => one(EventKind::Created, image_id(v, "detail.responseElements.imageId")?),
        "RegisterImage" => one(EventKind::Registered, image_id(v, "detail.responseElements.imageId")?),
        "CopyImage" => one(EventKind::Copied, image_id(v, "detail.responseElements.imageId")?),
        "DeregisterImage" => one(EventKind::Deregistered, image_id(v, "detail.requestParameters.imageId")?),
        "EnableImageDeprecation" => one(EventKind::Deprecated, image_id(v, "detail.requestParameters.imageId")?),
        "DisableImage" => one(EventKind::Disabled, image_id(v, "detail.requestParameters.imageId")?),
        "ModifyImageAttribute" => {
            let id = image_id(v, "detail.requestParameters.imageId")?;
            let perm = v.pointer("/detail/requestParameters/launchPermission");
            let Some(perm) = perm else {
                return Ok(Parsed::Ignored(format!("ModifyImageAttribute on {id} changes no launch permission")));
            };
            let added = principals(perm.get("add"), "detail.requestParameters.launchPermission.add")?;
            let removed = principals(perm.get("remove"), "detail.requestParameters.launchPermission.remove")?;
            let mut events = Vec::new();
            if !added.is_empty() {
                events.push(SourceEvent {
                    kind: EventKind::Shared(added),
                    account: account.clone(),
                    region: region.clone(),
                    image_id: id.clone(),
                });
            }
            if !removed.is_empty() {
                events.push(SourceEvent {
                    kind: EventKind::Unshared(removed),
                    account: account.clone(),
                    region: region.clone(),
                    image_id: id,
                });
            }
            Ok(Parsed::Events(events))
        }
        "CreateTags" | "DeleteTags" => {
            let items = v
                .pointer("/detail/requestParameters/resourcesSet/items")
                .and_then(Value::as_array)
                .ok_or("field `detail.requestParameters.resourcesSet.items` is missing")?;
            let events: Vec<SourceEvent> = items
                .iter()
                .filter_map(|i| i.get("resourceId").and_then(Value::as_str))
                .filter(|id| is_image_id(id))
                .map(|id| SourceEvent {
                    kind: EventKind::TagsChanged,
                    account: account.clone(),
                    region: region.clone(),
                    image_id: id.to_string(),
                })
                .collect();
            if events.is_empty() {
                Ok(Parsed::Ignored(format!("{name} touched no image")))
            } else {
                Ok(Parsed::Events(events))
            }
        }
        other => Err(format!("field `detail.eventName`: `{other}` is not an AMI API call amiwarden understands")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_with_an_ou_becomes_a_shared_event() {
        let e = r#"{"source":"aws.ec2","detail-type":"AWS API Call via CloudTrail","account":"111111111111","region":"us-east-1",
          "detail":{"eventName":"ModifyImageAttribute","awsRegion":"us-east-1","recipientAccountId":"111111111111",
          "requestParameters":{"imageId":"ami-0123456789abcdef0","attributeType":"launchPermission",
          "launchPermission":{"add":{"items":[{"organizationalUnitArn":"arn:aws:organizations::111111111111:ou/o-abc/ou-ab12-cdef3456"},{"group":"all"}]}}}}}"#;
        let Parsed::Events(events) = parse(e).unwrap() else { panic!() };
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0].kind, EventKind::Shared(p) if p.len() == 2 && p[1] == Principal::Public));
    }

    #[test]
    fn a_failed_api_call_is_ignored_with_a_note() {
        let e = r#"{"source":"aws.ec2","detail-type":"AWS API Call via CloudTrail","account":"111111111111","region":"us-east-1",
          "detail":{"eventName":"DeregisterImage","errorCode":"Client.UnauthorizedOperation","requestParameters":{"imageId":"ami-0123456789abcdef0"}}}"#;
        assert!(matches!(parse(e).unwrap(), Parsed::Ignored(note) if note.contains("UnauthorizedOperation")));
    }

    #[test]
    fn malformed_events_name_the_field() {
        let cases = [
            ("[]", "JSON object"),
            (r#"{"source":"aws.s3"}"#, "`source`"),
            (
                r#"{"source":"aws.ec2","detail-type":"EC2 AMI State Change","detail":{"ImageId":"nope","State":"available"}}"#,
                "`detail.ImageId`",
            ),
            (
                r#"{"source":"aws.ec2","detail-type":"AWS API Call via CloudTrail","account":"1","region":"r","detail":{"eventName":"RunInstances"}}"#,
                "`detail.eventName`",
            ),
        ];
        for (event, needle) in cases {
            let err = parse(event).unwrap_err();
            assert!(err.contains(needle), "{event}: {err}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_as_an_event_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = super::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn arbitrary_json_shaped_events_never_panic(
            name in "[A-Za-z]{0,24}",
            state in "[a-z]{0,12}",
            id in "(ami-[0-9a-f]{17})|[a-z0-9-]{0,20}",
        ) {
            let cloudtrail = format!(
                r#"{{"source":"aws.ec2","detail-type":"AWS API Call via CloudTrail","account":"111111111111","region":"us-east-1",
                "detail":{{"eventName":"{name}","requestParameters":{{"imageId":"{id}","launchPermission":{{"add":{{"items":[{{"userId":"{state}"}}]}}}},
                "resourcesSet":{{"items":[{{"resourceId":"{id}"}}]}}}},"responseElements":{{"imageId":"{id}"}}}}}}"#
            );
            let _ = super::parse(&cloudtrail);
            let change = format!(
                r#"{{"source":"aws.ec2","detail-type":"EC2 AMI State Change","account":"1","region":"r","detail":{{"ImageId":"{id}","State":"{state}"}}}}"#
            );
            let _ = super::parse(&change);
        }
    }
}
