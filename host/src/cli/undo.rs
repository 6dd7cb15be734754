//! `amiwarden undo`: reverses what a run removed (`apply::undo`), under the same locks as
//! an apply, on the EC2 the run changed.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use super::{BackendArgs, Format, Use, backend, load_policy_for, now, out, report_calls};
use crate::apply::undo::{UndoPlan, plan_undo, run_undo};
use crate::backend::ActionOutcome;
use crate::error::InputError;
use crate::model::text::escape;

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// The journal of the run to undo (default: the backend's, as `apply` writes it).
    #[arg(long, value_name = "J.jsonl")]
    pub journal: Option<PathBuf>,
    /// The run to undo: its id in the journal, or the start of it (default: the last run).
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Undo only this action of the run (repeatable); a deregistration brings its
    /// snapshot deletions with it.
    #[arg(long = "action", value_name = "ACTION_ID")]
    pub actions: Vec<String>,
    /// Undo without asking.
    #[arg(long)]
    pub yes: bool,
    /// Output format of the results.
    #[arg(long, value_enum, default_value = "table", visible_alias = "output")]
    pub format: Format,
}

pub(super) fn undo_command(args: &UndoArgs) -> anyhow::Result<i32> {
    let policy = load_policy_for(&args.policy, &args.backend)?;
    let backend = backend(&args.backend, &policy, now(None)?, Use::Apply)?;
    let journal_path =
        args.journal.clone().unwrap_or_else(|| crate::apply::default_path(&backend.identity(), backend.state_file()));
    if !journal_path.exists() {
        return Err(InputError(format!("journal {} does not exist: no run to undo", journal_path.display())).into());
    }
    let _locks = crate::enforce::lock(backend.as_ref(), &journal_path, std::time::Duration::ZERO)?;
    let run = crate::apply::read_run(&journal_path, args.run.as_deref())?;
    if run.binding.backend != backend.identity() {
        return Err(InputError(format!(
            "run {} of journal {} changed {}, not {}: undo it there",
            run.run_id,
            journal_path.display(),
            run.binding.backend,
            backend.identity()
        ))
        .into());
    }
    let only: BTreeSet<String> = args.actions.iter().cloned().collect();
    let plan = plan_undo(&policy, &run, &only)?;
    show(&plan, &run.run_id, args.format)?;
    if plan.steps.is_empty() {
        return Ok(0);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(InputError("refusing to undo without confirmation: pass --yes".into()).into());
        }
        say_inline!("Make these {} call(s) on {}? [y/N] ", plan.steps.len(), backend.name());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "yes" | "Y") {
            say!("nothing undone");
            return Ok(0);
        }
    }
    let total = plan.steps.len();
    let width = total.to_string().len();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let (outcomes, ended) = run_undo(backend.as_ref(), &plan, &|step, outcome| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let (how, detail) = describe(outcome);
        say!("  [{i:>width$}/{total}] {} ({}): {how}: {}", escape(&step.verb()), step.action.id, escape(detail));
    });
    // The sim writes its state whole here; then the journal says what was undone.
    backend.finish()?;
    crate::apply::record_undo(&journal_path, &run.run_id, &ended)?;
    let failed = outcomes.iter().filter(|o| matches!(o, ActionOutcome::Failed { .. })).count();
    if args.format == Format::Json {
        let rows: Vec<serde_json::Value> = plan
            .steps
            .iter()
            .zip(&outcomes)
            .map(|(step, outcome)| {
                serde_json::json!({"action_id": step.action.id, "image_id": step.action.image_id, "step": step.verb(), "result": outcome})
            })
            .collect();
        out(serde_json::to_string_pretty(&serde_json::json!({"run": run.run_id, "steps": rows}))?)?;
    }
    say!("undone: {} call(s) made or not needed, {failed} failed (journal {})", total - failed, journal_path.display());
    report_calls(backend.as_ref());
    Ok(if failed == 0 { 0 } else { 1 })
}

fn describe(outcome: &ActionOutcome) -> (&'static str, &str) {
    match outcome {
        ActionOutcome::Done { detail } => ("done", detail),
        ActionOutcome::Skipped { reason } => ("not needed", reason),
        ActionOutcome::Failed { error } => ("FAILED", error),
    }
}

/// The undo's calls in order, and what it leaves: on stdout, as a plan is shown, unless
/// stdout is for the JSON results.
fn show(plan: &UndoPlan, run: &str, format: Format) -> anyhow::Result<()> {
    let mut text = format!("Undo of run {run}: {} call(s)", plan.steps.len());
    for step in &plan.steps {
        let a = &step.action;
        text += &format!(
            "\n  {} (reverses {} {}, {} in {})",
            escape(&step.verb()),
            a.id,
            escape(&a.op.verb()),
            a.image_id,
            a.location
        );
    }
    for (a, why) in &plan.left {
        text += &format!("\n  left as it is: {} {} ({}): {}", escape(&a.op.verb()), a.image_id, a.id, escape(why));
    }
    if format == Format::Json {
        say!("{text}");
        return Ok(());
    }
    out(text)
}
