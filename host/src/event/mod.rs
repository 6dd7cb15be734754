//! Events, from any source: a scheduled run turns every image into an event; a live
//! EventBridge event (parsed in `parse`) becomes events about the images it names, each
//! judged as the inventory shows the image now.

mod parse;

pub use parse::{Parsed, SourceEvent, parse};

use crate::config::{Policy, Scope};
use crate::error::InputError;
use crate::inventory::Inventory;
use crate::model::{EventKind, Image, ImageEvent, ImageState, Timestamp};
use crate::plan::Source;

/// What a source needs collected: the whole scope for a scheduled run; one account for
/// a shard; the accounts an event names (all their regions in scope: replicas and their
/// sources live in one account, and a plugin must see a source's region to tell "gone"
/// from "out of view"). Only collection narrows: guardrails keep the policy's scope.
pub fn collection_scope(policy: &Policy, source: &Source) -> Scope {
    let accounts = match source {
        Source::Scheduled => return policy.scope.clone(),
        Source::Shard { account } => [account.clone()].into(),
        Source::Event { text, .. } => match parse(text) {
            Ok(Parsed::Events(list)) => list.into_iter().map(|e| e.account).collect(),
            Ok(Parsed::Ignored(_)) => Default::default(),
            Err(_) => return policy.scope.clone(),
        },
    };
    Scope::of(policy.scope.accounts.intersection(&accounts).cloned().collect(), policy.scope.regions.clone())
}

/// The events of a run.
#[derive(Debug, Clone)]
pub enum Events {
    /// One scheduled event per image of the inventory, as of this time: made a batch at
    /// a time when the plugins are asked (all at once, 100,000 cloned images and their
    /// lowered copies held hundreds of MB).
    Scheduled(Timestamp),
    /// These events (a live event's, or a few images asked again).
    Listed(Vec<ImageEvent>),
}

impl Events {
    /// How many events there are.
    pub fn len(&self, inventory: &Inventory) -> usize {
        match self {
            Events::Scheduled(_) => inventory.images().len(),
            Events::Listed(list) => list.len(),
        }
    }
}

/// The events a source turns into, with notes on what was ignored.
pub fn events(
    policy: &Policy,
    inventory: &Inventory,
    source: &Source,
    now: Timestamp,
) -> Result<(Events, Vec<String>), InputError> {
    match source {
        Source::Scheduled | Source::Shard { .. } => Ok((Events::Scheduled(now), Vec::new())),
        Source::Event { text, origin } => {
            let parsed = parse(text).map_err(|e| InputError(format!("event {origin}: {e}")))?;
            let mut notes = Vec::new();
            let mut out = Vec::new();
            match parsed {
                Parsed::Ignored(note) => notes.push(format!("event {origin}: {note}")),
                Parsed::Events(list) => {
                    let raw: std::sync::Arc<str> = text.as_str().into();
                    let mut seen = std::collections::BTreeSet::new();
                    let mut repeated = 0;
                    for e in list {
                        match event_image(policy, inventory, &e) {
                            // One image named twice for the same change is one event.
                            Ok((kind, image, _)) if !seen.insert((kind.clone(), image.id.clone())) => repeated += 1,
                            Ok((kind, image, note)) => {
                                notes.extend(note.map(|n| format!("event {origin}: {n}")));
                                out.push(ImageEvent { kind, image, evaluation_time: now, raw: raw.clone() })
                            }
                            Err(note) => notes.push(format!("event {origin}: {note}")),
                        }
                    }
                    if repeated > 0 {
                        notes.push(format!("event {origin}: {repeated} repeated mention(s) of an image merged"));
                    }
                }
            }
            Ok((Events::Listed(out), notes))
        }
    }
}

/// The image an event is about, as the inventory shows it now: the event is a hint to
/// look, EC2 is the truth. An event that disagrees with the inventory (an image said to
/// be deregistered or disabled that EC2 still lists otherwise) is noted and the image is
/// judged as a scheduled run would judge it.
fn event_image(
    policy: &Policy,
    inventory: &Inventory,
    e: &SourceEvent,
) -> Result<(EventKind, Image, Option<String>), String> {
    if !policy.scope.accounts.contains(&e.account) || !policy.scope.regions.contains(&e.region) {
        return Err(format!("{} in {}/{} is outside the policy's scope; ignored", e.image_id, e.account, e.region));
    }
    let anywhere = inventory.get(&e.image_id);
    let known = anywhere.filter(|i| i.account == e.account && i.region == e.region);
    if let (None, Some(image)) = (known, anywhere) {
        // Image ids are unique across regions: an event that places a live image elsewhere
        // is wrong (or forged), and "gone" there would retire what depends on it here.
        return Ok((
            EventKind::Scheduled,
            image.clone(),
            Some(format!(
                "it names {} in {}/{}, but EC2 lists it in {}/{}; judged as EC2 shows it",
                e.image_id, e.account, e.region, image.account, image.region
            )),
        ));
    }
    match (&e.kind, known) {
        (EventKind::Deregistered, None) => {
            Ok((EventKind::Deregistered, gone_image(None, &e.account, &e.region, &e.image_id), None))
        }
        (EventKind::Deregistered, Some(image)) => Ok((
            EventKind::Scheduled,
            image.clone(),
            Some(format!("it says {} was deregistered, but EC2 still lists it; judged as EC2 shows it", e.image_id)),
        )),
        (EventKind::Disabled, Some(image)) if image.state != ImageState::Disabled => Ok((
            EventKind::Scheduled,
            image.clone(),
            Some(format!("it says {} was disabled, but EC2 shows it enabled; judged as EC2 shows it", e.image_id)),
        )),
        (kind, Some(image)) => Ok((kind.clone(), image.clone(), None)),
        (_, None) => {
            Err(format!("{} is not in {}/{} (gone since the event?); ignored", e.image_id, e.account, e.region))
        }
    }
}

/// The scheduled event of one image.
pub fn scheduled_event(image: &Image, now: Timestamp) -> ImageEvent {
    ImageEvent { kind: EventKind::Scheduled, image: image.clone(), evaluation_time: now, raw: "".into() }
}

/// An event about an image that is gone: the last known image or a minimal stand-in.
pub fn gone_image(known: Option<&Image>, account: &str, region: &str, image_id: &str) -> Image {
    let mut image = known.cloned().unwrap_or_else(|| Image {
        id: image_id.to_string(),
        account: account.to_string(),
        region: region.to_string(),
        name: String::new(),
        description: String::new(),
        creation_time: Timestamp(0),
        state: ImageState::Deregistered,
        architecture: crate::model::Architecture::X86_64,
        platform: Default::default(),
        root_device_type: Default::default(),
        public: false,
        launch_permissions: None,
        tags: Default::default(),
        block_devices: Vec::new(),
        deprecation_time: None,
        source_image_id: None,
        source_region: None,
        deregistration_protection: None,
        recycle_bin_days: None,
        usage: Default::default(),
        monthly_cost: 0,
    });
    image.state = ImageState::Deregistered;
    image
}
