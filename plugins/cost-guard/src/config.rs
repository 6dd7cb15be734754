//! The cost-guard configuration: budgets and their scopes, and the cleanup settings.

use crate::money::{Usd, usd};
use amiwarden_sdk::family::{Family, FamilySpec};
use amiwarden_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    budgets: Vec<RawBudget>,
    #[serde(default)]
    propose_cleanup: bool,
    #[serde(default = "one")]
    keep_newest: u32,
    #[serde(default = "default_in_use_window_days")]
    in_use_window_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    name: Option<String>,
    account: Option<String>,
    region: Option<String>,
    family: Option<FamilySpec>,
    monthly_usd: Option<Usd>,
    one_time_usd: Option<Usd>,
}

fn one() -> u32 {
    1
}

fn default_in_use_window_days() -> u32 {
    30
}

/// Which accounts (or regions) a budget covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Not set: one ledger across all of them.
    All,
    /// `"*"`: a separate ledger for each.
    Each,
    /// Only this one.
    Only(String),
}

impl Scope {
    fn parse(value: Option<String>, valid: impl Fn(&str) -> bool, what: &str) -> Result<Self, String> {
        match value.as_deref() {
            None => Ok(Scope::All),
            Some("*") => Ok(Scope::Each),
            Some(v) if valid(v) => Ok(Scope::Only(v.to_string())),
            Some(v) => Err(format!("`{v}` is not {what} (or \"*\" for each)")),
        }
    }

    /// Whether `value` is covered.
    pub fn admits(&self, value: &str) -> bool {
        match self {
            Scope::Only(only) => only == value,
            Scope::All | Scope::Each => true,
        }
    }

    /// The ledger part for `value`: itself when budgeted one by one, `*` when pooled.
    /// Families are per account and region, so a family budget always splits.
    pub fn part(&self, value: &str, family: bool) -> String {
        match self {
            Scope::All if !family => "*".into(),
            _ => value.into(),
        }
    }
}

/// One budget.
#[derive(Debug, Clone)]
pub struct Budget {
    pub name: Option<String>,
    pub account: Scope,
    pub region: Scope,
    pub family: Option<Family>,
    pub monthly: Option<Micros>,
    pub one_time: Option<Micros>,
}

impl Budget {
    /// `its budget of $10.00` or `budget "team-a" of $10.00`.
    pub fn describe(&self, limit: Micros) -> String {
        match &self.name {
            Some(name) => format!("budget \"{name}\" of {}", usd(limit)),
            None => format!("its budget of {}", usd(limit)),
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub budgets: Vec<Budget>,
    pub propose_cleanup: bool,
    pub keep_newest: usize,
    pub in_use_window: Timestamp,
}

use amiwarden_sdk::Micros;

impl Config {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        parse_checked::<RawConfig, _>(text, check)
    }
}

fn check(raw: RawConfig) -> Result<Config, String> {
    if raw.budgets.is_empty() {
        return Err("budgets must list at least one budget".into());
    }
    let is_account = |v: &str| v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit());
    let is_region = |v: &str| {
        let parts: Vec<&str> = v.split('-').collect();
        parts.len() >= 3
            && parts[0].len() == 2
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
            && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut budgets = Vec::new();
    for (index, budget) in raw.budgets.into_iter().enumerate() {
        let place = format!("budgets[{index}]");
        if budget.monthly_usd.is_none() && budget.one_time_usd.is_none() {
            return Err(format!("{place} needs monthly_usd or one_time_usd"));
        }
        let family = match &budget.family {
            Some(spec) => Some(Family::compile(spec).map_err(|e| format!("{place}: {e}"))?),
            None => None,
        };
        budgets.push(Budget {
            name: budget.name,
            account: Scope::parse(budget.account, is_account, "a 12-digit account id")
                .map_err(|e| format!("{place}.account: {e}"))?,
            region: Scope::parse(budget.region, is_region, "a region name")
                .map_err(|e| format!("{place}.region: {e}"))?,
            family,
            monthly: budget.monthly_usd.map(|u| u.0),
            one_time: budget.one_time_usd.map(|u| u.0),
        });
    }
    if raw.propose_cleanup && !budgets.iter().any(|b| b.family.is_some() && b.monthly.is_some()) {
        return Err("propose_cleanup needs a budget with family and monthly_usd".into());
    }
    Ok(Config {
        budgets,
        propose_cleanup: raw.propose_cleanup,
        keep_newest: raw.keep_newest as usize,
        in_use_window: Timestamp::from(raw.in_use_window_days) * DAY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        amiwarden_sdk::testing::invalid_config_message(Config::parse(json))
    }

    #[test]
    fn budgets_are_checked_where_they_are_written() {
        assert!(error_of(r#"{"budgets":[]}"#).contains("at least one"));
        assert!(error_of(r#"{"budgets":[{"account":"111111111111"}]}"#).contains("budgets[0] needs monthly_usd"));
        let msg = error_of(r#"{"budgets":[{"account":"1111","monthly_usd":"1"}]}"#);
        assert!(msg.starts_with("budgets[0].account: `1111` is not a 12-digit account id"), "{msg}");
        assert!(error_of(r#"{"budgets":[{"region":"Europe","monthly_usd":"1"}]}"#).contains("not a region name"));
        assert!(error_of(r#"{"budgets":[{"monthly_usd":"-1"}]}"#).contains("is not an amount of dollars"));
        assert!(
            error_of(r#"{"budgets":[{"monthly_usd":"1"}],"propose_cleanup":true}"#)
                .contains("needs a budget with family")
        );
    }

    #[test]
    fn scopes_pool_split_or_restrict() {
        assert!(Config::parse(r#"{"budgets":[{"account":"*","region":"eu-west-1","monthly_usd":10}]}"#).is_ok());
        assert_eq!(Scope::All.part("eu-west-1", false), "*");
        assert_eq!(Scope::All.part("eu-west-1", true), "eu-west-1");
        assert_eq!(Scope::Each.part("eu-west-1", false), "eu-west-1");
        assert!(!Scope::Only("us-east-1".into()).admits("eu-west-1"));
    }
}
