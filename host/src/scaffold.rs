//! `amiwarden new`: scaffolds a plugin project in Rust, Python or JavaScript with the WIT
//! of this host's version, a starter policy, a build script and one passing test case.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A guest language `amiwarden new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

const WIT: &str = include_str!("../../wit/policy.wit");
const CASE: [(&str, &str); 3] = [
    ("case.json", include_str!("../templates/case/case.json")),
    ("inventory.json", include_str!("../templates/case/inventory.json")),
    ("expected.json", include_str!("../templates/case/expected.json")),
];
const RUST: [(&str, &str); 3] = [
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("build.sh", include_str!("../templates/rust/build.sh")),
];
/// The Rust guest SDK, vendored into a Rust project so it builds outside this repository.
const SDK: [(&str, &str); 4] = [
    ("sdk/Cargo.toml", include_str!("../templates/rust/sdk.Cargo.toml")),
    ("sdk/src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("sdk/src/host.rs", include_str!("../../plugins/sdk/src/host.rs")),
    ("sdk/src/types.rs", include_str!("../../plugins/sdk/src/types.rs")),
];
const PYTHON: [(&str, &str); 2] = [
    ("app.py", include_str!("../templates/python/app.py")),
    ("build.sh", include_str!("../templates/python/build.sh")),
];
const JS: [(&str, &str); 3] = [
    ("plugin.js", include_str!("../templates/js/plugin.js")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("build.sh", include_str!("../templates/js/build.sh")),
];

/// Whether `name` can name a plugin: lowercase letters, digits and dashes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn fill(text: &str, name: &str) -> String {
    text.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_"))
}

/// Writes a new project for `name` in `lang` under `parent/name`; returns its path.
pub fn scaffold(parent: &Path, name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!("`{name}` is not a plugin name: use lowercase letters, digits and dashes, starting with a letter");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or remove it", dir.display());
    }
    let mut files: Vec<(String, String)> = Vec::new();
    let sources: &[(&str, &str)] = match lang {
        Lang::Rust => &RUST,
        Lang::Python => &PYTHON,
        Lang::Js => &JS,
    };
    files.extend(sources.iter().map(|(path, text)| (path.to_string(), fill(text, name))));
    if lang == Lang::Rust {
        for (path, text) in SDK {
            // The SDK finds the WIT one level up from its crate here.
            files.push((path.to_string(), text.replace("path: \"../../wit\"", "path: \"../wit\"")));
        }
    }
    files.push(("wit/policy.wit".into(), WIT.to_string()));
    for (path, text) in CASE {
        files.push((format!("cases/01-missing-owner-is-marked/{path}"), text.to_string()));
    }
    files.push(("README.md".into(), readme(name, lang)));
    for (path, text) in files {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
        if path.ends_with(".sh") {
            set_executable(&target)?;
        }
    }
    Ok(dir)
}

fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

fn readme(name: &str, lang: Lang) -> String {
    let toolchain = match lang {
        Lang::Rust => "Rust 1.95 with `rustup target add wasm32-wasip2`",
        Lang::Python => "componentize-py: `pip install componentize-py==0.25.1`",
        Lang::Js => "Node 20 and npm (build.sh runs `npm install` for jco 1.35.0)",
    };
    format!(
        "# {name}\n\nAn amiwarden policy plugin (WIT `amiwarden:policy@{wit}` in `wit/`).\n\n\
         Needs {toolchain}.\n\n```sh\n./build.sh                               # writes {name}.wasm\n\
         amiwarden test {name}.wasm cases         # runs every case directory\n\
         amiwarden inspect {name}.wasm            # its info and the sha256 to pin\n```\n\n\
         Use it from a policy file:\n\n```toml\n[[plugin]]\nname = \"{name}\"\nsource = \"path/to/{name}.wasm\"\n\
         sha256 = \"…from amiwarden inspect…\"\ngrants = [\"tag\"]\n[plugin.config]\nrequired = \"owner\"\n```\n",
        wit = crate::plugin::WIT_VERSION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_kebab_case() {
        for ok in ["required-tags", "a1", "x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Tags", "1tags", "tags_x", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_project_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let project = scaffold(dir.path(), "owner-check", Lang::Python).unwrap();
        assert!(project.join("wit/policy.wit").is_file());
        assert!(std::fs::read_to_string(project.join("app.py")).unwrap().contains("owner-check"));
        assert!(scaffold(dir.path(), "owner-check", Lang::Python).is_err());
    }
}
