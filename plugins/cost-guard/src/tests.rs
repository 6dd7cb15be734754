//! Budget rules as specifications, run natively against the SDK's test inventory.

use super::*;
use amiwarden_sdk::testing::{self, set_inventory};
use amiwarden_sdk::{CopyRequest, LedgerEntry};

const NOW: Timestamp = 1_795_478_400;
const A: &str = "111111111111";
const B: &str = "222222222222";
const USD: Micros = 1_000_000;

fn guard(config: &str) -> CostGuard {
    let mut policy = CostGuard::default();
    policy.configure(config).expect("valid config");
    policy
}

fn id(n: u32) -> String {
    format!("ami-{n:017x}")
}

fn copy(n: u32, account: &str, to: &str, delta: Micros) -> PricedAction {
    let request = CopyRequest { region: to.into(), encrypted: false, kms_key_id: None, copy_tags: true, name: None };
    priced(n, account, "us-east-1", Action::CopyToRegion(request), delta)
}

fn priced(n: u32, account: &str, region: &str, action: Action, delta: Micros) -> PricedAction {
    PricedAction {
        id: format!("p{n}"),
        image_id: id(n),
        account: account.into(),
        region: region.into(),
        action,
        plugins: vec!["replication".into()],
        reasons: Vec::new(),
        monthly_cost_delta: delta,
        one_time_cost: delta * 2 / 5,
    }
}

fn entry(account: &str, region: &str, before: Micros) -> LedgerEntry {
    LedgerEntry {
        account: account.into(),
        region: region.into(),
        monthly_before: before,
        monthly_after: before,
        one_time: 0,
    }
}

/// The vetoed action ids and reasons.
fn review(config: &str, actions: Vec<PricedAction>, ledger: Vec<LedgerEntry>) -> Vec<(String, String)> {
    let plan = PricedPlan { actions, ledger, evaluation_time: NOW, part: 0, parts: 1 };
    let verdicts = guard(config).review(&plan).expect("review succeeds");
    verdicts
        .into_iter()
        .map(|v| match v.decision {
            Decision::Veto(reason) => (v.action_id, reason),
            Decision::Approve => panic!("approvals are left implicit"),
        })
        .collect()
}

fn ids(vetoes: &[(String, String)]) -> Vec<&str> {
    vetoes.iter().map(|(id, _)| id.as_str()).collect()
}

const REGION_BUDGET: &str = r#"{"budgets":[{"account":"111111111111","region":"eu-west-1","monthly_usd":"10.00"}]}"#;

#[test]
fn a_copy_that_would_push_an_account_region_over_budget_is_vetoed_with_the_numbers() {
    set_inventory(Vec::new(), NOW);
    let vetoes = review(REGION_BUDGET, vec![copy(1, A, "eu-west-1", 2_400_000)], vec![entry(A, "eu-west-1", 10 * USD)]);
    assert_eq!(ids(&vetoes), ["p1"]);
    assert_eq!(
        vetoes[0].1,
        "copy of ami-00000000000000001 to eu-west-1 would raise 111111111111/eu-west-1 to $12.40/month, over its budget of $10.00"
    );
}

#[test]
fn an_action_landing_exactly_on_the_limit_is_allowed() {
    set_inventory(Vec::new(), NOW);
    let vetoes = review(REGION_BUDGET, vec![copy(1, A, "eu-west-1", 2 * USD)], vec![entry(A, "eu-west-1", 8 * USD)]);
    assert!(vetoes.is_empty());
}

#[test]
fn actions_are_judged_in_plan_order_and_a_vetoed_one_uses_up_nothing() {
    set_inventory(Vec::new(), NOW);
    let actions =
        vec![copy(1, A, "eu-west-1", 3 * USD), copy(2, A, "eu-west-1", 3 * USD), copy(3, A, "eu-west-1", USD)];
    let vetoes = review(REGION_BUDGET, actions, vec![entry(A, "eu-west-1", 6 * USD)]);
    assert_eq!(ids(&vetoes), ["p2"]);
    assert!(vetoes[0].1.contains("to $12.00/month"), "{}", vetoes[0].1);
}

#[test]
fn a_plan_in_parts_is_judged_as_one_and_a_new_plan_starts_afresh() {
    set_inventory(Vec::new(), NOW);
    let ledger = vec![entry(A, "eu-west-1", 6 * USD)];
    let policy = guard(REGION_BUDGET);
    let part = |actions, part, parts| PricedPlan { actions, ledger: ledger.clone(), evaluation_time: NOW, part, parts };
    let vetoed = |plan: PricedPlan| -> Vec<String> {
        policy.review(&plan).expect("review succeeds").into_iter().map(|v| v.action_id).collect()
    };
    // The second part's copy would pass alone; after the first part's it is over budget.
    assert!(vetoed(part(vec![copy(1, A, "eu-west-1", 3 * USD)], 0, 2)).is_empty());
    assert_eq!(vetoed(part(vec![copy(2, A, "eu-west-1", 3 * USD)], 1, 2)), ["p2"]);
    // Part 0 of the next plan forgets the last plan's totals.
    assert!(vetoed(part(vec![copy(2, A, "eu-west-1", 3 * USD)], 0, 1)).is_empty());
}

#[test]
fn a_copys_cost_counts_in_its_destination_region_not_its_source() {
    set_inventory(Vec::new(), NOW);
    let actions = vec![copy(1, A, "us-west-2", 50 * USD)];
    assert!(review(REGION_BUDGET, actions, vec![entry(A, "eu-west-1", 10 * USD)]).is_empty());
}

#[test]
fn savings_are_always_approved_and_make_room_for_later_actions() {
    set_inventory(Vec::new(), NOW);
    let saving = priced(1, A, "eu-west-1", Action::Deregister(true), -5 * USD);
    let vetoes =
        review(REGION_BUDGET, vec![saving, copy(2, A, "eu-west-1", 4 * USD)], vec![entry(A, "eu-west-1", 11 * USD)]);
    assert!(vetoes.is_empty(), "{vetoes:?}");
}

#[test]
fn actions_that_cost_nothing_are_never_vetoed_even_over_budget() {
    set_inventory(Vec::new(), NOW);
    let share = priced(1, A, "eu-west-1", Action::Share(Principal::Account(B.into())), 0);
    assert!(review(REGION_BUDGET, vec![share], vec![entry(A, "eu-west-1", 20 * USD)]).is_empty());
}

#[test]
fn an_account_budget_pools_every_region_and_a_region_budget_pools_every_account() {
    set_inventory(Vec::new(), NOW);
    let ledger = vec![entry(A, "eu-west-1", 4 * USD), entry(A, "us-east-1", 5 * USD), entry(B, "eu-west-1", 5 * USD)];
    let account = r#"{"budgets":[{"account":"111111111111","monthly_usd":10}]}"#;
    let vetoes = review(account, vec![copy(1, A, "eu-west-1", 2 * USD)], ledger.clone());
    assert!(vetoes[0].1.contains("raise 111111111111 (all regions) to $11.00/month"), "{vetoes:?}");
    let region = r#"{"budgets":[{"region":"eu-west-1","monthly_usd":10}]}"#;
    let vetoes = review(region, vec![copy(1, A, "eu-west-1", 2 * USD)], ledger.clone());
    assert!(vetoes[0].1.contains("raise eu-west-1 (all accounts) to $11.00/month"), "{vetoes:?}");
    let each = r#"{"budgets":[{"account":"*","region":"*","monthly_usd":10}]}"#;
    assert!(review(each, vec![copy(1, A, "eu-west-1", 2 * USD)], ledger).is_empty());
}

#[test]
fn a_one_time_budget_caps_the_transfer_costs_of_one_plan() {
    set_inventory(Vec::new(), NOW);
    let config = r#"{"budgets":[{"name":"transfer","one_time_usd":"1.00"}]}"#;
    let actions = vec![copy(1, A, "eu-west-1", 2 * USD), copy(2, A, "us-west-2", 2 * USD)];
    let vetoes = review(config, actions, Vec::new());
    assert_eq!(ids(&vetoes), ["p2"]);
    assert!(vetoes[0].1.contains(
        "one-time costs of all accounts and regions in this plan to $1.60, over budget \"transfer\" of $1.00"
    ));
}

fn family_image(n: u32, family: &str, region: &str, age: i64, cost: Micros) -> Image {
    let mut image = Image::new(&id(n), A, region, &format!("golden-{family}-{n}"), NOW - age * DAY);
    image.set_tag("family", family);
    image.monthly_cost = cost;
    image
}

const FAMILY_BUDGET: &str = r#"{"budgets":[{"family":{"tag":"family"},"monthly_usd":"5.00"}],
    "propose_cleanup":true,"keep_newest":1}"#;

#[test]
fn a_family_budget_counts_the_familys_images_in_the_copys_destination() {
    let images = vec![
        family_image(1, "web", "us-east-1", 1, 2 * USD),
        family_image(2, "web", "eu-west-1", 1, 4 * USD),
        family_image(3, "api", "eu-west-1", 1, 4 * USD),
    ];
    set_inventory(images, NOW);
    let vetoes = review(FAMILY_BUDGET, vec![copy(1, A, "eu-west-1", 2 * USD)], Vec::new());
    assert_eq!(ids(&vetoes), ["p1"]);
    assert!(
        vetoes[0].1.contains("raise family web (tag family) in 111111111111/eu-west-1 to $6.00/month"),
        "{vetoes:?}"
    );
}

fn propose(config: &str, images: &[Image], n: u32) -> Vec<Proposal> {
    set_inventory(images.to_vec(), NOW);
    let image = images.iter().find(|i| i.id == id(n)).expect("image in inventory").clone();
    let event = ImageEvent { kind: EventKind::Scheduled, image, evaluation_time: NOW, raw: String::new() };
    guard(config).propose(&event).expect("propose succeeds")
}

#[test]
fn cleanup_deregisters_the_oldest_unused_images_until_the_family_is_under_budget() {
    let images = [
        family_image(1, "web", "us-east-1", 300, 2 * USD),
        family_image(2, "web", "us-east-1", 200, 2 * USD),
        family_image(3, "web", "us-east-1", 100, 2 * USD),
        family_image(4, "web", "us-east-1", 1, 2 * USD),
    ];
    let first = propose(FAMILY_BUDGET, &images, 1);
    assert_eq!(first.iter().map(|p| p.action.clone()).collect::<Vec<_>>(), [Action::Deregister(true)]);
    assert!(first[0].reason.contains("costs $8.00/month, over its budget of $5.00"), "{}", first[0].reason);
    assert!(first[0].reason.contains("brings it to $4.00/month"), "{}", first[0].reason);
    assert_eq!(propose(FAMILY_BUDGET, &images, 2).len(), 1);
    assert!(propose(FAMILY_BUDGET, &images, 3).is_empty());
    assert!(propose(FAMILY_BUDGET, &images, 4).is_empty());
}

#[test]
fn cleanup_skips_images_in_use_and_never_goes_below_the_floor() {
    let mut images = [
        family_image(1, "web", "us-east-1", 300, 4 * USD),
        family_image(2, "web", "us-east-1", 200, 4 * USD),
        family_image(3, "web", "us-east-1", 1, 4 * USD),
    ];
    images[0].usage.instances = 1;
    assert!(propose(FAMILY_BUDGET, &images, 1).is_empty());
    assert_eq!(propose(FAMILY_BUDGET, &images, 2).len(), 1);
    assert!(propose(FAMILY_BUDGET, &images, 3).is_empty());
    let logs = testing::with(|inv| inv.logs.clone());
    assert!(logs.iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("would still cost $8.00/month")), "{logs:?}");
}

#[test]
fn without_propose_cleanup_nothing_is_proposed() {
    let images = [family_image(1, "web", "us-east-1", 300, 9 * USD), family_image(2, "web", "us-east-1", 1, 1)];
    let config = FAMILY_BUDGET.replace("\"propose_cleanup\":true,", "");
    assert!(propose(&config, &images, 1).is_empty());
}
