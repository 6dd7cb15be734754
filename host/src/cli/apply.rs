//! `amiwarden apply`: under locks, the plan an interrupted apply left in its journal, a
//! saved plan, or the plan computed now (`enforce`), shown, confirmed and applied.

use std::io::IsTerminal;

use serde::Serialize;

use super::output::DocumentFormat;
use super::{
    ApplyArgs, Cli, Format, backend, load_policy_for, now, print_plan, progress_bar, report_calls, runtime, source,
};
use crate::backend::ActionOutcome;
use crate::enforce::{self, Origin};
use crate::error::InputError;

pub(super) fn apply_command(cli: &Cli, args: &ApplyArgs) -> anyhow::Result<i32> {
    let recorder = super::record::Recorder::start(args.record.as_deref(), "apply");
    let policy = load_policy_for(&args.policy, &args.backend)?;
    let now = now(args.as_of.as_deref())?;
    refuse_future_on_ec2(&args.backend, now)?;
    let backend = backend(&args.backend, &policy, now, super::Use::Apply)?;
    let journal_path =
        args.journal.clone().unwrap_or_else(|| crate::apply::default_path(&backend.identity(), backend.state_file()));
    // Held for the whole apply: a second apply on the same journal or state is refused.
    let _locks = enforce::lock(backend.as_ref(), &journal_path, std::time::Duration::ZERO)?;
    let runtime = runtime(cli)?;
    let shown = super::output::progress_shown(cli);
    let plugins = super::output::load_plugins(&runtime, &policy, shown)?;
    let fresh = source(args.event.as_deref())?;
    let origin = match &args.plan {
        Some(path) => Origin::Saved(path),
        None => Origin::Fresh(&fresh),
    };
    let mut prepared = enforce::prepare(
        &policy,
        &plugins,
        backend.as_ref(),
        &journal_path,
        origin,
        now,
        &progress_bar(&backend.name(), shown),
    )?;
    if let Some(failed) = &prepared.resumed {
        say!("resuming the plan in {}: an earlier apply of it was interrupted", journal_path.display());
        for (id, error) in failed {
            say!("  {id} failed in that run and is not retried: {}", crate::model::text::escape(error));
        }
    }
    let about = super::output::about(&args.policy, &policy, backend.as_ref());
    match &prepared.resumed {
        // A resumed plan shows what is left, not again what the interrupted run did.
        Some(_) => {
            let mut left = prepared.plan.clone();
            left.actions.retain(|a| prepared.journal.finished(&a.id).is_none());
            say!(
                "{} of its {} action(s) ended in the interrupted run; the {} left:",
                prepared.plan.actions.len() - left.actions.len(),
                prepared.plan.actions.len(),
                left.actions.len()
            );
            preview(&left, &about, args)?;
        }
        None => preview(&prepared.plan, &about, args)?,
    }
    if let Some(recorder) = &recorder {
        recorder.timings(&prepared.timings);
        recorder.journal(prepared.journal.path(), prepared.journal.run_key());
    }
    let record =
        |prepared: &enforce::Prepared, report: Option<&crate::apply::Report>, exit: i32| -> anyhow::Result<()> {
            if let Some(recorder) = &recorder {
                let (plan, id) = (&prepared.plan, &prepared.plan_id);
                let dir = recorder.write(&args.policy, plan, id, report, backend.as_ref(), exit)?;
                say!("run recorded in {}", dir.display());
            }
            Ok(())
        };
    if let Some(stop) = prepared.stop.take() {
        record(&prepared, None, 3)?;
        return Err(stop.into());
    }
    if prepared.plan.actions.is_empty() {
        let exit = super::incomplete(&prepared.plan);
        if args.format == Format::Json {
            super::out(serde_json::to_string_pretty(&results(&prepared, &crate::apply::Report::default()))?)?;
        }
        record(&prepared, None, exit)?;
        return Ok(exit);
    }
    if args.preflight {
        let verdicts = backend.preflight(&prepared.plan.actions).unwrap_or_default();
        let denied: Vec<String> =
            verdicts.iter().filter_map(|(id, v)| v.as_ref().err().map(|why| format!("  {id}: {why}"))).collect();
        say!("preflight: {} of {} call(s) permitted", verdicts.len() - denied.len(), verdicts.len());
        if !denied.is_empty() {
            say!("{}", denied.join("\n"));
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
        say_inline!("Apply these {} action(s) to {}? [y/N] ", prepared.plan.actions.len(), backend.name());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "yes" | "Y") {
            say!("nothing applied");
            return Ok(0);
        }
    }
    let to_do = prepared.plan.actions.iter().filter(|a| prepared.journal.finished(&a.id).is_none()).count();
    let progress = std::sync::Arc::new(Progress::new(to_do as u64, shown));
    let _interrupt = {
        let (progress, total) = (std::sync::Arc::clone(&progress), prepared.plan.actions.len());
        let journal = prepared.journal.path().display().to_string();
        super::interrupt::watch(move || {
            progress.finish();
            let ended = total - to_do + progress.ended() as usize;
            format!(
                "interrupted: {ended} of {total} actions ended; run the same apply again to resume from journal {journal}"
            )
        })?
    };
    let started = std::time::Instant::now();
    tracing::info!(
        "apply: {to_do} action(s) of {} on {} (journal {})",
        prepared.plan_id,
        backend.name(),
        prepared.journal.path().display()
    );
    let report = prepared.execute(&policy, backend.as_ref(), now, &|action, outcome| {
        let (ended, detail) = match outcome {
            ActionOutcome::Done { detail } => ("done", detail),
            ActionOutcome::Skipped { reason } => ("skipped", reason),
            ActionOutcome::Failed { error } => ("FAILED", error),
        };
        progress.line(&format!(
            "{} {} {}: {ended}: {}",
            action.id,
            crate::model::text::escape(&action.op.verb()),
            action.image_id,
            crate::model::text::escape(detail)
        ));
    })?;
    progress.finish();
    if let Some(recorder) = &recorder {
        recorder.stage("apply", started.elapsed().as_secs_f64());
    }
    tracing::info!(
        "apply: ended in {:.2} s: {} done, {} skipped, {} failed",
        started.elapsed().as_secs_f64(),
        report.done.len(),
        report.skipped.len(),
        report.failed.len()
    );
    say!(
        "applied: {} done, {} skipped, {} failed, {} already ended in an earlier run (journal {})",
        report.done.len(),
        report.skipped.len(),
        report.failed.len(),
        report.resumed,
        prepared.journal.path().display()
    );
    report_calls(backend.as_ref());
    if args.format == Format::Json {
        super::out(serde_json::to_string_pretty(&results(&prepared, &report))?)?;
    }
    let exit = if report.failed.is_empty() { super::incomplete(&prepared.plan) } else { 1 };
    record(&prepared, Some(&report), exit)?;
    Ok(exit)
}

/// The plan before it is applied: on stdout, or on stderr when stdout is for the JSON
/// results.
fn preview(plan: &crate::plan::Plan, about: &crate::render::About, args: &ApplyArgs) -> anyhow::Result<()> {
    if args.format == Format::Table {
        return print_plan(plan, DocumentFormat::Table, Some(about), args.show_kept);
    }
    let layout = crate::render::Layout {
        width: super::output::table_width(),
        colour: super::output::colour(std::io::stderr().is_terminal()),
        show_kept: args.show_kept,
    };
    say!("{}", crate::render::plan(plan, Some(about), layout).trim_end());
    Ok(())
}

/// How an action ended.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Done,
    Skipped,
    Failed,
}

/// One action's result, as `apply --format json` prints it: the plan's fields that say
/// what it is (its op flattened, as in the plan), how it ended and why.
#[derive(Debug, Serialize)]
struct ActionResult<'a> {
    id: &'a str,
    account: &'a str,
    region: &'a str,
    image_id: &'a str,
    #[serde(flatten)]
    op: &'a crate::plan::Op,
    outcome: Outcome,
    detail: &'a str,
    /// It ended in an earlier, interrupted run of the same plan (this run resumed it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    earlier_run: bool,
}

/// `apply --format json`'s document: every action of the plan in apply order with how it
/// ended (in this run or, when resumed, an earlier one), and the totals.
#[derive(Debug, Serialize)]
struct Results<'a> {
    plan_id: String,
    journal: String,
    totals: ResultTotals,
    results: Vec<ActionResult<'a>>,
}

#[derive(Debug, Serialize)]
struct ResultTotals {
    actions: usize,
    done: usize,
    skipped: usize,
    failed: usize,
    /// Ended in an earlier, interrupted run of the same plan.
    earlier_run: usize,
}

/// On EC2 an apply acts as of now: a later `--as-of` would measure the in-use window and
/// every plugin's ages from a day that has not come (an image launched yesterday would
/// look idle), so it previews (`plan --as-of`) and is refused here, as a saved plan of
/// the future is. The sim, and an endpoint on loopback (an emulator, whose images are as
/// new as the test that made them), keep it: their clock is whatever the run says.
fn refuse_future_on_ec2(backend: &super::BackendArgs, as_of: crate::model::Timestamp) -> anyhow::Result<()> {
    let emulated = backend.endpoint_url.as_deref().is_some_and(on_loopback);
    if !backend.aws || emulated || as_of <= crate::model::Timestamp::now() {
        return Ok(());
    }
    Err(InputError(format!(
        "--as-of {as_of} is later than now: an apply to EC2 acts as of now (preview the future with `amiwarden plan --as-of`)"
    ))
    .into())
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn on_loopback(url: &str) -> bool {
    let Some(host) = url.parse::<hyper::Uri>().ok().and_then(|uri| uri.host().map(str::to_string)) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn results<'a>(prepared: &'a enforce::Prepared, report: &'a crate::apply::Report) -> Results<'a> {
    use crate::apply::Phase;
    let mut now: std::collections::HashMap<&str, (Outcome, &str)> = std::collections::HashMap::new();
    for (list, outcome) in
        [(&report.done, Outcome::Done), (&report.skipped, Outcome::Skipped), (&report.failed, Outcome::Failed)]
    {
        now.extend(list.iter().map(|(id, detail)| (id.as_str(), (outcome, detail.as_str()))));
    }
    let results = prepared
        .plan
        .actions
        .iter()
        .filter_map(|a| {
            let (outcome, detail, earlier_run) = match now.get(a.id.as_str()) {
                Some((outcome, detail)) => (*outcome, *detail, false),
                None => match prepared.journal.finished(&a.id)? {
                    (Phase::Done, detail) => (Outcome::Done, detail, true),
                    (Phase::Skipped, detail) => (Outcome::Skipped, detail, true),
                    (Phase::Failed, detail) => (Outcome::Failed, detail, true),
                    _ => return None,
                },
            };
            Some(ActionResult {
                id: &a.id,
                account: &a.location.account,
                region: &a.location.region,
                image_id: &a.image_id,
                op: &a.op,
                outcome,
                detail,
                earlier_run,
            })
        })
        .collect();
    Results {
        plan_id: prepared.plan_id.clone(),
        journal: prepared.journal.path().display().to_string(),
        totals: ResultTotals {
            actions: prepared.plan.actions.len(),
            done: report.done.len(),
            skipped: report.skipped.len(),
            failed: report.failed.len(),
            earlier_run: report.resumed,
        },
        results,
    }
}

/// An apply's progress: each ended action as a line numbered `[n/M]` (M: the actions this
/// run has to do), and on a terminal a bar with the elapsed time and an estimate of
/// what is left under the lines.
struct Progress {
    bar: indicatif::ProgressBar,
    total: u64,
    ended: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(total: u64, shown: bool) -> Progress {
        let bar = if shown && total > 1 {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "applying {pos}/{len} {wide_bar} {elapsed_precise} elapsed, about {eta} left",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar, total, ended: std::sync::atomic::AtomicU64::new(0) }
    }

    fn line(&self, text: &str) {
        let n = self.ended.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let width = self.total.to_string().len();
        let line = format!("  [{n:>width$}/{}] {text}", self.total);
        if self.bar.is_hidden() {
            say!("{line}");
        } else {
            self.bar.println(line);
            self.bar.inc(1);
        }
    }

    /// How many actions ended in this run so far.
    fn ended(&self) -> u64 {
        self.ended.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_endpoints_are_told_from_others() {
        for (url, expected) in [
            ("http://127.0.0.1:5000", true),
            ("http://127.3.2.1", true),
            ("http://localhost:4566/", true),
            ("http://[::1]:5000/x", true),
            ("https://user@127.0.0.1:1/", true),
            ("https://ec2-fips.us-east-1.amazonaws.com", false),
            ("http://127.0.0.1.example.com:5000", false),
            ("http://10.0.0.1:5000", false),
            ("http://[::2]:5000", false),
            ("http://localhost.attacker.net", false),
            ("", false),
        ] {
            assert_eq!(super::on_loopback(url), expected, "{url}");
        }
    }
}
