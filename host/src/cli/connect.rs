//! The backend a command runs against (the simulated EC2 or AWS) and the part of the
//! policy's scope it looks at (`--regions`, `--accounts`), from the command line.

use std::path::{Path, PathBuf};

use clap::Args;

use super::input;
use crate::backend::Backend;
use crate::config::Policy;
use crate::error::InputError;
use crate::model::Timestamp;

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Use the embedded simulated EC2 with this state file.
    #[arg(long, value_name = "STATE.json", conflicts_with = "aws")]
    pub sim: Option<PathBuf>,
    /// Use real EC2 (or an emulator with --endpoint-url) through the standard credential chain.
    #[arg(long)]
    pub aws: bool,
    /// AWS profile.
    #[arg(long, requires = "aws")]
    pub profile: Option<String>,
    /// EC2 endpoint, e.g. an emulator on 127.0.0.1.
    #[arg(long, requires = "aws")]
    pub endpoint_url: Option<String>,
    /// SDK attempts per call (default 3; 1 against an emulator that lacks some APIs).
    #[arg(long, requires = "aws")]
    pub max_attempts: Option<u32>,
    /// Images an apply works on at once inside a phase (default: 16 on AWS, where the
    /// calls stay paced by EC2's token buckets; 1 on the sim, 16 with --sim-latency-ms).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    pub concurrency: Option<u16>,
    /// Do not pace calls by EC2's token buckets: only for an emulator that does not
    /// throttle (real EC2 would throttle, and the SDK retry).
    #[arg(long, requires = "aws")]
    pub no_pacing: bool,
    /// Model EC2's pace on the simulated EC2: every call takes this many milliseconds and
    /// draws from EC2's token buckets (for benchmarks; see BENCHMARKS.md).
    #[arg(long, value_name = "MS", requires = "sim")]
    pub sim_latency_ms: Option<u64>,
    /// Regions to look at (default: the policy's scope; only narrows it).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Accounts to look at (default: the policy's scope; only narrows it), e.g. one
    /// account of a multi-account policy for a canary run.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT")]
    pub accounts: Vec<String>,
}

/// The backend `args` name. `Use::Plan`: the command only plans, so the sim drops its
/// copy of the state once the inventory is taken (`SimBackend::read_once`).
pub(super) fn backend(
    args: &BackendArgs,
    policy: &Policy,
    now: Timestamp,
    used: Use,
) -> anyhow::Result<Box<dyn Backend>> {
    match (&args.sim, args.aws) {
        (Some(path), false) => {
            let mut sim = input(crate::sim::SimBackend::open(path, now))?;
            if used == Use::Plan {
                sim = sim.read_once();
            }
            Ok(Box::new(match args.sim_latency_ms {
                // With EC2's pace, work on as many images at once as on AWS.
                Some(ms) => sim
                    .with_ec2_pace(std::time::Duration::from_millis(ms))
                    .with_concurrency(args.concurrency.map_or(crate::aws::DEFAULT_CONCURRENCY, usize::from)),
                None => sim.with_concurrency(args.concurrency.map_or(1, usize::from)),
            }))
        }
        (None, true) => Ok(Box::new(crate::aws::AwsBackend::connect(&policy.scope, &policy.aws, aws_options(args))?)),
        _ => Err(InputError("choose a backend: --sim STATE.json or --aws".into()).into()),
    }
}

/// What a command does with its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Plans only: one inventory, no calls after it.
    Plan,
    /// Reads and changes EC2.
    Apply,
}

fn aws_options(args: &BackendArgs) -> crate::aws::AwsOptions {
    crate::aws::AwsOptions {
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        max_attempts: args.max_attempts,
        concurrency: args.concurrency.map(usize::from),
        unpaced: args.no_pacing,
    }
}

/// Loads the policy for a run on the backend `args` name: an organization scope
/// (`accounts = "organization"`) becomes the organization's active accounts (on the sim,
/// the state file's accounts); then `--regions` and `--accounts` may only narrow it.
pub(super) fn load_policy_for(path: &Path, args: &BackendArgs) -> anyhow::Result<Policy> {
    let mut policy = input(Policy::load(path))?;
    if policy.scope.organization {
        let (found, from) = match (&args.sim, args.aws) {
            (Some(state), false) => (
                input(crate::sim::SimState::load(state))?.accounts.keys().cloned().collect(),
                format!("the sim state {}", state.display()),
            ),
            (None, true) => {
                (crate::aws::organization::discover(&aws_options(args))?, "the organization (ListAccounts)".into())
            }
            _ => return Err(InputError("choose a backend: --sim STATE.json or --aws".into()).into()),
        };
        input(policy.scope.discover(found, &from))?;
        tracing::info!("scope: {} account(s) of {from}", policy.scope.accounts.len());
    }
    narrow_scope(path, policy, &args.regions, &args.accounts)
}

/// Loads the policy; `--regions` and `--accounts` may only narrow its scope.
pub(super) fn load_policy(path: &Path, regions: &[String], accounts: &[String]) -> anyhow::Result<Policy> {
    narrow_scope(path, input(Policy::load(path))?, regions, accounts)
}

fn narrow_scope(path: &Path, mut policy: Policy, regions: &[String], accounts: &[String]) -> anyhow::Result<Policy> {
    narrow(
        path,
        "--regions",
        regions,
        &mut policy.scope.regions,
        crate::model::is_region_name,
        "a region name (like eu-west-1)",
    )?;
    narrow(
        path,
        "--accounts",
        accounts,
        &mut policy.scope.accounts,
        crate::model::is_account_id,
        "a 12-digit account id",
    )?;
    Ok(policy)
}

/// Narrows one list of the scope to `wanted`, each of which must be in it already.
fn narrow(
    path: &Path,
    flag: &str,
    wanted: &[String],
    scope: &mut std::collections::BTreeSet<String>,
    valid: fn(&str) -> bool,
    what: &str,
) -> anyhow::Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    for value in wanted {
        if !valid(value) {
            return Err(InputError(format!("{flag}: `{value}` is not {what}")).into());
        }
        if !scope.contains(value) {
            return Err(InputError(format!(
                "{flag}: {value} is not in the scope of {} ({}); {flag} only narrows the scope",
                path.display(),
                scope.iter().cloned().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    *scope = wanted.iter().cloned().collect();
    Ok(())
}
