//! The commands around a run: `test` and `inspect` for plugin authors, `validate` and
//! `schema` for a policy, `show` for a saved plan.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, Format, InspectArgs, TestArgs, input, load_policy, runtime};
use crate::error::InputError;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policy file: parsed, every plugin loaded and configured, nothing read from EC2.
    #[arg(long, value_name = "POLICY.toml")]
    pub policy: PathBuf,
    /// Output format (`--output` is accepted too).
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The image to explain.
    #[arg(value_name = "AMI_ID")]
    pub image: String,
    #[arg(long, value_name = "P.toml")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub backend: super::BackendArgs,
    /// Evaluate as of this date (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Output format (`--output` is accepted too): markdown for a change ticket or pull
    /// request, html for one self-contained page.
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: super::DocumentFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `amiwarden plan --out`.
    #[arg(value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Output format (`--output` is accepted too): markdown for a change ticket or pull
    /// request, html for one self-contained page.
    #[arg(long, visible_alias = "output", value_enum, default_value = "table")]
    pub format: super::DocumentFormat,
    /// List in the table the images plugins keep, and why (Markdown and HTML always do).
    #[arg(long)]
    pub show_kept: bool,
}

/// `amiwarden validate`: the policy as a run would load it — its plugins (with what each
/// declares and is granted) and the inventory data a run will read. Exit 0, or 2 naming
/// what is wrong; nothing is read from EC2.
pub(super) fn validate_command(cli: &Cli, args: &ValidateArgs) -> anyhow::Result<i32> {
    let policy = load_policy(&args.policy, &[], &[])?;
    let runtime = runtime(cli)?;
    let plugins = super::output::load_plugins(&runtime, &policy, super::output::progress_shown(cli))?;
    let entries: Vec<serde_json::Value> = plugins
        .iter()
        .filter_map(|p| {
            let entry = policy.plugins.iter().find(|e| *e.name == *p.name)?;
            Some(serde_json::json!({
                "name": p.name.as_ref(),
                "source": entry.source,
                "plugin": format!("{} {}", p.info.name, p.info.version),
                "sha256": p.sha256,
                "proposes": p.info.actions,
                "granted": entry.grants,
                "needs": p.info.needs,
                "reviews": p.info.reviews,
            }))
        })
        .collect();
    let g = &policy.guardrails;
    let report = serde_json::json!({
        "policy": args.policy.display().to_string(),
        "accounts": policy.scope.accounts,
        "regions": policy.scope.regions,
        "plugins": entries,
        "inventory_reads": crate::plugin::needs(&policy, &plugins),
        "guardrails": format!(
            "public {}; {} allowed principal(s); at most {} destructive action(s) and {}% of images; in-use images {}",
            if g.allow_public { "allowed" } else { "refused" },
            g.allowed_principals.len(),
            g.max_destructive,
            g.max_destructive_percent,
            if g.protect_in_use { "protected" } else { "NOT protected" },
        ),
    });
    if args.format == Format::Json {
        print_record(&report, args.format)?;
        return Ok(0);
    }
    let mut summary = report.clone();
    summary.as_object_mut().map(|m| m.remove("plugins"));
    print_record(&summary, Format::Table)?;
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["plugin", "source", "is", "proposes", "granted", "needs"]);
    let list = |v: &serde_json::Value| {
        v.as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
    };
    for p in &entries {
        let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
        t.add_row([
            field("name"),
            field("source"),
            field("plugin"),
            list(&p["proposes"]),
            list(&p["granted"]),
            list(&p["needs"]),
        ]);
    }
    super::out(t)?;
    say!("{}: valid ({} plugin(s) loaded)", args.policy.display(), plugins.len());
    Ok(0)
}

/// `amiwarden show PLAN`: a saved plan as the preview shows it (table, JSON, Markdown or
/// HTML), but for the policy file and backend, which a plan file does not record.
pub(super) fn show_command(args: &ShowArgs) -> anyhow::Result<i32> {
    let plan = crate::apply::saved::read(&args.plan)?;
    super::print_plan(&plan, args.format, None, args.show_kept)?;
    Ok(0)
}

/// What `amiwarden schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// A plan file (`plan --out`, `plan --format json`).
    Plan,
    /// A policy file (TOML; editors such as taplo check TOML against a JSON Schema).
    Policy,
}

/// `amiwarden schema plan|policy`: the JSON Schema of a plan or a policy file, derived
/// from the types that read them (schemars), so it cannot drift from the binary.
pub(super) fn schema_command(of: SchemaOf) -> anyhow::Result<i32> {
    let schema = match of {
        SchemaOf::Plan => schemars::schema_for!(crate::plan::Plan),
        SchemaOf::Policy => schemars::schema_for!(crate::config::Policy),
    };
    super::out(serde_json::to_string_pretty(&schema)?)?;
    Ok(0)
}

/// A JSON object as JSON, or as a two-column table (nested values as compact JSON).
fn print_record(record: &serde_json::Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => super::out(serde_json::to_string_pretty(record)?)?,
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            for (k, v) in record.as_object().into_iter().flatten() {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    other => other.to_string(),
                };
                t.add_row(vec![k.clone(), text]);
            }
            super::out(t)?;
        }
    }
    Ok(())
}

fn plugin_source(spec: &str) -> anyhow::Result<Vec<u8>> {
    match crate::builtin::lookup(spec) {
        Some(found) => found.map(<[u8]>::to_vec).map_err(|e| InputError(e).into()),
        None => crate::files::read_input(std::path::Path::new(spec), crate::files::Input::Plugin),
    }
}

pub(super) fn test_command(cli: &Cli, args: &TestArgs) -> anyhow::Result<i32> {
    let runtime = runtime(cli)?;
    let (policy, bytes, cases_dir, origin);
    match (&args.policy, &args.plugin, &args.cases) {
        (Some(p), Some(dir), None) => {
            policy = Some(load_policy(p, &[], &[])?);
            bytes = Vec::new();
            cases_dir = PathBuf::from(dir);
            origin = p.display().to_string();
        }
        (None, Some(plugin), Some(dir)) => {
            policy = None;
            bytes = plugin_source(plugin)?;
            cases_dir = dir.clone();
            origin = plugin.clone();
        }
        _ => {
            return Err(InputError(
                "usage: amiwarden test PLUGIN.wasm CASES_DIR | amiwarden test --policy P.toml CASES_DIR".into(),
            )
            .into());
        }
    }
    let subject = match &policy {
        Some(p) => crate::cases::Subject::Policy(p),
        None => crate::cases::Subject::Plugin { bytes: &bytes, origin: origin.clone() },
    };
    let dirs = input(crate::cases::case_dirs(&cases_dir))?;
    let (mut passed, mut failed) = (0, 0);
    for dir in dirs {
        let result = crate::cases::run_case(&runtime, &subject, &dir)
            .map_err(|e| InputError(format!("case {}: {e:#}", dir.display())))?;
        if result.differences.is_empty() {
            passed += 1;
            say!("ok   {}", result.name);
        } else {
            failed += 1;
            say!("FAIL {} — {}", result.name, result.description);
            for d in &result.differences {
                say!("       {d}");
            }
        }
    }
    say!("{origin}: {passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

pub(super) fn inspect_command(cli: &Cli, args: &InspectArgs) -> anyhow::Result<i32> {
    let bytes = plugin_source(&args.plugin)?;
    let runtime = runtime(cli)?;
    let spec = crate::plugin::PluginSpec {
        name: args.plugin.clone(),
        origin: args.plugin.clone(),
        sha256: None,
        limits: Default::default(),
        data_dir: None,
        config: "{}".into(),
    };
    let plugin = runtime.load_unconfigured(&bytes, spec)?;
    let info = serde_json::json!({
        "name": plugin.info.name,
        "version": plugin.info.version,
        "wit": format!("amiwarden:policy@{}", crate::plugin::WIT_VERSION),
        "actions": plugin.info.actions,
        "needs": plugin.info.needs,
        "reviews": plugin.info.reviews,
        "sha256": plugin.sha256,
        "size_bytes": plugin.size,
    });
    print_record(&info, args.format)?;
    Ok(0)
}

/// `amiwarden explain AMI`: one image — its facts, the guardrails that bind it, what each
/// plugin proposes for it and why (a `retain` is why it is kept), and what the plan of a
/// scheduled run does to it. Exit 0, or 2 when the image is not in the policy's scope.
pub(super) fn explain_command(cli: &Cli, args: &ExplainArgs) -> anyhow::Result<i32> {
    let run = super::compute(cli, &args.policy, &args.backend, args.as_of.as_deref(), &crate::run::Source::Scheduled)?;
    let explained =
        crate::explain::explain(&run.policy, &run.plugins, &run.planned, &args.image, run.now).map_err(InputError)?;
    use super::DocumentFormat as F;
    match args.format {
        F::Json => super::out(serde_json::to_string_pretty(&explained)?)?,
        F::Table => super::out(crate::render::explain::text(&explained))?,
        F::Markdown => super::out(crate::render::explain::markdown(&explained).trim_end())?,
        F::Html => super::out(crate::render::explain::html(&explained).trim_end())?,
    }
    Ok(0)
}
