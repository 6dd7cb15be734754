//! How the CLI speaks: the plan on stdout, everything else on stderr, and a reader that
//! goes away (`| head`) never a crash.

use std::io::IsTerminal as _;

use anyhow::Context;

use crate::backend::Backend;
use crate::plan::Plan;
use crate::render::About;

/// How a plan or an explanation is shown: tables for a terminal, JSON for a program,
/// Markdown for a change ticket or pull-request comment, one HTML page for a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DocumentFormat {
    Table,
    Json,
    Markdown,
    Html,
}

/// A line for the user on stderr. A closed stderr (`2>&1 | head`) is ignored: an apply
/// must never die half-way because its reader went away.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `say!` without the newline (a prompt).
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut err = std::io::stderr();
        let _ = write!(err, $($arg)*);
        let _ = err.flush();
    }};
}

/// Writes `text` and a newline to stdout. A reader that went away (`| head`) is not an
/// error: the rest is dropped quietly; any other write error is.
pub(super) fn out(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Prints the plan on stdout: the tables, as wide as the terminal (or `COLUMNS`) and in
/// colour on one, a Markdown or HTML document, or the JSON, written as it is serialized
/// (a 184,000-action plan is ~150 MB of text). `about` is what the command line knows of
/// the run (a saved plan does not record its policy file and backend); `show_kept` lists
/// the images plugins keep in the table (the documents always list them).
pub(super) fn print_plan(
    plan: &Plan,
    format: DocumentFormat,
    about: Option<&About>,
    show_kept: bool,
) -> anyhow::Result<()> {
    match format {
        DocumentFormat::Table => {
            let layout = crate::render::Layout {
                width: table_width(),
                colour: colour(std::io::stdout().is_terminal()),
                show_kept,
            };
            out(crate::render::plan(plan, about, layout).trim_end())?
        }
        DocumentFormat::Markdown => out(crate::render::markdown::plan(plan, about).trim_end())?,
        DocumentFormat::Html => out(crate::render::html::plan(plan, about).trim_end())?,
        DocumentFormat::Json => {
            use std::io::Write as _;
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let written = serde_json::to_writer_pretty(&mut stdout, plan)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush());
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("cannot write to stdout");
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// What the plan's heading says of a run beyond the plan file: the policy file, the
/// backend and the scope (as narrowed by `--accounts`/`--regions`).
pub(super) fn about(path: &std::path::Path, policy: &crate::config::Policy, backend: &dyn Backend) -> About {
    About {
        policy: path.display().to_string(),
        backend: backend.name(),
        accounts: policy.scope.accounts.iter().cloned().collect(),
        regions: policy.scope.regions.iter().cloned().collect(),
    }
}

/// Whether output to a stream may be coloured: only a terminal, and never with
/// `NO_COLOR` set (https://no-color.org: present and not empty).
pub(super) fn colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The width of the tables: `COLUMNS` when set (40–1000), else the terminal's when stdout
/// is one, else `render::DEFAULT_WIDTH`; never under `render::MIN_WIDTH`.
pub(super) fn table_width() -> u16 {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok());
    if let Some(n) = columns.filter(|n| (40..=1000).contains(n)) {
        return n;
    }
    if std::io::stdout().is_terminal()
        && let Some((_, cols)) = console::Term::stdout().size_checked()
    {
        return cols.max(40);
    }
    crate::render::DEFAULT_WIDTH
}

/// Exit 4 when plugins failed: the plan is incomplete (destructive actions on their
/// images were blocked), though what was planned stands.
pub(super) fn incomplete(plan: &Plan) -> i32 {
    if plan.errors.is_empty() {
        return 0;
    }
    say!(
        "{} plugin error(s): the plan is incomplete (destructive actions on those images were blocked); exit {}",
        plan.errors.len(),
        crate::error::PLUGIN_ERRORS_EXIT
    );
    crate::error::PLUGIN_ERRORS_EXIT
}

pub(super) fn report_calls(backend: &dyn Backend) {
    let calls = backend.call_counts();
    if !calls.is_empty() {
        let list: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        say!("API calls: {}", list.join(", "));
    }
}

/// Whether progress bars and spinners are drawn: on a terminal's stderr, unless `-q`.
pub(super) fn progress_shown(cli: &super::Cli) -> bool {
    !cli.quiet && std::io::stderr().is_terminal()
}

/// A spinner on stderr with `text` and the time taken, ticking on its own, when `shown`
/// (`progress_shown`); cleared when finished or dropped.
fn spinner(text: String, shown: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::hidden().with_finish(indicatif::ProgressFinish::AndClear);
    if shown {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(text);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}

/// Progress on a terminal: a spinner with the time taken while the inventory of `from`
/// is read, then (for 2,000 plugin calls or more) a bar of the calls with the time left.
/// Cleared when done; nothing at all unless `shown`.
pub(super) fn progress_bar(from: &str, shown: bool) -> impl Fn(u64, u64) + Sync + use<> {
    let bar = spinner(format!("reading the inventory of {from}"), shown);
    let evaluating = std::sync::atomic::AtomicBool::new(false);
    move |done, total| {
        if !evaluating.swap(true, std::sync::atomic::Ordering::Relaxed) {
            bar.disable_steady_tick();
            if total < 2000 {
                bar.finish_and_clear();
            } else {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} evaluating {pos}/{len} plugin calls {wide_bar} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
        }
        if total >= 2000 {
            bar.set_length(total);
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }
}

/// Loads the policy's plugins, with a spinner when `shown`: a plugin is compiled on its
/// first use (a Python one takes tens of seconds), then loaded from the cache. Logs each
/// load (info): compiled or from the cache, and how long it took.
pub(super) fn load_plugins(
    runtime: &crate::plugin::Runtime,
    policy: &crate::config::Policy,
    shown: bool,
) -> anyhow::Result<Vec<crate::plugin::Plugin>> {
    let enabled = policy.plugins.iter().filter(|p| p.enabled).count();
    let bar = spinner(format!("loading {enabled} plugin(s); each is compiled on its first use, then cached"), shown);
    let plugins = crate::plugin::load_plugins(runtime, policy);
    bar.finish_and_clear();
    for p in plugins.iter().flatten() {
        tracing::info!(
            "plugin {} ({} {}, {}) {} in {:.3} s",
            p.name,
            p.info.name,
            p.info.version,
            p.origin,
            if p.from_cache { "loaded from the cache" } else { "compiled" },
            p.load_time.as_secs_f64()
        );
    }
    plugins
}
