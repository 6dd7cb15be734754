//! The policy file (TOML): scope, guardrails, pricing overrides and plugins.
//!
//! Unknown fields are refused with their name and line, so a typo never silently
//! weakens a guardrail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::model::{ActionKind, InventoryNeed, Principal};

/// A whole policy file.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub scope: Scope,
    #[serde(default)]
    pub guardrails: Guardrails,
    #[serde(default)]
    pub pricing: PricingOverrides,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginEntry>,
    /// The directory of the policy file; relative plugin paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Which accounts and regions a run looks at.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "ScopeFile", into = "ScopeFile")]
pub struct Scope {
    /// The accounts; with `organization`, empty until discovered (`discover`).
    pub accounts: BTreeSet<String>,
    pub regions: BTreeSet<String>,
    /// `accounts = "organization"`: every active account of the AWS Organization the
    /// credentials can list (or, on the sim, every account of the state file).
    pub organization: bool,
}

/// `[scope]` as the file spells it.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    accounts: AccountsFile,
    regions: BTreeSet<String>,
}

/// A list of account ids, or the word `organization`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged, expecting = "a list of 12-digit account ids, or \"organization\"")]
enum AccountsFile {
    List(BTreeSet<String>),
    Word(String),
}

/// The word that makes the scope every account of the organization.
pub const ORGANIZATION: &str = "organization";

impl TryFrom<ScopeFile> for Scope {
    type Error = String;

    fn try_from(file: ScopeFile) -> Result<Scope, String> {
        let (accounts, organization) = match file.accounts {
            AccountsFile::List(list) => (list, false),
            AccountsFile::Word(w) if w == ORGANIZATION => (BTreeSet::new(), true),
            AccountsFile::Word(w) => {
                return Err(format!("scope.accounts = \"{w}\": give a list of account ids, or \"{ORGANIZATION}\""));
            }
        };
        Ok(Scope { accounts, regions: file.regions, organization })
    }
}

impl From<Scope> for ScopeFile {
    fn from(scope: Scope) -> ScopeFile {
        let accounts = if scope.organization && scope.accounts.is_empty() {
            AccountsFile::Word(ORGANIZATION.into())
        } else {
            AccountsFile::List(scope.accounts)
        };
        ScopeFile { accounts, regions: scope.regions }
    }
}

/// In a schema: `[scope]` as the file spells it (`ScopeFile`), which is how it is read.
impl schemars::JsonSchema for Scope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scope".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = ScopeFile::json_schema(generator);
        schema.insert("description".into(), "Which accounts and regions a run looks at.".into());
        schema
    }
}

/// In a schema: a list of 12-digit account ids, or the one word `ORGANIZATION` (any other
/// word is refused when the scope is read).
impl schemars::JsonSchema for AccountsFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Accounts".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The accounts a run looks at: a list of 12-digit account ids, or \"organization\" for every active account of the AWS Organization",
            "anyOf": [
                { "type": "array", "uniqueItems": true, "items": { "type": "string", "pattern": "^[0-9]{12}$" } },
                { "const": ORGANIZATION },
            ],
        })
    }
}

impl Scope {
    /// A scope of these accounts and regions.
    pub fn of(accounts: BTreeSet<String>, regions: BTreeSet<String>) -> Scope {
        Scope { accounts, regions, organization: false }
    }

    /// Fills the accounts of an organization scope with `found` (active accounts, as
    /// discovered); refuses an organization with none. A listed scope is left alone.
    pub fn discover(&mut self, found: BTreeSet<String>, from: &str) -> anyhow::Result<()> {
        if !self.organization {
            return Ok(());
        }
        let bad: Vec<&String> = found.iter().filter(|a| !crate::model::is_account_id(a)).collect();
        if !bad.is_empty() {
            bail!("{from} returned {bad:?}, which are not 12-digit account ids");
        }
        if found.is_empty() {
            bail!("scope.accounts = \"{ORGANIZATION}\": {from} found no active account");
        }
        self.accounts = found;
        Ok(())
    }
}

/// The host's guardrails: no plugin can override them.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    /// Whether an image may be made public at all.
    pub allow_public: bool,
    /// Principals an image may be shared with (empty: accounts in scope only).
    pub allowed_principals: BTreeSet<Principal>,
    /// Never disable or deregister an image that instances or launch templates use.
    pub protect_in_use: bool,
    /// Also count an image launched within this many days as in use.
    pub in_use_days: u32,
    /// Regions images may be copied to (empty: the regions in scope).
    pub copy_regions: BTreeSet<String>,
    /// The most destructive actions (disable, deregister, snapshot delete) in one run.
    pub max_destructive: usize,
    /// The most destructive actions as a percentage of images in scope.
    pub max_destructive_percent: f64,
    /// Deregister an image (or delete a snapshot) only when a Recycle Bin retention rule
    /// keeps it restorable for at least this many days (`amiwarden undo` restores it);
    /// 0: not required.
    pub recycle_bin_days: u32,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            allow_public: false,
            allowed_principals: BTreeSet::new(),
            protect_in_use: true,
            in_use_days: 0,
            copy_regions: BTreeSet::new(),
            max_destructive: 50,
            max_destructive_percent: 20.0,
            recycle_bin_days: 0,
        }
    }
}

/// The longest retention a Recycle Bin rule can have (rbin's limit), in days.
pub const MAX_RECYCLE_BIN_DAYS: u32 = 365;

/// Prices per region that replace the built-in table, in USD.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingOverrides {
    /// Standard-tier snapshot storage, per GiB-month.
    #[serde(default)]
    pub snapshot_gib_month: BTreeMap<String, f64>,
    /// Archive-tier snapshot storage, per GiB-month.
    #[serde(default)]
    pub archive_gib_month: BTreeMap<String, f64>,
    /// Inter-region transfer out of a region, per GiB.
    #[serde(default)]
    pub transfer_gib: BTreeMap<String, f64>,
}

/// The highest price accepted in `[pricing]`, USD per GiB (EC2's are cents).
pub const MAX_PRICE: f64 = 1000.0;

/// Settings of the AWS backend.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// A role to assume in each account, with `{account}` in place of the account id,
    /// e.g. `arn:aws:iam::{account}:role/amiwarden`. Unset: use the ambient credentials.
    pub role_arn_template: Option<String>,
    /// Session name for AssumeRole.
    pub session_name: Option<String>,
    /// The external id the member accounts' roles require (`sts:ExternalId` in their
    /// trust policy), sent with every AssumeRole.
    pub external_id: Option<String>,
}

/// One plugin in the policy file.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// Its name in plans and logs; unique in the file.
    pub name: String,
    /// A path to a .wasm file (relative to the policy file) or `builtin:NAME`.
    pub source: String,
    /// The sha256 the file must have (required for files, optional for built-ins).
    pub sha256: Option<String>,
    /// The action kinds the plugin may propose; anything else is refused.
    #[serde(default)]
    pub grants: BTreeSet<ActionKind>,
    /// Its configuration, handed to it as JSON.
    #[serde(default)]
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub config: toml::Table,
    /// A directory it may read, mounted read-only as `/data`.
    pub data_dir: Option<PathBuf>,
    /// The inventory data it is given, narrowed from what it declares: `needs = []` on a
    /// sharing plugin that only makes public images private spares one
    /// DescribeImageAttribute per image (`public` comes with DescribeImages). Unset: all
    /// it declares.
    pub needs: Option<BTreeSet<crate::model::InventoryNeed>>,
    #[serde(default)]
    pub limits: Limits,
    /// Whether it runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// The per-plugin limits, as written in the policy file's `[plugin.limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU budget of one call, in milliseconds.
    pub time_ms: u64,
    /// Cap on linear memory, in MiB.
    pub memory_mib: u64,
    /// Most proposals one `propose` call may return.
    pub max_proposals: usize,
    /// Events evaluated in one fresh store (1 gives every event its own instance).
    pub batch: usize,
    /// Bytes of stdout plus stderr kept per store.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time_ms: 100, memory_mib: 64, max_proposals: 1000, batch: 4096, output_bytes: 64 * 1024 }
    }
}

fn yes() -> bool {
    true
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = crate::files::read_text(path, crate::files::Input::Policy)?;
        let mut policy = Policy::parse(&text).with_context(|| format!("policy file {}", path.display()))?;
        policy.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(policy)
    }

    /// The inventory data the host itself needs for what the policy grants: usage for
    /// the in-use guardrail when an enabled plugin may propose a destructive action, and
    /// snapshot details for pricing when one may propose a copy or a deregistration.
    /// A policy that only tags or shares reads neither.
    pub fn host_needs(&self) -> BTreeSet<InventoryNeed> {
        let granted: BTreeSet<ActionKind> =
            self.plugins.iter().filter(|p| p.enabled).flat_map(|p| p.grants.iter().copied()).collect();
        let mut needs = BTreeSet::new();
        if self.guardrails.protect_in_use && granted.iter().any(|k| k.is_destructive()) {
            needs.insert(InventoryNeed::Usage);
        }
        if granted.iter().any(|k| matches!(k, ActionKind::Copy | ActionKind::Deregister | ActionKind::DeleteSnapshots))
        {
            needs.insert(InventoryNeed::Snapshots);
        }
        // The Recycle Bin guardrail reads the retention rules, and the shares a
        // deregistered image had, which `undo` gives back after restoring it.
        if self.guardrails.recycle_bin_days > 0
            && granted.iter().any(|k| matches!(k, ActionKind::Deregister | ActionKind::DeleteSnapshots))
        {
            needs.extend([InventoryNeed::RecycleBin, InventoryNeed::LaunchPermissions]);
        }
        needs
    }

    /// Parses and checks policy text.
    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        let policy: Policy = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.scope.accounts.is_empty() && !self.scope.organization {
            bail!("scope.accounts is empty: name at least one account, or \"{ORGANIZATION}\"");
        }
        if self.scope.regions.is_empty() {
            bail!("scope.regions is empty: name at least one region");
        }
        for account in &self.scope.accounts {
            if !crate::model::is_account_id(account) {
                bail!("scope.accounts: `{account}` is not a 12-digit account id");
            }
        }
        for region in self.scope.regions.iter().chain(&self.guardrails.copy_regions) {
            if !crate::model::is_region_name(region) {
                bail!("`{region}` is not a region name (like eu-west-1)");
            }
        }
        let g = &self.guardrails;
        if !(0.0..=100.0).contains(&g.max_destructive_percent) {
            bail!("guardrails.max_destructive_percent must be between 0 and 100");
        }
        if g.recycle_bin_days > MAX_RECYCLE_BIN_DAYS {
            bail!(
                "guardrails.recycle_bin_days is {}, but the Recycle Bin keeps resources at most {MAX_RECYCLE_BIN_DAYS} days",
                g.recycle_bin_days
            );
        }
        if g.allowed_principals.contains(&Principal::Public) && !g.allow_public {
            bail!("guardrails.allowed_principals lists `public` but guardrails.allow_public is false");
        }
        let prices = [
            ("snapshot_gib_month", &self.pricing.snapshot_gib_month),
            ("archive_gib_month", &self.pricing.archive_gib_month),
            ("transfer_gib", &self.pricing.transfer_gib),
        ];
        for (table, prices) in prices {
            for (region, price) in prices {
                if !crate::model::is_region_name(region) {
                    bail!("pricing.{table}: `{region}` is not a region name (like eu-west-1)");
                }
                if !price.is_finite() || !(0.0..=MAX_PRICE).contains(price) {
                    bail!("pricing.{table}.{region} = {price}: a price is USD per GiB, from 0 to {}", MAX_PRICE);
                }
            }
        }
        let mut names = BTreeSet::new();
        for p in &self.plugins {
            if !names.insert(&p.name) {
                bail!("plugin `{}` is listed twice", p.name);
            }
            if !p.source.starts_with("builtin:") && p.sha256.is_none() {
                bail!(
                    "plugin `{}`: a plugin file must be pinned with sha256 (run `amiwarden inspect {}`)",
                    p.name,
                    p.source
                );
            }
            if let Some(sha) = &p.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                bail!("plugin `{}`: sha256 must be 64 hex digits", p.name);
            }
            if p.limits.time_ms == 0 || p.limits.memory_mib == 0 || p.limits.batch == 0 {
                bail!("plugin `{}`: limits must be positive", p.name);
            }
        }
        Ok(())
    }

    /// The regions images may be copied to.
    pub fn copy_regions(&self) -> &BTreeSet<String> {
        if self.guardrails.copy_regions.is_empty() { &self.scope.regions } else { &self.guardrails.copy_regions }
    }

    /// Whether `principal` is on the share allow list.
    pub fn share_allowed(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Public => self.guardrails.allow_public,
            Principal::Account(a) if self.guardrails.allowed_principals.is_empty() => self.scope.accounts.contains(a),
            other => self.guardrails.allowed_principals.contains(other),
        }
    }

    /// The resolved path of a plugin file.
    pub fn plugin_path(&self, entry: &PluginEntry) -> PathBuf {
        self.base_dir.join(&entry.source)
    }
}

impl PluginEntry {
    /// Its config as JSON text.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[scope]
accounts = ["111111111111"]
regions = ["us-east-1"]
"#;

    #[test]
    fn a_minimal_policy_gets_safe_defaults() {
        let p = Policy::parse(MINIMAL).unwrap();
        assert!(!p.guardrails.allow_public);
        assert!(p.guardrails.protect_in_use);
        assert_eq!(p.guardrails.max_destructive, 50);
        assert_eq!(p.guardrails.recycle_bin_days, 0);
        let err = Policy::parse(&format!("{MINIMAL}\n[guardrails]\nrecycle_bin_days = 400\n")).unwrap_err().to_string();
        assert!(err.contains("recycle_bin_days is 400") && err.contains("365"), "{err}");
    }

    #[test]
    fn the_host_reads_usage_and_snapshots_only_for_what_the_grants_allow() {
        use InventoryNeed::{LaunchPermissions, RecycleBin, Snapshots, Usage};
        let cases: [(&str, &str, &[InventoryNeed]); 11] = [
            (r#"["tag", "untag", "share", "unshare", "deprecate", "retain"]"#, "", &[]),
            (r#"["copy"]"#, "", &[Snapshots]),
            (r#"["disable"]"#, "", &[Usage]),
            (r#"["deregister"]"#, "", &[Usage, Snapshots]),
            (r#"["delete-snapshots"]"#, "", &[Usage, Snapshots]),
            (r#"["deregister"]"#, "protect_in_use = false", &[Snapshots]),
            (r#"["deregister"]"#, "enabled = false", &[]),
            (r#"["share", "copy"]"#, "", &[Snapshots]),
            (r#"["deregister"]"#, "recycle_bin_days = 7", &[Usage, Snapshots, RecycleBin, LaunchPermissions]),
            (r#"["delete-snapshots"]"#, "recycle_bin_days = 7", &[Usage, Snapshots, RecycleBin, LaunchPermissions]),
            (r#"["disable", "copy"]"#, "recycle_bin_days = 7", &[Usage, Snapshots]),
        ];
        for (grants, extra, want) in cases {
            let guardrail = extra.starts_with("protect") || extra.starts_with("recycle");
            let (guard, entry) = if guardrail { (extra, "") } else { ("", extra) };
            let text = format!(
                "{MINIMAL}\n[guardrails]\n{guard}\n[[plugin]]\nname = \"p\"\nsource = \"builtin:retention\"\ngrants = {grants}\n{entry}\n"
            );
            let policy = Policy::parse(&text).unwrap();
            assert_eq!(policy.host_needs(), want.iter().copied().collect(), "grants {grants} {extra}");
        }
    }

    #[test]
    fn prices_are_finite_non_negative_and_per_region() {
        let ok = format!("{MINIMAL}\n[pricing]\nsnapshot_gib_month = {{ us-east-1 = 0.06 }}\n");
        assert!(Policy::parse(&ok).is_ok());
        for (bad, needle) in [
            ("snapshot_gib_month = { us-east-1 = -0.05 }", "pricing.snapshot_gib_month.us-east-1 = -0.05"),
            ("transfer_gib = { us-east-1 = nan }", "transfer_gib.us-east-1 = NaN"),
            ("archive_gib_month = { us-east-1 = inf }", "archive_gib_month.us-east-1 = inf"),
            ("snapshot_gib_month = { us-east-1 = 1e300 }", "from 0 to 1000"),
            ("snapshot_gib_month = { mars-north-1x = 0.05 }", "`mars-north-1x` is not a region name"),
        ] {
            let err = Policy::parse(&format!("{MINIMAL}\n[pricing]\n{bad}\n")).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    /// docs/policy.md documents every key the policy file takes: each key of a policy
    /// with every table present (as serde writes it) appears there.
    #[test]
    fn docs_policy_md_names_every_key() {
        fn keys(value: &serde_json::Value, out: &mut BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        out.insert(k.clone());
                        keys(v, out);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
                _ => {}
            }
        }
        let text = format!(
            "{MINIMAL}\n[[plugin]]\nname = \"p\"\nsource = \"builtin:retention\"\ngrants = [\"retain\"]\n\
             needs = []\ndata_dir = \"d\"\n[plugin.limits]\ntime_ms = 100\n[plugin.config]\nx = 1\n"
        );
        let policy = Policy::parse(&text).unwrap();
        let mut found = BTreeSet::new();
        keys(&serde_json::to_value(&policy).unwrap(), &mut found);
        found.remove("x"); // the plugin's own config, documented by each plugin
        let docs = include_str!("../../docs/policy.md");
        // A key as `key`, a table as [key] / [[key]] / [parent.key].
        let named = |k: &String| [format!("`{k}`"), format!("[{k}]"), format!("[[{k}]]"), format!(".{k}]")];
        let missing: Vec<&String> = found.iter().filter(|k| !named(k).iter().any(|n| docs.contains(n))).collect();
        assert!(missing.is_empty(), "docs/policy.md does not name {missing:?}");
        assert!(found.len() > 25, "the walk found the keys: {found:?}");
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = format!("{MINIMAL}\n[guardrails]\nallow_publc = true\n");
        let err = Policy::parse(&text).unwrap_err().to_string();
        assert!(err.contains("allow_publc"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn a_plugin_file_without_a_pin_is_refused() {
        let text = format!("{MINIMAL}\n[[plugin]]\nname = \"x\"\nsource = \"x.wasm\"\n");
        let err = Policy::parse(&text).unwrap_err().to_string();
        assert!(err.contains("pinned with sha256"), "{err}");
    }

    #[test]
    fn accounts_in_scope_are_allowed_share_targets_by_default() {
        let p = Policy::parse(MINIMAL).unwrap();
        assert!(p.share_allowed(&Principal::Account("111111111111".into())));
        assert!(!p.share_allowed(&Principal::Account("999999999999".into())));
        assert!(!p.share_allowed(&Principal::Public));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_as_a_policy_never_panics(text in "\\PC{0,400}") {
            let _ = super::Policy::parse(&text);
        }

        #[test]
        fn arbitrary_bytes_as_a_policy_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = super::Policy::parse(&String::from_utf8_lossy(&bytes));
        }
    }
}
