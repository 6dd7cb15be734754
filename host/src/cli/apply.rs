//! `amiwarden apply`: under locks, the plan computed now, a saved plan, or the plan an
//! interrupted apply left in its journal, checked the same way and applied.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ApplyArgs, Cli, Format, backend, load_policy, now, print_plan, progress_bar, report_calls, runtime};
use crate::error::InputError;
use crate::run::Source;

pub(super) fn apply_command(cli: &Cli, args: &ApplyArgs) -> anyhow::Result<i32> {
    let policy = load_policy(&args.policy, &args.backend.regions)?;
    let now = now(args.as_of.as_deref())?;
    let backend = backend(&args.backend, &policy, now)?;
    let journal_path =
        args.journal.clone().unwrap_or_else(|| crate::apply::default_path(&backend.identity(), backend.state_file()));
    // Held for the whole apply: a second apply on the same journal or state is refused.
    let _journal_lock = crate::apply::Lock::acquire(&lock_path(&journal_path), "journal")?;
    let _state_lock = match backend.state_file() {
        Some(state) => Some(crate::apply::Lock::acquire(&lock_path(state), &backend.name())?),
        None => None,
    };
    let runtime = runtime(cli)?;
    let plugins = crate::plugin::load_plugins(&runtime, &policy)?;
    let binding = crate::apply::Binding {
        backend: backend.identity(),
        policy: crate::run::policy_fingerprint(&policy, &plugins),
    };
    let unfinished = if args.plan.is_none() { crate::apply::unfinished_plan(&journal_path)? } else { None };
    let (plan, inventory, journal) = match (&args.plan, unfinished) {
        (Some(path), _) => {
            let plan = crate::apply::saved::read(path)?;
            let journal = crate::apply::Journal::open(&journal_path, &crate::apply::plan_id(&plan), binding)?;
            let inventory = if journal.is_resume() {
                eprintln!("resuming plan {}: an earlier apply of it was interrupted", path.display());
                Arc::new(crate::run::collect(&policy, backend.as_ref(), &crate::plugin::needs(&plugins))?)
            } else {
                crate::apply::saved::check(&policy, &plugins, backend.as_ref(), &plan, path, now)?
            };
            (plan, inventory, journal)
        }
        (None, Some(unfinished)) => {
            let plan = unfinished.plan;
            let journal = crate::apply::Journal::open(&journal_path, &unfinished.run_id, binding)?;
            eprintln!(
                "resuming {} from {}: an earlier apply of it was interrupted",
                unfinished.run_id,
                journal_path.display()
            );
            for (id, error) in &unfinished.failed {
                eprintln!("  {id} failed in that run and is not retried: {}", crate::model::text::escape(error));
            }
            let inventory = Arc::new(crate::run::collect(&policy, backend.as_ref(), &crate::plugin::needs(&plugins))?);
            (plan, inventory, journal)
        }
        (None, None) => {
            let outcome =
                crate::run::plan(&policy, &plugins, backend.as_ref(), &Source::Scheduled, now, &progress_bar())?;
            if let Some(stop) = outcome.stop {
                print_plan(&outcome.plan, Format::Table)?;
                return Err(stop.into());
            }
            let journal = crate::apply::Journal::open(&journal_path, &crate::apply::run_id(&outcome.plan), binding)?;
            (outcome.plan, outcome.inventory, journal)
        }
    };
    let mut journal = journal;
    print_plan(&plan, Format::Table)?;
    // Every path meets the same checks before anything is asked: the guardrails on the
    // whole plan, and the plugins' `retain` on the images it would destroy, as of now.
    let retained =
        crate::run::retained(&policy, &plugins, &inventory, &crate::apply::destroyed_images(&plan, &journal), now);
    let checks = crate::apply::Checks { policy: &policy, planned: &inventory, retained, now };
    crate::apply::check(&checks, &plan)?;
    if plan.actions.is_empty() {
        return Ok(0);
    }
    if args.preflight {
        let verdicts = backend.preflight(&plan.actions).unwrap_or_default();
        let denied: Vec<String> =
            verdicts.iter().filter_map(|(id, v)| v.as_ref().err().map(|why| format!("  {id}: {why}"))).collect();
        eprintln!("preflight: {} of {} call(s) permitted", verdicts.len() - denied.len(), verdicts.len());
        if !denied.is_empty() {
            eprintln!("{}", denied.join("\n"));
            anyhow::bail!(
                "preflight: the credentials may not perform {} planned call(s); nothing was changed",
                denied.len()
            );
        }
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(InputError("refusing to apply without confirmation: pass --yes".into()).into());
        }
        eprint!("Apply these {} action(s) to {}? [y/N] ", plan.actions.len(), backend.name());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "yes" | "Y") {
            eprintln!("nothing applied");
            return Ok(0);
        }
    }
    let report = crate::apply::apply(&checks, backend.as_ref(), &plan, &mut journal, &|action, outcome| {
        eprintln!(
            "  {} {} {}: {}",
            action.id,
            action.image_id,
            crate::model::text::escape(&action.op.verb()),
            crate::model::text::escape(&format!("{outcome:?}"))
        );
    })?;
    eprintln!(
        "applied: {} done, {} skipped, {} failed, {} already ended in an earlier run (journal {})",
        report.done.len(),
        report.skipped.len(),
        report.failed.len(),
        report.resumed,
        journal.path().display()
    );
    report_calls(backend.as_ref());
    Ok(if report.failed.is_empty() { 0 } else { 1 })
}

/// The lock file of a journal or state file: beside it, with `.lock` added.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}
