//! `amiwarden report DIR`: the runs recorded by `plan/apply --record DIR`, one row each,
//! oldest first, then the totals; a record that cannot be read is a row saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::Format;
use super::record::{Metadata, Outcomes, read_metadata, started_from_name};
use crate::cost::dollars;
use crate::error::InputError;
use crate::model::{Micros, Timestamp};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The directory given to `plan --record` and `apply --record`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Only the runs started at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Output format (`--output` is accepted too).
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: Format,
}

/// One recorded run, as the report shows it.
#[derive(Debug, Serialize)]
struct Run {
    /// The run's directory under DIR.
    record: String,
    started: Timestamp,
    #[serde(skip)]
    started_millis: i64,
    command: String,
    policy: String,
    backend: String,
    exit_code: i32,
    /// The plan's actions.
    planned: usize,
    /// How the apply's actions ended (null for a plan).
    outcomes: Option<Outcomes>,
    /// The plan's destructive actions.
    destructive: usize,
    /// The plan's change in monthly cost, in micro-dollars (negative: a saving).
    monthly_cost_change: Micros,
    api_calls: BTreeMap<String, u64>,
}

impl Run {
    fn new(record: String, m: Metadata) -> Run {
        Run {
            record,
            started: m.started,
            started_millis: m.started_millis,
            planned: m.totals.actions,
            destructive: m.totals.destructive,
            monthly_cost_change: m.totals.monthly_cost_after.saturating_sub(m.totals.monthly_cost_before),
            command: m.command,
            policy: m.policy,
            backend: m.backend,
            exit_code: m.exit_code,
            outcomes: m.outcomes,
            api_calls: m.api_calls,
        }
    }

    fn calls(&self) -> u64 {
        self.api_calls.values().sum()
    }
}

/// A row of the report: a run, or a record that could not be read and why.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Row {
    Run(Run),
    Unreadable {
        record: String,
        /// The start time the directory's name gives, if it gives one.
        started: Option<Timestamp>,
        unreadable: String,
    },
}

impl Row {
    fn started(&self) -> Option<Timestamp> {
        match self {
            Row::Run(run) => Some(run.started),
            Row::Unreadable { started, .. } => *started,
        }
    }

    /// Oldest first: by start (the second, then the millisecond), unknown starts last,
    /// then by directory name.
    fn order(&self) -> (bool, Option<Timestamp>, i64, &str) {
        match self {
            Row::Run(run) => (false, Some(run.started), run.started_millis, &run.record),
            Row::Unreadable { record, started, .. } => (started.is_none(), *started, 0, record),
        }
    }
}

/// The sums over the report's rows. What an apply changed counts once: `destructive` and
/// `monthly_cost_change` add up the applies that ran (a plan previews the same change).
#[derive(Debug, Default, Serialize)]
struct Totals {
    runs: usize,
    plans: usize,
    applies: usize,
    unreadable: usize,
    /// Runs that exited other than 0.
    nonzero_exits: usize,
    /// The actions the plans planned.
    planned: usize,
    /// How the applies' actions ended.
    outcomes: Outcomes,
    destructive: usize,
    monthly_cost_change: Micros,
    /// API calls by operation, over every run.
    api_calls: BTreeMap<String, u64>,
}

impl Totals {
    fn of(rows: &[Row]) -> Totals {
        let mut t = Totals { runs: rows.len(), ..Totals::default() };
        for row in rows {
            let Row::Run(run) = row else {
                t.unreadable += 1;
                continue;
            };
            t.nonzero_exits += usize::from(run.exit_code != 0);
            for (op, n) in &run.api_calls {
                *t.api_calls.entry(op.clone()).or_default() += n;
            }
            if run.command != "apply" {
                t.plans += 1;
                t.planned += run.planned;
                continue;
            }
            t.applies += 1;
            // An apply stopped before its first call has no outcomes, and changed nothing.
            if let Some(o) = run.outcomes {
                t.outcomes.done += o.done;
                t.outcomes.skipped += o.skipped;
                t.outcomes.failed += o.failed;
                t.outcomes.resumed += o.resumed;
                t.destructive += run.destructive;
                t.monthly_cost_change = t.monthly_cost_change.saturating_add(run.monthly_cost_change);
            }
        }
        t
    }
}

#[derive(Debug, Serialize)]
struct Report {
    runs: Vec<Row>,
    totals: Totals,
}

/// The runs recorded under `dir` that started at or after `since` (a record whose start
/// is unknown is always listed), oldest first.
fn rows(dir: &Path, since: Option<Timestamp>) -> anyhow::Result<Vec<Row>> {
    let refuse = |why: String| InputError(format!("report: {}: {why}", dir.display()));
    if !dir.is_dir() {
        let why = if dir.exists() { "not a directory" } else { "no such directory" };
        return Err(refuse(why.into()).into());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let mut rows = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| refuse(format!("cannot read it: {e}")))?.path();
        if !path.is_dir() {
            continue;
        }
        let record = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let row = match read_metadata(&path) {
            Ok(metadata) => Row::Run(Run::new(record, metadata)),
            Err(e) => Row::Unreadable { started: started_from_name(&record), record, unreadable: format!("{e:#}") },
        };
        if since.is_none_or(|since| row.started().is_none_or(|started| started >= since)) {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| a.order().cmp(&b.order()));
    Ok(rows)
}

/// How an apply's actions ended, or how many a plan planned.
fn actions(run: &Run) -> String {
    match run.outcomes {
        Some(o) => format!("{} done, {} skipped, {} failed", o.done, o.skipped, o.failed),
        None if run.command == "apply" => format!("none applied ({} planned)", run.planned),
        None => format!("{} planned", run.planned),
    }
}

/// A change in cost, signed: `+$1.08`, `-$0.40`, `$0.00`.
fn change(m: Micros) -> String {
    if m > 0 { format!("+{}", dollars(m)) } else { dollars(m) }
}

/// `amiwarden report DIR`: the table (or JSON) of the recorded runs and their totals.
/// Exit 0, or 2 when DIR is not a directory.
pub(super) fn report_command(args: &ReportArgs) -> anyhow::Result<i32> {
    let since = match &args.since {
        None => None,
        Some(text) => Some(text.parse().map_err(|e: String| InputError(format!("--since: {e}")))?),
    };
    let runs = rows(&args.dir, since)?;
    let report = Report { totals: Totals::of(&runs), runs };
    if args.format == Format::Json {
        super::out(serde_json::to_string_pretty(&report)?)?;
        return Ok(0);
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(super::output::table_width());
    t.set_header([
        "started",
        "command",
        "policy",
        "backend",
        "exit",
        "actions",
        "destructive",
        "monthly cost",
        "API calls",
    ]);
    // A time is never wrapped; the policy, backend and a record's trouble wrap instead.
    if let Some(column) = t.column_mut(0) {
        column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
    }
    for row in &report.runs {
        match row {
            Row::Run(run) => t.add_row([
                run.started.to_string(),
                run.command.clone(),
                run.policy.clone(),
                run.backend.clone(),
                run.exit_code.to_string(),
                actions(run),
                run.destructive.to_string(),
                change(run.monthly_cost_change),
                run.calls().to_string(),
            ]),
            Row::Unreadable { record, started, unreadable } => t.add_row([
                started.map(|s| s.to_string()).unwrap_or_default(),
                format!("unreadable: {record}"),
                unreadable.clone(),
            ]),
        };
    }
    let s = &report.totals;
    if !report.runs.is_empty() {
        super::out(t)?;
    }
    let lines = [
        format!(
            "runs: {} (plans {}, applies {}, unreadable {}, exited non-zero {})",
            s.runs, s.plans, s.applies, s.unreadable, s.nonzero_exits
        ),
        format!("plans: {} action(s) planned", s.planned),
        format!(
            "applies: {} done, {} skipped, {} failed; {} destructive; monthly cost {}",
            s.outcomes.done,
            s.outcomes.skipped,
            s.outcomes.failed,
            s.destructive,
            change(s.monthly_cost_change)
        ),
        format!("API calls: {}", s.api_calls.values().sum::<u64>()),
    ];
    super::out(lines.join("\n"))?;
    Ok(0)
}
