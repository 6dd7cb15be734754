//! Saved plans: a plan file is applied only if it is exactly what the policy plans now.
//!
//! A file can be edited, so nothing in it is trusted: it must have this schema, not be
//! stopped, be made under the same policy (settings and plugin bytes), on the same
//! inventory, as of a time that is not in the future; and planning again with that
//! policy, inventory, source and time must give exactly its actions. Then `apply`'s own
//! guardrail check and re-reads run as on every other path.

use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Policy;
use crate::error::GuardrailStop;
use crate::error::InputError;
use crate::inventory::Inventory;
use crate::model::Timestamp;
use crate::plan::{Plan, SCHEMA_VERSION};
use crate::plugin::Plugin;

/// Reads a plan file, refusing what is not a plan of this schema.
pub fn read(path: &Path) -> anyhow::Result<Plan> {
    let text = crate::files::read_text(path, crate::files::Input::Plan)?;
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("schema_version").and_then(serde_json::Value::as_u64));
    if let Some(v) = version.filter(|v| *v != u64::from(SCHEMA_VERSION)) {
        return Err(InputError(format!(
            "plan {}: schema_version {v} is not {SCHEMA_VERSION}; run `amiwarden plan` again",
            path.display()
        ))
        .into());
    }
    serde_json::from_str(&text).map_err(|e| InputError(format!("plan {}: {e}", path.display())).into())
}

/// Checks a saved plan that no earlier apply started, and returns the inventory it was
/// checked on. `now` is the apply's time.
pub fn check(
    policy: &Policy,
    plugins: &[Plugin],
    backend: &dyn Backend,
    plan: &Plan,
    path: &Path,
    now: Timestamp,
) -> anyhow::Result<Arc<Inventory>> {
    let name = path.display();
    if let Some(why) = &plan.stopped {
        return Err(GuardrailStop(format!(
            "plan {name} was stopped by a guardrail when it was made ({why}); it is never applied"
        ))
        .into());
    }
    let policy_now = crate::run::policy_fingerprint(policy, plugins);
    if plan.policy_fingerprint != policy_now {
        return Err(InputError(format!(
            "plan {name} was made under another policy (fingerprint {}, now {policy_now}): the policy file, a plugin or --regions changed since; run `amiwarden plan` again",
            short(&plan.policy_fingerprint)
        ))
        .into());
    }
    if plan.evaluation_time > now {
        return Err(InputError(format!(
            "plan {name} is as of {}, later than now ({now}): a preview of the future is not applied early",
            plan.evaluation_time
        ))
        .into());
    }
    let needs = crate::plugin::needs(policy, plugins);
    let scope = crate::event::collection_scope(policy, &plan.source);
    let inventory = Arc::new(crate::run::collect_scope(policy, &scope, backend, &needs)?);
    let fingerprint = inventory.fingerprint().to_string();
    if fingerprint != plan.inventory_fingerprint {
        return Err(InputError(format!(
            "plan {name} was computed on another inventory (fingerprint {}…, now {}…): the images changed since; run `amiwarden plan` again",
            short(&plan.inventory_fingerprint),
            short(&fingerprint)
        ))
        .into());
    }
    // The guardrails first, so an edit they forbid is named as such (exit 3).
    let checks = super::Checks { policy, planned: &inventory, retained: Default::default(), now };
    super::check(&checks, plan).map_err(|stop| GuardrailStop(format!("plan {name}: {stop}")))?;
    let again =
        crate::run::plan_on(policy, plugins, Arc::clone(&inventory), &plan.source, plan.evaluation_time, &|_, _| {})?;
    if let Some(stop) = again.stop {
        return Err(GuardrailStop(format!("plan {name}: {stop}")).into());
    }
    let differences = differences(plan, &again.plan);
    if !differences.is_empty() {
        return Err(InputError(format!(
            "plan {name} is not what the policy plans on this inventory (edited?); nothing was changed:\n{}",
            differences.join("\n")
        ))
        .into());
    }
    Ok(inventory)
}

fn short(s: &str) -> &str {
    s.get(..16).unwrap_or(s)
}

/// The actions in which two plans differ, one line each (at most 20).
fn differences(saved: &Plan, again: &Plan) -> Vec<String> {
    let line = |a: &crate::plan::PlannedAction, what: &str| {
        format!(
            "  {} {} {} in {}/{}: {what}",
            a.id,
            crate::model::text::escape(&a.op.verb()),
            crate::model::text::escape(&a.image_id),
            crate::model::text::escape(&a.location.account),
            crate::model::text::escape(&a.location.region)
        )
    };
    let planned: std::collections::BTreeMap<&str, &crate::plan::PlannedAction> =
        again.actions.iter().map(|b| (b.id.as_str(), b)).collect();
    let in_file: std::collections::BTreeSet<&str> = saved.actions.iter().map(|a| a.id.as_str()).collect();
    let mut out = Vec::new();
    for a in &saved.actions {
        match planned.get(a.id.as_str()).copied() {
            None => out.push(line(a, "in the file, but the policy does not plan it")),
            Some(b) if b != a => out.push(line(a, "differs from what the policy plans (plugins, reasons or cost)")),
            Some(_) => {}
        }
    }
    for b in &again.actions {
        if !in_file.contains(b.id.as_str()) {
            out.push(line(b, "planned by the policy, but missing from the file"));
        }
    }
    if saved.actions.len() == again.actions.len() && out.is_empty() && saved.actions != again.actions {
        out.push("  the actions are in another order".into());
    }
    let total = out.len();
    out.truncate(20);
    if total > 20 {
        out.push(format!("  … and {} more", total - 20));
    }
    out
}
