//! The command line: argument parsing and the commands, wiring everything together.

use std::io::IsTerminal;

#[macro_use]
mod output;
mod apply;
mod args;
mod connect;
mod interrupt;
mod record;
mod report;
mod serve;
mod tools;
mod undo;
use anyhow::Context;
pub use args::{
    ApplyArgs, Cli, Command, Format, IamPolicyArgs, InspectArgs, LogFormat, NewArgs, PlanArgs, SynthArgs, TestArgs,
};
use clap::Parser;
pub use connect::BackendArgs;
use connect::{Use, backend, load_policy, load_policy_for};
use output::{DocumentFormat, incomplete, load_plugins, out, print_plan, progress_bar, report_calls};

use crate::backend::Backend;
use crate::error::InputError;
use crate::model::Timestamp;
use crate::plugin::{ArtifactCache, Runtime};
use crate::run::Source;

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

/// Logs to stderr, as text or JSON, at `log_level` (AMIWARDEN_LOG or RUST_LOG, when set,
/// decide instead).
fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMIWARDEN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| log_level(cli).into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(output::colour(std::io::stderr().is_terminal())).init(),
    }
}

/// The log level the flags ask for: a service logs what it does by default, a command
/// only its warnings; each `-v` one level more, `-q` only errors.
fn log_level(cli: &Cli) -> &'static str {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    if cli.quiet {
        return LEVELS[0];
    }
    let default = if matches!(cli.command, Command::Serve(_)) { 2 } else { 1 };
    LEVELS[(default + usize::from(cli.verbose)).min(LEVELS.len() - 1)]
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
    let shown = output::progress_shown(cli);
    let plugins = load_plugins(&runtime, &policy, shown)?;
    let backend = backend(backend_args, &policy, now, Use::Plan)?;
    let progress = progress_bar(&backend.name(), shown);
    let planned = crate::run::plan(&policy, &plugins, backend.as_ref(), source, now, &progress)?;
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
        Command::Schema { of } => tools::schema_command(*of),
        Command::Explain(args) => tools::explain_command(&cli, args),
        Command::Report(args) => report::report_command(args),
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
    if let Some(recorder) = &recorder {
        recorder.timings(&outcome.timings);
    }
    for note in &outcome.notes {
        say!("note: {}", crate::model::text::escape(note));
    }
    let about = output::about(&args.policy, &policy, backend.as_ref());
    print_plan(&outcome.plan, args.format, Some(&about), args.show_kept)?;
    if let Some(out) = &args.out {
        // Streamed: a large plan's text would otherwise be held whole beside the plan.
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            serde_json::to_writer_pretty(&mut file, &outcome.plan)?;
            std::io::Write::write_all(&mut file, b"\n")?;
            std::io::Write::flush(&mut file)
        };
        write().with_context(|| format!("cannot write {}", out.display()))?;
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
        let plan_id = crate::apply::plan_id(&outcome.plan);
        let dir = recorder.write(&args.policy, &outcome.plan, &plan_id, None, backend.as_ref(), exit)?;
        say!("run recorded in {}", dir.display());
    }
    let stop = outcome.stop.clone();
    // The process ends here: freeing the plan's and the inventory's small allocations one
    // by one would take ~0.4 s of a 100,000-image plan's wall time, and the OS takes the
    // memory back at once.
    std::mem::forget(outcome);
    if let Some(stop) = stop {
        return Err(stop.into());
    }
    Ok(exit)
}
