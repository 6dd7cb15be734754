//! Cost guard: monthly and per-plan budgets per account, region and image family. In
//! review it vetoes, in plan order, each action that would push a ledger over its budget;
//! optionally it proposes deregistering the oldest unused images of an over-budget family.

mod config;
mod money;

use amiwarden_sdk::prelude::*;
use amiwarden_sdk::{ImageState, Micros};
use config::{Budget, Config};
use money::usd;
use std::collections::BTreeMap;

/// The cost-guard policy.
#[derive(Default)]
pub struct CostGuard {
    config: Option<Config>,
    /// The review's running totals, carried from one part of the plan to the next.
    running: std::cell::RefCell<Running>,
}

/// What the review has counted so far, in plan order.
#[derive(Default)]
struct Running {
    monthly: BTreeMap<Ledger, Micros>,
    one_time: BTreeMap<Ledger, Micros>,
    images: BTreeMap<String, Option<Image>>,
}

/// One ledger a budget keeps: account part, region part (`*` when pooled), family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ledger {
    budget: usize,
    account: String,
    region: String,
    family: Option<String>,
}

impl Ledger {
    fn describe(&self, config: &Config) -> String {
        let place = match (self.account.as_str(), self.region.as_str()) {
            ("*", "*") => "all accounts and regions".to_string(),
            ("*", region) => format!("{region} (all accounts)"),
            (account, "*") => format!("{account} (all regions)"),
            (account, region) => format!("{account}/{region}"),
        };
        match (&self.family, &config.budgets[self.budget].family) {
            (Some(value), Some(family)) => format!("{} in {place}", family.describe(value)),
            _ => place,
        }
    }
}

impl Policy for CostGuard {
    fn info() -> PluginInfo {
        PluginInfo::new("cost-guard", env!("CARGO_PKG_VERSION"))
            .proposes([ActionKind::Deregister, ActionKind::DeleteSnapshots])
            .needs([InventoryNeed::Usage, InventoryNeed::Snapshots])
            .reviews()
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        self.config = Some(Config::parse(config)?);
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let config = self.config()?;
        let image = &event.image;
        if !config.propose_cleanup || matches!(event.kind, EventKind::Deregistered) {
            return Ok(Vec::new());
        }
        for budget in &config.budgets {
            if let Some(proposal) = cleanup(config, budget, image, event.evaluation_time)? {
                return Ok(vec![proposal]);
            }
        }
        Ok(Vec::new())
    }

    fn review(&self, plan: &PricedPlan) -> Result<Vec<Verdict>, PolicyError> {
        let config = self.config()?;
        // The plan comes in parts, in order: totals run on from the previous part.
        let mut running = self.running.borrow_mut();
        if plan.part == 0 {
            *running = Running::default();
        }
        let Running { monthly, one_time, images } = &mut *running;
        // Images are read only for family budgets (the family is a tag or the name).
        let by_family = config.budgets.iter().any(|b| b.family.is_some());
        let mut verdicts = Vec::new();
        for action in &plan.actions {
            let image = match by_family {
                true => images.entry(action.image_id.clone()).or_insert_with(|| get_image(&action.image_id)).as_ref(),
                false => None,
            };
            let ledgers = ledgers_of(config, action, image);
            let mut over = Vec::new();
            for ledger in &ledgers {
                let budget = &config.budgets[ledger.budget];
                if let Some(limit) = budget.monthly {
                    let current = opening(config, monthly, ledger, plan)?;
                    let after = current.saturating_add(action.monthly_cost_delta);
                    if action.monthly_cost_delta > 0 && after > limit {
                        over.push(format!(
                            "would raise {} to {}/month, over {}",
                            ledger.describe(config),
                            usd(after),
                            budget.describe(limit)
                        ));
                    }
                }
                if let Some(limit) = budget.one_time {
                    let after = one_time.get(ledger).copied().unwrap_or(0).saturating_add(action.one_time_cost);
                    if action.one_time_cost > 0 && after > limit {
                        over.push(format!(
                            "would raise one-time costs of {} in this plan to {}, over {}",
                            ledger.describe(config),
                            usd(after),
                            budget.describe(limit)
                        ));
                    }
                }
            }
            if !over.is_empty() {
                verdicts.push(Verdict::veto(&action.id, format!("{} {}", describe(action), over.join("; "))));
                continue;
            }
            for ledger in ledgers {
                let budget = &config.budgets[ledger.budget];
                if budget.monthly.is_some() {
                    opening(config, monthly, &ledger, plan)?;
                    *monthly.entry(ledger.clone()).or_insert(0) += action.monthly_cost_delta;
                }
                if budget.one_time.is_some() {
                    *one_time.entry(ledger).or_insert(0) += action.one_time_cost;
                }
            }
        }
        Ok(verdicts)
    }
}

impl CostGuard {
    fn config(&self) -> Result<&Config, PolicyError> {
        self.config.as_ref().ok_or_else(|| PolicyError::Failed("cost-guard is not configured".into()))
    }
}

/// Where an action's cost lands: a copy's in its destination region, others' in place.
fn landing_region(action: &PricedAction) -> &str {
    match &action.action {
        Action::CopyToRegion(request) => &request.region,
        _ => &action.region,
    }
}

/// The ledgers that `action` counts against, one per budget that covers it.
fn ledgers_of(config: &Config, action: &PricedAction, image: Option<&Image>) -> Vec<Ledger> {
    let region = landing_region(action);
    let mut ledgers = Vec::new();
    for (index, budget) in config.budgets.iter().enumerate() {
        if !budget.account.admits(&action.account) || !budget.region.admits(region) {
            continue;
        }
        let family = match &budget.family {
            None => None,
            Some(family) => match image.and_then(|i| family.of(i)) {
                Some(value) => Some(value),
                None => continue,
            },
        };
        let split = family.is_some();
        ledgers.push(Ledger {
            budget: index,
            account: budget.account.part(&action.account, split),
            region: budget.region.part(region, split),
            family,
        });
    }
    ledgers
}

/// The running monthly total of a ledger, opened from today's costs on first use.
fn opening(
    config: &Config,
    monthly: &mut BTreeMap<Ledger, Micros>,
    ledger: &Ledger,
    plan: &PricedPlan,
) -> Result<Micros, PolicyError> {
    if let Some(current) = monthly.get(ledger) {
        return Ok(*current);
    }
    let today = match &ledger.family {
        None => plan
            .ledger
            .iter()
            .filter(|e| ledger.account == "*" || e.account == ledger.account)
            .filter(|e| ledger.region == "*" || e.region == ledger.region)
            .map(|e| e.monthly_before)
            .sum(),
        Some(value) => match &config.budgets[ledger.budget].family {
            Some(family) => {
                family.member_summaries(&ledger.account, &ledger.region, value)?.iter().map(|m| m.monthly_cost).sum()
            }
            None => 0,
        },
    };
    monthly.insert(ledger.clone(), today);
    Ok(today)
}

/// `copy of ami-… to eu-west-1`, `deregistration of ami-…`, ...
fn describe(action: &PricedAction) -> String {
    let image = &action.image_id;
    match &action.action {
        Action::CopyToRegion(request) => format!("copy of {image} to {}", request.region),
        Action::Share(p) => format!("sharing {image} with {}", p.as_str()),
        Action::Unshare(p) => format!("unsharing {image} from {}", p.as_str()),
        Action::DeprecateAt(_) => format!("deprecation of {image}"),
        Action::Disable => format!("disabling {image}"),
        Action::Deregister(_) => format!("deregistration of {image}"),
        Action::Tag(_) => format!("tagging {image}"),
        Action::Untag(_) => format!("untagging {image}"),
        Action::Retain => format!("retaining {image}"),
    }
}

/// Deregisters `image` if it is among the oldest unused images that bring its family
/// back under `budget` (never one of the newest `keep_newest`).
fn cleanup(config: &Config, budget: &Budget, image: &Image, now: Timestamp) -> Result<Option<Proposal>, PolicyError> {
    let (Some(family), Some(limit)) = (&budget.family, budget.monthly) else {
        return Ok(None);
    };
    if !budget.account.admits(&image.account) || !budget.region.admits(&image.region) {
        return Ok(None);
    }
    let Some(value) = family.of(image) else {
        return Ok(None);
    };
    let members = family.members(&image.account, &image.region, &value)?;
    let total: Micros = members.iter().map(|m| m.monthly_cost).sum();
    if total <= limit {
        return Ok(None);
    }
    let mut newest: Vec<&Image> = members.iter().filter(|m| m.state == ImageState::Available).collect();
    newest.sort_by(|a, b| (b.creation_time, &b.id).cmp(&(a.creation_time, &a.id)));
    newest.truncate(config.keep_newest);
    let mut oldest: Vec<&Image> = members
        .iter()
        .filter(|m| matches!(m.state, ImageState::Available | ImageState::Disabled))
        .filter(|m| m.monthly_cost > 0 && !newest.iter().any(|n| n.id == m.id))
        .filter(|m| m.in_use_reason(now, config.in_use_window).is_none())
        .collect();
    oldest.sort_by(|a, b| (a.creation_time, &a.id).cmp(&(b.creation_time, &b.id)));
    let mut remaining = total;
    let mut chosen = Vec::new();
    for member in oldest {
        if remaining <= limit {
            break;
        }
        remaining -= member.monthly_cost;
        chosen.push(member.id.as_str());
    }
    let place = format!("{} in {}/{}", family.describe(&value), image.account, image.region);
    if remaining > limit {
        let message = format!(
            "{place} would still cost {}/month after deregistering every unused image beyond the newest {}, over {}",
            usd(remaining),
            config.keep_newest,
            budget.describe(limit)
        );
        log(LogLevel::Warn, &message);
    }
    if !chosen.contains(&image.id.as_str()) {
        return Ok(None);
    }
    let reason = format!(
        "{place} costs {}/month, over {}; deregistering its {} oldest unused image(s) beyond the newest {} brings it to {}/month",
        usd(total),
        budget.describe(limit),
        chosen.len(),
        config.keep_newest,
        usd(remaining)
    );
    Ok(Some(Proposal::new(&image.id, Action::Deregister(true), reason)))
}

export_policy!(CostGuard);

#[cfg(test)]
mod tests;
