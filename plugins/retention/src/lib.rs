//! Retention: per image family, keep the newest N images and age the rest out through
//! deprecation, disabling and deregistration, never touching an image that is in use.

mod config;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use amiwarden_sdk::ImageState;
use amiwarden_sdk::prelude::*;
use config::Config;

/// The retention policy.
#[derive(Default)]
pub struct Retention {
    config: Option<Config>,
    /// Each name regex family's ranking keys, newest first, per (account, region,
    /// family): the instance lives for one batch of events, and the inventory does not
    /// change in it, so a family is fetched and sorted once per batch instead of once per
    /// event. (The host ranks tag families, once per run.)
    rankings: Rankings,
}

/// Ranking keys (creation time, id), newest first, by (account, region, family).
type Rankings = RefCell<BTreeMap<(String, String, String), Rc<Vec<(Timestamp, String)>>>>;

/// Where retention puts one image, before looking at its current state and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Not retention's business: no family, not available, one of the newest N, too young.
    Untouched,
    /// Exempt by a tag (the reason names it).
    Exempt(String),
    /// Aged out to this stage, with the reason.
    Aged { stage: Stage, why: String },
}

/// How far an aged-out image has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Deprecate(Timestamp),
    Disable,
    Deregister,
}

impl Policy for Retention {
    fn info() -> PluginInfo {
        PluginInfo::new("retention", env!("CARGO_PKG_VERSION"))
            .proposes([
                ActionKind::Deprecate,
                ActionKind::Disable,
                ActionKind::Deregister,
                ActionKind::DeleteSnapshots,
                ActionKind::Retain,
            ])
            .needs([InventoryNeed::Usage, InventoryNeed::Snapshots])
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        self.config = Some(Config::parse(config)?);
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let config = self.config.as_ref().ok_or_else(|| PolicyError::Failed("retention is not configured".into()))?;
        if matches!(event.kind, EventKind::Deregistered) {
            return Ok(Vec::new());
        }
        let image = &event.image;
        let now = event.evaluation_time;
        let source = image.copied_from().and_then(get_image).filter(|s| s.state != ImageState::Deregistered);
        let proposal = match source {
            Some(source) => follow_source(config, &self.rankings, image, &source, now)?,
            None => match fate(config, &self.rankings, image, now)? {
                Fate::Untouched => None,
                Fate::Exempt(why) => Some(Proposal::new(&image.id, Action::Retain, why)),
                Fate::Aged { stage, why } => act(config, image, stage, &why, now, None),
            },
        };
        Ok(proposal.into_iter().collect())
    }
}

/// A copy follows its source: aged out with it, kept when the source is exempt or in use,
/// and kept anyway while the copy itself is in use in its own region.
fn follow_source(
    config: &Config,
    rankings: &Rankings,
    copy: &Image,
    source: &Image,
    now: Timestamp,
) -> Result<Option<Proposal>, PolicyError> {
    let exempt = |why: &str| format!("copy of {} in {}, which is {why}", source.id, source.region);
    Ok(match fate(config, rankings, source, now)? {
        Fate::Untouched => None,
        Fate::Exempt(why) => Some(Proposal::new(&copy.id, Action::Retain, exempt(&why))),
        Fate::Aged { stage, why } => {
            let why = format!("copy of {} in {} ({why})", source.id, source.region);
            let source_use = source
                .in_use_reason(now, config.in_use_window)
                .map(|u| format!("its source {} is {u} in {}", source.id, source.region));
            act(config, copy, stage, &why, now, source_use)
        }
    })
}

/// Where `image` stands in its family, judged by age and rank alone.
fn fate(config: &Config, rankings: &Rankings, image: &Image, now: Timestamp) -> Result<Fate, PolicyError> {
    let Some(family) = config.family.of(image) else {
        return Ok(Fate::Untouched);
    };
    if !matches!(image.state, ImageState::Available | ImageState::Disabled) {
        return Ok(Fate::Untouched);
    }
    if let Some(tag) = config.exemptions.iter().find_map(|e| e.matched_by(image)) {
        return Ok(Fate::Exempt(format!("exempt from retention by tag {tag}")));
    }
    let position = match image.state {
        ImageState::Available => Some(newer(config, rankings, image, &family)?),
        _ => None,
    };
    if position.is_some_and(|p| p < config.keep_newest) {
        return Ok(Fate::Untouched);
    }
    let age = now - image.creation_time;
    let stage = if config.deregister_after.is_some_and(|d| age >= d) {
        Stage::Deregister
    } else if config.disable_after.is_some_and(|d| age >= d) {
        Stage::Disable
    } else if let Some(after) = config.deprecate_after {
        Stage::Deprecate(ceil_to_minute((image.creation_time + after).max(now)))
    } else {
        return Ok(Fate::Untouched);
    };
    let rank = match position {
        Some(p) => format!("{} newest", ordinal(p + 1)),
        None => "disabled".to_string(),
    };
    let why = format!(
        "{rank} in {} of {}/{}, keeping the newest {}; {} days old",
        config.family.describe(&family),
        image.account,
        image.region,
        config.keep_newest,
        age.max(0) / DAY
    );
    Ok(Fate::Aged { stage, why })
}

/// The image's position in its family, newest first: how many ranked members are newer.
/// The host ranks a tag family; a name regex family is ranked here, once per batch.
fn newer(config: &Config, rankings: &Rankings, image: &Image, family: &str) -> Result<usize, PolicyError> {
    if let Some(newer) = config.family.newer_on_host(image, family) {
        return newer;
    }
    let ranking = ranking(config, rankings, image, family)?;
    let key = (image.creation_time, image.id.as_str());
    Ok(ranking.partition_point(|(t, id)| (*t, id.as_str()) > key))
}

/// The ranking keys of `image`'s family in its account and region: available members that
/// rank in the region, newest first (creation time, then id).
fn ranking(
    config: &Config,
    rankings: &Rankings,
    image: &Image,
    family: &str,
) -> Result<Rc<Vec<(Timestamp, String)>>, PolicyError> {
    let key = (image.account.clone(), image.region.clone(), family.to_string());
    if let Some(found) = rankings.borrow().get(&key) {
        return Ok(Rc::clone(found));
    }
    let members = config.family.member_summaries(&image.account, &image.region, family)?;
    let mut keys: Vec<(Timestamp, String)> = members
        .iter()
        .filter(|m| m.state == ImageState::Available && ranks_in_region(m))
        .map(|m| (m.creation_time, m.id.clone()))
        .collect();
    keys.sort_by(|a, b| b.cmp(a));
    let keys = Rc::new(keys);
    rankings.borrow_mut().insert(key, Rc::clone(&keys));
    Ok(keys)
}

/// Whether a family member counts when ranking: originals, and copies whose source is gone.
fn ranks_in_region(member: &ImageSummary) -> bool {
    member.copied_from().is_none_or(|source| get_summary(source).is_none_or(|s| s.state == ImageState::Deregistered))
}

/// The proposal that moves `image` to `stage`, `Retain` when something uses it, or
/// nothing when it is there already.
fn act(
    config: &Config,
    image: &Image,
    stage: Stage,
    why: &str,
    now: Timestamp,
    other_use: Option<String>,
) -> Option<Proposal> {
    let (action, what) = match stage {
        Stage::Deprecate(at) => {
            if image.deprecation_time.is_some_and(|d| d <= at) {
                return None;
            }
            (Action::DeprecateAt(at), format!("deprecate at {}", rfc3339(at)))
        }
        Stage::Disable => {
            if image.state == ImageState::Disabled {
                return None;
            }
            (Action::Disable, format!("disable (older than {} days)", config.disable_after.unwrap_or(0) / DAY))
        }
        Stage::Deregister => {
            let snapshots = if config.delete_snapshots { " and delete its snapshots" } else { "" };
            let what =
                format!("deregister{snapshots} (older than {} days)", config.deregister_after.unwrap_or(0) / DAY);
            (Action::Deregister(config.delete_snapshots), what)
        }
    };
    let in_use = image.in_use_reason(now, config.in_use_window).or(other_use);
    Some(match in_use {
        Some(in_use) => {
            Proposal::new(&image.id, Action::Retain, format!("{in_use}; retention would otherwise {what}: {why}"))
        }
        None => Proposal::new(&image.id, action, format!("{what}: {why}")),
    })
}

/// Rounds up to a whole minute (EC2 rounds deprecation times to the minute).
fn ceil_to_minute(t: Timestamp) -> Timestamp {
    (t + 59).div_euclid(60) * 60
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`, ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A UTC timestamp as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn rfc3339(t: Timestamp) -> String {
    let (days, secs) = (t.div_euclid(DAY), t.rem_euclid(DAY));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

export_policy!(Retention);

#[cfg(test)]
mod tests;
