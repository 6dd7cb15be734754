//! Replication: copies selected images from the source regions to every target region
//! once, never copies a copy, and retires the replicas of a source that is gone (unless a
//! replica is still in use in its region).

mod config;

use std::cell::RefCell;
use std::collections::BTreeMap;

use amiwarden_sdk::prelude::*;
use amiwarden_sdk::{CopyRequest, ImageState, SOURCE_IMAGE_TAG};
use config::Config;

/// The replication policy.
#[derive(Default)]
pub struct Replication {
    config: Option<Config>,
    /// Whether any image of an account and region was inventoried, as learned once per
    /// instance: an instance sees one run's inventory, and a batch of replicas whose
    /// source is gone would otherwise list their source region once each.
    inventoried: RefCell<BTreeMap<(String, String), bool>>,
}

impl Policy for Replication {
    fn info() -> PluginInfo {
        PluginInfo::new("replication", env!("CARGO_PKG_VERSION"))
            .proposes([ActionKind::Copy, ActionKind::Deregister, ActionKind::DeleteSnapshots, ActionKind::Retain])
            .needs([InventoryNeed::Usage])
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        self.config = Some(Config::parse(config)?);
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let config = self.config.as_ref().ok_or_else(|| PolicyError::Failed("replication is not configured".into()))?;
        let image = &event.image;
        let now = event.evaluation_time;
        if let Some(source) = image.copied_from() {
            if matches!(event.kind, EventKind::Deregistered) {
                return Ok(Vec::new());
            }
            return self.retire_orphan(config, image, source, now);
        }
        if matches!(event.kind, EventKind::Deregistered) {
            if !config.source_regions.contains(&image.region) {
                return Ok(Vec::new());
            }
            let replicas = replicas_of(&image.account, &image.id)?;
            let gone = format!("{} in {}, which was deregistered", image.id, image.region);
            let replicas = replicas.iter().filter_map(|r| get_image(&r.id));
            return Ok(replicas.filter_map(|r| retire(config, &r, &gone, now)).collect());
        }
        copy(config, image, now)
    }
}

/// Copies of `image` to the target regions that have no replica of it yet.
fn copy(config: &Config, image: &Image, now: Timestamp) -> Result<Vec<Proposal>, PolicyError> {
    if !config.source_regions.contains(&image.region)
        || image.state != ImageState::Available
        || image.deprecation_time.is_some_and(|d| d <= now)
        || !config.select.selects(image)
    {
        return Ok(Vec::new());
    }
    let replicas = replicas_of(&image.account, &image.id)?;
    let mut proposals = Vec::new();
    for (region, target) in config.targets.iter().filter(|(region, _)| **region != image.region) {
        let here: Vec<&ImageSummary> = replicas.iter().filter(|r| r.region == *region).collect();
        if !here.is_empty() {
            if here.iter().all(|r| r.state == ImageState::Failed) {
                let ids: Vec<&str> = here.iter().map(|r| r.id.as_str()).collect();
                log(
                    LogLevel::Warn,
                    &format!(
                        "copy of {} to {region} failed ({}); deregister the failed copy to have it copied again",
                        image.id,
                        ids.join(", ")
                    ),
                );
            }
            continue;
        }
        let request = CopyRequest {
            region: region.clone(),
            encrypted: target.encrypted,
            kms_key_id: target.kms_key_id.clone(),
            copy_tags: config.copy_tags,
            name: Some(config.name.render(image, region)),
        };
        let reason = format!("selected by {}; no replica in {region} yet", config.select.label);
        proposals.push(Proposal::new(&image.id, Action::CopyToRegion(request), reason));
    }
    Ok(proposals)
}

impl Replication {
    /// Retires `replica` if its source is gone for sure: the source's region is a source
    /// region, it was inventoried in this run, and the source is not in it.
    fn retire_orphan(
        &self,
        config: &Config,
        replica: &Image,
        source: &str,
        now: Timestamp,
    ) -> Result<Vec<Proposal>, PolicyError> {
        let Some(source_region) = replica.copied_from_region() else {
            return Ok(Vec::new());
        };
        if !config.source_regions.iter().any(|r| r == source_region)
            || get_summary(source).is_some_and(|s| s.state != ImageState::Deregistered)
        {
            return Ok(Vec::new());
        }
        if !self.inventoried(&replica.account, source_region)? {
            let message = format!(
                "{}: its source {source} is not in scope, but no image of {} in {source_region} is either; \
                 not treating the source as gone",
                replica.id, replica.account
            );
            log(LogLevel::Info, &message);
            return Ok(Vec::new());
        }
        let gone = format!("{source} in {source_region}, which no longer exists");
        Ok(retire(config, replica, &gone, now).into_iter().collect())
    }

    /// Whether any image of `account` in `region` was inventoried in this run.
    fn inventoried(&self, account: &str, region: &str) -> Result<bool, PolicyError> {
        let key = (account.to_string(), region.to_string());
        if let Some(&known) = self.inventoried.borrow().get(&key) {
            return Ok(known);
        }
        let found = !query_summaries(&ImageQuery::location(account, region))
            .map_err(|err| PolicyError::Failed(format!("listing {account}/{region}: {err}")))?
            .is_empty();
        self.inventoried.borrow_mut().insert(key, found);
        Ok(found)
    }
}

/// Deregisters a replica of a gone source in a target region, or retains it while in use.
fn retire(config: &Config, replica: &Image, gone: &str, now: Timestamp) -> Option<Proposal> {
    if !config.targets.contains_key(&replica.region) || replica.state == ImageState::Deregistered {
        return None;
    }
    Some(match replica.in_use_reason(now, config.in_use_window) {
        Some(in_use) => {
            let reason = format!("{in_use} in {}; it is a replica of {gone}", replica.region);
            Proposal::new(&replica.id, Action::Retain, reason)
        }
        None => {
            let snapshots = if config.delete_snapshots { " with its snapshots" } else { "" };
            let reason = format!("replica of {gone}: deregister{snapshots}");
            Proposal::new(&replica.id, Action::Deregister(config.delete_snapshots), reason)
        }
    })
}

/// Every replica of `source` in the account, recognised by EC2's source id or by the
/// host's source tag, sorted by region, creation time and id (summaries: the copy step
/// reads only their regions and states).
fn replicas_of(account: &str, source: &str) -> Result<Vec<ImageSummary>, PolicyError> {
    let base = ImageQuery {
        account: Some(account.into()),
        region: None,
        tag_key: None,
        tag_value: None,
        name_prefix: None,
        source_image_id: None,
    };
    let by_id = ImageQuery { source_image_id: Some(source.into()), ..base.clone() };
    let by_tag = ImageQuery { tag_key: Some(SOURCE_IMAGE_TAG.into()), tag_value: Some(source.into()), ..base };
    let failed = |err: String| PolicyError::Failed(format!("looking up replicas of {source}: {err}"));
    let mut replicas = query_summaries(&by_id).map_err(failed)?;
    replicas.extend(query_summaries(&by_tag).map_err(failed)?);
    replicas.retain(|r| r.id != source && r.state != ImageState::Deregistered);
    replicas.sort_by(|a, b| (&a.region, a.creation_time, &a.id).cmp(&(&b.region, b.creation_time, &b.id)));
    replicas.dedup_by(|a, b| a.id == b.id);
    Ok(replicas)
}

export_policy!(Replication);

#[cfg(test)]
mod tests;
