//! The command line: argument parsing and the commands, wiring everything together.

use std::io::IsTerminal;

#[macro_use]
mod output;
mod apply;
mod connect;
mod record;
mod serve;
mod tools;
mod undo;
pub use connect::BackendArgs;
use connect::{backend, load_policy, load_policy_for};
use output::{DocumentFormat, incomplete, load_plugins, out, print_plan, progress_bar, report_calls};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::Backend;
use crate::error::InputError;
use crate::model::Timestamp;
use crate::plugin::{ArtifactCache, Runtime};
use crate::run::Source;

/// amiwarden: wasm policy plugins decide sharing, retention, replication and cost of your AMIs.
#[derive(Debug, Parser)]
#[command(name = "amiwarden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where compiled plugins are cached (default: ~/.cache/amiwarden).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache compiled plugins on disk.
    #[arg(long, global = true)]
    pub no_cache: bool,
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
    /// Render a saved plan as the preview shows it.
    Show(tools::ShowArgs),
    /// Explain one image: its facts, the guardrails that bind it, what each plugin proposes
    /// for it and why, and what a scheduled run's plan does to it.
    Explain(tools::ExplainArgs),
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
    /// Keep a record of this run in a new directory under DIR: plan.json and
    /// metadata.json (times, totals, API calls, exit code).
    #[arg(long, value_name = "DIR")]
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
    /// Evaluate as of this date (RFC 3339 or YYYY-MM-DD); default now.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// First run each planned call with EC2's DryRun flag and stop if any is not permitted.
    #[arg(long, requires = "aws")]
    pub preflight: bool,
    /// The journal file (default: STATE.journal.jsonl beside a sim state file; for AWS one
    /// per endpoint and accounts under $XDG_STATE_HOME/amiwarden).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Keep a record of this run in a new directory under DIR: plan.json, report.json (how
    /// each action ended) and metadata.json (times, totals, outcomes, API calls, exit code).
    #[arg(long, value_name = "DIR")]
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

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    parse_and_run(std::env::args_os(), init_logging)
}

/// Runs one command line (the program name first) as `main` does, but without setting
/// up logging: for tests that drive the CLI in process. Returns the exit code.
pub fn run_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_and_run(args, |_| ())
}

/// Parses `args` (usage errors exit 2, `--help` 0), calls `setup`, runs the command, and
/// turns an error into its message and exit code.
fn parse_and_run<I, T>(args: I, setup: fn(&Cli)) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    setup(&cli);
    run(cli).unwrap_or_else(|err| {
        say!("error: {}", crate::model::text::escape(&format!("{err:#}")));
        crate::error::exit_code(&err)
    })
}

/// Logs to stderr, as text or JSON; a service logs what it does by default, a command
/// only its warnings (AMIWARDEN_LOG or RUST_LOG say otherwise).
fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMIWARDEN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(output::colour(std::io::stderr().is_terminal())).init(),
    }
}

fn runtime(cli: &Cli) -> anyhow::Result<Runtime> {
    let dir = if cli.no_cache { None } else { cli.cache_dir.clone().or_else(ArtifactCache::default_dir) };
    Runtime::new(dir)
}

fn input<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| InputError(format!("{e:#}")).into())
}

fn now(as_of: Option<&str>) -> anyhow::Result<Timestamp> {
    match as_of {
        None => Ok(Timestamp::now()),
        Some(text) => text.parse().map_err(|e: String| InputError(format!("--as-of: {e}")).into()),
    }
}

pub(super) fn source(event: Option<&str>) -> anyhow::Result<Source> {
    match event {
        None => Ok(Source::Scheduled),
        Some("-") => {
            let text =
                crate::files::read_text_from(std::io::stdin(), crate::files::Input::Event, "the event on stdin")?;
            Ok(Source::Event { text, origin: "<stdin>".into() })
        }
        Some(path) => {
            let text = crate::files::read_text(std::path::Path::new(path), crate::files::Input::Event)?;
            Ok(Source::Event { text, origin: path.to_string() })
        }
    }
}

/// A plan computed from the command line, with what it was computed from.
struct Computed {
    policy: crate::config::Policy,
    plugins: Vec<crate::plugin::Plugin>,
    now: Timestamp,
    backend: Box<dyn Backend>,
    planned: crate::run::Planned,
}

/// Loads the policy (narrowed by the backend flags) and its plugins, connects the
/// backend, and plans `source` as of `as_of` (default now), with progress on a terminal.
fn compute(
    cli: &Cli,
    policy: &std::path::Path,
    backend_args: &BackendArgs,
    as_of: Option<&str>,
    source: &Source,
) -> anyhow::Result<Computed> {
    let policy = load_policy_for(policy, backend_args)?;
    let now = now(as_of)?;
    let runtime = runtime(cli)?;
    let plugins = load_plugins(&runtime, &policy)?;
    let backend = backend(backend_args, &policy, now)?;
    let planned = crate::run::plan(&policy, &plugins, backend.as_ref(), source, now, &progress_bar(&backend.name()))?;
    Ok(Computed { policy, plugins, now, backend, planned })
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Plan(args) => plan_command(&cli, args),
        Command::Apply(args) => apply::apply_command(&cli, args),
        Command::Test(args) => tools::test_command(&cli, args),
        Command::Inspect(args) => tools::inspect_command(&cli, args),
        Command::Validate(args) => tools::validate_command(&cli, args),
        Command::Show(args) => tools::show_command(args),
        Command::Explain(args) => tools::explain_command(&cli, args),
        Command::Undo(args) => undo::undo_command(args),
        Command::New(args) => {
            let dir = input(crate::scaffold::scaffold(&args.dir, &args.name, args.lang))?;
            say!("created {}: run ./build.sh there, then amiwarden test {}.wasm cases", dir.display(), args.name);
            Ok(0)
        }
        Command::Synth(args) => {
            let state = crate::sim::synth::generate(args.images, now(Some(&args.as_of))?, args.seed);
            state.save(&args.out)?;
            say!("wrote {} images to {}", args.images, args.out.display());
            Ok(0)
        }
        Command::Serve(args) => serve::serve_command(&cli, args),
        Command::EnqueueRun(args) => serve::enqueue_command(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "amiwarden", &mut script);
            out(String::from_utf8_lossy(&script))?;
            Ok(0)
        }
        Command::IamPolicy(args) => {
            let policy = load_policy(&args.policy, &[], &[])?;
            let document = match &args.trust_for {
                Some(principal) => input(crate::aws::trust_policy(&policy, principal).map_err(anyhow::Error::msg))?,
                None => crate::aws::iam_policy(&policy, args.queue_url.as_deref()),
            };
            out(serde_json::to_string_pretty(&document)?)?;
            Ok(0)
        }
    }
}

/// 3 when a guardrail stopped the plan, else what `incomplete` says (4 or 0).
fn incomplete_or_stopped(outcome: &crate::run::Planned) -> i32 {
    if outcome.stop.is_some() { 3 } else { incomplete(&outcome.plan) }
}

fn plan_command(cli: &Cli, args: &PlanArgs) -> anyhow::Result<i32> {
    let recorder = record::Recorder::start(args.record.as_deref(), "plan");
    let source = source(args.event.as_deref())?;
    let Computed { planned: outcome, backend, policy, .. } =
        compute(cli, &args.policy, &args.backend, args.as_of.as_deref(), &source)?;
    for note in &outcome.notes {
        say!("note: {}", crate::model::text::escape(note));
    }
    let about = output::about(&args.policy, &policy, backend.as_ref());
    print_plan(&outcome.plan, args.format, Some(&about), args.show_kept)?;
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&outcome.plan)? + "\n";
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
        match &outcome.stop {
            // Written for inspection; it records why it stopped, and apply refuses it.
            Some(_) => say!("plan written to {} (stopped by a guardrail: it cannot be applied)", out.display()),
            None => say!("plan written to {}", out.display()),
        }
    }
    report_calls(backend.as_ref());
    let exit = match incomplete_or_stopped(&outcome) {
        0 if args.detailed_exitcode && !outcome.plan.actions.is_empty() => crate::error::CHANGES_EXIT,
        exit => exit,
    };
    if let Some(recorder) = &recorder {
        let dir = recorder.write(&args.policy, &outcome.plan, None, backend.as_ref(), exit)?;
        say!("run recorded in {}", dir.display());
    }
    if let Some(stop) = outcome.stop {
        return Err(stop.into());
    }
    Ok(exit)
}
