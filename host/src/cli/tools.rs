//! The plugin author's commands: `amiwarden test` and `amiwarden inspect`.

use std::path::PathBuf;

use super::{Cli, Format, InspectArgs, TestArgs, input, load_policy, runtime};
use crate::error::InputError;

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
            policy = Some(load_policy(p, &[])?);
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
        "sha256": plugin.sha256,
        "size_bytes": plugin.size,
    });
    match args.format {
        Format::Json => super::out(serde_json::to_string_pretty(&info)?)?,
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            if let serde_json::Value::Object(map) = &info {
                for (k, v) in map {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    t.add_row(vec![k.clone(), text]);
                }
            }
            super::out(t)?;
        }
    }
    Ok(0)
}
