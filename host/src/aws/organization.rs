//! `scope.accounts = "organization"`: the active accounts of the AWS Organization, listed
//! with aws-sdk-organizations' ListAccounts by the credentials' account (the management
//! account, or a delegated administrator).

use std::collections::BTreeSet;

use anyhow::Context;
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus};

use super::calls::next_page;
use super::connect::{AwsOptions, sdk_config};

/// Organizations' API lives in us-east-1 (its only endpoint outside the partitions' own).
const HOME: &str = "us-east-1";

/// Whether an account is active: by its `State` where Organizations reports one, else
/// by its older `Status`.
fn active(account: &Account) -> bool {
    match account.state() {
        Some(state) => *state == AccountState::Active,
        None => account.status() == Some(&AccountStatus::Active),
    }
}

/// Every active account of the organization, every page.
pub async fn active_accounts(client: &aws_sdk_organizations::Client) -> anyhow::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut seen = BTreeSet::new();
    loop {
        let page = client
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", super::errors::causes(&e)))
            .context(
                "organizations ListAccounts failed: scope.accounts = \"organization\" needs the organization's \
                 management account or a delegated administrator (organizations:ListAccounts)",
            )?;
        found.extend(page.accounts().iter().filter(|a| active(a)).filter_map(|a| a.id()).map(str::to_string));
        token = next_page("ListAccounts", page.next_token(), &mut seen)?;
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// The organization's active accounts, with the standard credential chain (or
/// `options`' profile and endpoint).
pub fn discover(options: &AwsOptions) -> anyhow::Result<BTreeSet<String>> {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let config = sdk_config(options, HOME).await?;
        active_accounts(&aws_sdk_organizations::Client::new(&config)).await
    })
}
