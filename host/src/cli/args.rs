//! The command line's words: the commands, their flags and what each means (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{BackendArgs, DocumentFormat, report, serve, tools, undo};

/// `-V`: the version and the commit it was built from ("unknown" outside a git checkout).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("AMIWARDEN_GIT_SHA"), ")");

/// `--version`: `VERSION`, the plugin contract this host implements (the WIT package a
/// plugin must export) and the built-in plugins' versions.
fn long_version() -> String {
    let builtins: Vec<String> = crate::builtin::versions().map(|(name, version)| format!("{name} {version}")).collect();
    format!(
        "{VERSION}\nplugin contract: amiwarden:policy@{}\nbuilt-in plugins: {}",
        crate::plugin::WIT_VERSION,
        builtins.join(", ")
    )
}

/// amiwarden: wasm policy plugins decide sharing, retention, replication and cost of your AMIs.
#[derive(Debug, Parser)]
#[command(name = "amiwarden", version = VERSION, long_version = long_version(), about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where compiled plugins are cached (default: ~/.cache/amiwarden).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache compiled plugins on disk.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// More log lines on stderr: -v what each stage does (info), -vv debug, -vvv trace.
    /// AMIWARDEN_LOG or RUST_LOG, when set, decide instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors: no warnings, and no progress bars or spinners (results still print).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines as text or as JSON objects (for a log pipeline). Levels: AMIWARDEN_LOG or RUST_LOG.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preview what the policies would change (nothing is mutated).
    Plan(PlanArgs),
    /// Apply a plan: the one computed now, or a saved plan file.
    Apply(ApplyArgs),
    /// Run a plugin (or a whole policy) against test case directories.
    Test(TestArgs),
    /// Show a plugin's info, WIT version, sha256 and size.
    Inspect(InspectArgs),
    /// Check a policy file: parse it, load and configure its plugins (no EC2 calls).
    Validate(tools::ValidateArgs),
    /// Print the JSON Schema of a plan file or of a policy file.
    Schema {
        #[arg(value_enum)]
        of: tools::SchemaOf,
    },
    /// Render a saved plan as the preview shows it.
    Show(tools::ShowArgs),
    /// Explain one image: its facts, the guardrails that bind it, what each plugin proposes
    /// for it and why, and what a scheduled run's plan does to it.
    Explain(tools::ExplainArgs),
    /// Summarise the runs recorded by `plan --record DIR` and `apply --record DIR`: one row
    /// per run, oldest first (outcomes, destructive actions, cost change, API calls), then totals.
    Report(report::ReportArgs),
    /// Undo a run's removals: restore what it deregistered and deleted from the Recycle
    /// Bin, enable what it disabled, and share again what it unshared.
    Undo(undo::UndoArgs),
    /// Scaffold a plugin project (starter policy, WIT, build script, a passing case).
    New(NewArgs),
    /// Write a synthetic simulated org of N images (for benchmarks and trials at scale).
    Synth(SynthArgs),
    /// Print the least-privilege IAM policy for the policy file's granted actions.
    IamPolicy(IamPolicyArgs),
    /// Run as a service: scheduled enforcement and live events from an SQS queue.
    Serve(serve::ServeArgs),
    /// Enqueue one shard per account of a scheduled run (for EventBridge Scheduler or a CronJob).
    EnqueueRun(serve::EnqueueArgs),
    /// Print a shell completion script (`amiwarden completions bash > /etc/bash_completion.d/amiwarden`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// An EventBridge event to evaluate (`-` for stdin) instead of a scheduled run.
    #[arg(long, value_name = "E.json")]
    pub event: Option<String>,
    /// Evaluate as of this date (RFC 3339 or YYYY-MM-DD) to preview the future.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Output format (`--output` is accepted too, as the AWS CLI spells it): markdown for a
    /// change ticket or pull request, html for one self-contained page.
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: DocumentFormat,
    /// Also write the plan as JSON to this file.
    #[arg(long, value_name = "plan.json")]
    pub out: Option<PathBuf>,
    /// Keep a record of this run in a new directory under DIR (`--output-dir` is accepted
    /// too): plan.json and metadata.json (times per stage and plugin, totals, actions by
    /// operation and account/region, API calls, exit code).
    #[arg(long, value_name = "DIR", visible_alias = "output-dir")]
    pub record: Option<PathBuf>,
    /// List in the table the images plugins keep, and why (Markdown and HTML always do).
    #[arg(long)]
    pub show_kept: bool,
    /// Exit 5 when the plan has changes (0 when it has none), for a CI job that alerts on
    /// drift; every other code keeps its meaning (Terraform's 2 is our "bad input").
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Apply this saved plan (refused unless it is what the policy plans now).
    #[arg(long, value_name = "plan.json")]
    pub plan: Option<PathBuf>,
    /// Evaluate this EventBridge event (`-` for stdin) instead of a scheduled run.
    #[arg(long, value_name = "E.json", conflicts_with = "plan")]
    pub event: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// List in the preview the images plugins keep, and why.
    #[arg(long)]
    pub show_kept: bool,
    /// json: one document on stdout at the end, with how each action ended and the
    /// totals (the preview and the per-action lines go to stderr then).
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: Format,
    /// Evaluate as of this date (RFC 3339 or YYYY-MM-DD); default now. A date later than
    /// now is refused on EC2 (preview it with `plan --as-of`); the sim and an endpoint on
    /// loopback (an emulator) take any date.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// First run each planned call with EC2's DryRun flag and stop if any is not permitted.
    #[arg(long, requires = "aws")]
    pub preflight: bool,
    /// The journal file (default: STATE.journal.jsonl beside a sim state file; for AWS one
    /// per endpoint and accounts under $XDG_STATE_HOME/amiwarden).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Keep a record of this run in a new directory under DIR (`--output-dir` is accepted
    /// too): plan.json, report.json and journal.jsonl (how each action ended) and
    /// metadata.json (times per stage and plugin, totals, actions by operation and
    /// account/region, outcomes, API calls, exit code).
    #[arg(long, value_name = "DIR", visible_alias = "output-dir")]
    pub record: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test a whole policy instead of one plugin (then the one argument is CASES_DIR).
    #[arg(long, value_name = "P.toml")]
    pub policy: Option<PathBuf>,
    /// The plugin: a .wasm file or builtin:NAME.
    pub plugin: Option<String>,
    /// The directory of case directories.
    pub cases: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (kebab-case); the project goes in ./NAME.
    pub name: String,
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Lang,
    /// Where to create it (default: the current directory).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// How many images.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The newest creation time (default 2026-11-24).
    #[arg(long, default_value = "2026-11-24")]
    pub as_of: String,
    /// Where to write the state.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    /// Add what a `serve` worker needs on this SQS queue.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// Print instead the trust policy of the role each member account creates for
    /// `[aws] role_arn_template`: this account id or role ARN (where amiwarden runs) may
    /// assume it, with `[aws] external_id` required when set.
    #[arg(long, value_name = "ACCOUNT|ROLE_ARN", conflicts_with = "queue_url")]
    pub trust_for: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .wasm file or builtin:NAME.
    pub plugin: String,
    /// Output format (`--output` is accepted too, as the AWS CLI spells it).
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: Format,
}
