//! The priced plan as plugins review it: lowered a part at a time (`REVIEW_PART`
//! actions, in plan order), so a reviewer's memory and the host's copy stay bounded by
//! the part, not the plan.

use super::bindings::wit;

/// The most candidate actions one `review` call sees: a plan is reviewed in parts.
pub const REVIEW_PART: usize = 4096;

/// The plan's ledger, lowered once for every part.
pub fn ledger(plan: &crate::resolve::PricedPlan<'_>) -> Vec<wit::LedgerEntry> {
    plan.ledger
        .iter()
        .map(|e| wit::LedgerEntry {
            account: e.account.clone(),
            region: e.region.clone(),
            monthly_before: e.monthly_before,
            monthly_after: e.monthly_after,
            one_time: e.one_time,
        })
        .collect()
}

/// How many parts the plan is reviewed in (at least one, even for an empty plan).
pub fn parts(plan: &crate::resolve::PricedPlan<'_>) -> usize {
    plan.candidates.len().div_ceil(REVIEW_PART).max(1)
}

/// Part `part` of the plan's `REVIEW_PART`-action parts, lowered.
pub fn priced_part(plan: &crate::resolve::PricedPlan<'_>, ledger: &[wit::LedgerEntry], part: usize) -> wit::PricedPlan {
    let start = (part * REVIEW_PART).min(plan.candidates.len());
    let end = (start + REVIEW_PART).min(plan.candidates.len());
    wit::PricedPlan {
        actions: plan.candidates[start..end]
            .iter()
            .map(|c| wit::PricedAction {
                id: c.id.clone(),
                image_id: c.image_id.clone(),
                account: c.location.account.clone(),
                region: c.location.region.clone(),
                action: (&c.action).into(),
                plugins: c.plugins.iter().cloned().collect(),
                reasons: c.reasons.clone(),
                monthly_cost_delta: c.monthly_cost_delta,
                one_time_cost: c.one_time_cost,
            })
            .collect(),
        ledger: ledger.to_vec(),
        evaluation_time: plan.evaluation_time.0,
        part: part as u32,
        parts: parts(plan) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, Timestamp};

    const NOW: Timestamp = Timestamp(1_795_000_000);

    #[test]
    fn a_plan_is_reviewed_in_parts_that_cover_every_action_once_in_order() {
        let candidate = |n: usize| crate::resolve::Candidate {
            id: format!("cand-{n:06}"),
            image_id: "ami-00000000000000001".into(),
            location: model::Location { account: "111111111111".into(), region: "us-east-1".into() }.into(),
            action: model::Action::Retain,
            plugins: Default::default(),
            reasons: Vec::new(),
            monthly_cost_delta: 0,
            one_time_cost: 0,
            snapshots: Vec::new(),
        };
        let candidates: Vec<_> = (0..REVIEW_PART * 2 + 1).map(candidate).collect();
        let plan = crate::resolve::PricedPlan { candidates: &candidates, ledger: Vec::new(), evaluation_time: NOW };
        let parts: Vec<wit::PricedPlan> = (0..3).map(|p| priced_part(&plan, &[], p)).collect();
        assert_eq!(parts.iter().map(|p| p.actions.len()).collect::<Vec<_>>(), [4096, 4096, 1]);
        assert!(parts.iter().enumerate().all(|(i, p)| p.part as usize == i && p.parts == 3));
        let ids: Vec<&str> = parts.iter().flat_map(|p| p.actions.iter().map(|a| a.id.as_str())).collect();
        assert_eq!(ids, candidates.iter().map(|c| c.id.as_str()).collect::<Vec<_>>());
        let empty = crate::resolve::PricedPlan { candidates: &[], ledger: Vec::new(), evaluation_time: NOW };
        let only = priced_part(&empty, &[], 0);
        assert_eq!((only.part, only.parts, only.actions.len()), (0, 1, 0));
    }
}
