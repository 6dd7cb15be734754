//! The one place that builds the AWS configuration: credential chain, profile, endpoint, retries, and per-account credentials.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_ec2::config::{Region, SharedCredentialsProvider};

use crate::config::{AwsSettings, Scope};
use crate::model::Location;

/// How to reach AWS, from the command line.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// A named profile instead of the default credential chain's choice.
    pub profile: Option<String>,
    /// Another EC2/STS endpoint, e.g. an emulator at `http://127.0.0.1:5000`.
    pub endpoint_url: Option<String>,
    /// SDK attempts per call (standard retry mode); `None` keeps the SDK default (3).
    /// Tests against an emulator set 1 so an unimplemented call fails at once.
    pub max_attempts: Option<u32>,
    /// Images an apply works on at once inside a phase (default `DEFAULT_CONCURRENCY`).
    pub concurrency: Option<usize>,
    /// Do not pace calls by EC2's token buckets: for an emulator that does not throttle
    /// (real EC2 then throttles, and the SDK retries).
    pub unpaced: bool,
}

/// The loaded configuration and the credentials for each account in scope.
#[derive(Debug)]
pub struct Connection {
    base: aws_config::SdkConfig,
    /// Per account: an AssumeRole provider; empty when the ambient credentials are used.
    assumed: BTreeMap<String, SharedCredentialsProvider>,
    /// The account of the ambient credentials, when no role is assumed.
    ambient_account: Option<String>,
}

/// Refuses `--profile NAME` when no shared config or credentials file defines it (the
/// SDK would only say, much later, that no credentials were found).
fn check_profile(name: &str) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let file = |var: &str, default: &str| std::env::var_os(var).map(Into::into).unwrap_or_else(|| home.join(default));
    let files = [file("AWS_CONFIG_FILE", ".aws/config"), file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")];
    let mut known = std::collections::BTreeSet::new();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        for line in text.lines().map(str::trim) {
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let section = section.trim();
                // `[sso-session x]` and `[services x]` sections are not profiles.
                if section.starts_with("sso-session ") || section.starts_with("services ") {
                    continue;
                }
                known.insert(section.strip_prefix("profile ").unwrap_or(section).trim().to_string());
            }
        }
    }
    if known.contains(name) {
        return Ok(());
    }
    let listed = if known.is_empty() { "none".to_string() } else { known.into_iter().collect::<Vec<_>>().join(", ") };
    Err(crate::error::InputError(format!(
        "--profile {name}: no such profile in {} or {} (profiles there: {listed})",
        files[0].display(),
        files[1].display()
    ))
    .into())
}

/// The default session name for AssumeRole.
const SESSION_NAME: &str = "amiwarden";

/// The SDK configuration of the standard chain (or `options.profile`), for `region`,
/// with `options`' endpoint and retries: the base every client is built from.
pub async fn sdk_config(options: &AwsOptions, region: &str) -> anyhow::Result<aws_config::SdkConfig> {
    let mut retry = RetryConfig::standard();
    if let Some(n) = options.max_attempts {
        retry = retry.with_max_attempts(n.max(1));
    }
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string())).retry_config(retry);
    if let Some(profile) = &options.profile {
        check_profile(profile)?;
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let base = loader.load().await;
    if base.credentials_provider().is_none() {
        bail!("no AWS credentials: set AWS_PROFILE or --profile, environment keys, SSO, or an instance role");
    }
    Ok(base)
}

impl Connection {
    /// Loads the standard credential chain (or `profile`), then either prepares an
    /// AssumeRole provider per account in scope (`role_arn_template`) or checks with
    /// GetCallerIdentity that the ambient credentials belong to the only account in scope.
    pub async fn open(scope: &Scope, settings: &AwsSettings, options: &AwsOptions) -> anyhow::Result<Connection> {
        let home_region = scope.regions.iter().next().context("scope.regions is empty")?.clone();
        let base = sdk_config(options, &home_region).await?;

        let mut connection = Connection { base, assumed: BTreeMap::new(), ambient_account: None };
        if let Some(template) = &settings.role_arn_template {
            if !template.contains("{account}") {
                bail!("aws.role_arn_template `{template}` has no `{{account}}` placeholder");
            }
            let session = settings.session_name.clone().unwrap_or_else(|| SESSION_NAME.to_string());
            for account in &scope.accounts {
                let role = template.replace("{account}", account);
                let mut provider = AssumeRoleProvider::builder(role).session_name(&session);
                if let Some(external_id) = &settings.external_id {
                    provider = provider.external_id(external_id);
                }
                let provider = provider.configure(&connection.base).build().await;
                connection.assumed.insert(account.clone(), SharedCredentialsProvider::new(provider));
            }
        } else {
            let sts = aws_sdk_sts::Client::new(&connection.base);
            let identity = sts
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", super::errors::causes(&e)))
                .context("sts GetCallerIdentity failed: cannot tell which account the credentials belong to")?;
            let account = identity.account().unwrap_or_default().to_string();
            let others: Vec<&String> = scope.accounts.iter().filter(|a| **a != account).collect();
            if !others.is_empty() {
                bail!(
                    "scope.accounts lists {} but the credentials belong to account {account}; \
                     set aws.role_arn_template (e.g. \"arn:aws:iam::{{account}}:role/amiwarden\") to reach other accounts",
                    others.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            connection.ambient_account = Some(account);
        }
        Ok(connection)
    }

    /// An EC2 client for one account and region.
    pub fn client(&self, location: &Location) -> anyhow::Result<aws_sdk_ec2::Client> {
        let mut builder = aws_sdk_ec2::config::Builder::from(&self.base).region(Region::new(location.region.clone()));
        if let Some(provider) = self.credentials(location)? {
            builder = builder.credentials_provider(provider);
        }
        Ok(aws_sdk_ec2::Client::from_conf(builder.build()))
    }

    /// A Recycle Bin client for one account and region.
    pub fn rbin_client(&self, location: &Location) -> anyhow::Result<aws_sdk_rbin::Client> {
        let mut builder = aws_sdk_rbin::config::Builder::from(&self.base).region(Region::new(location.region.clone()));
        if let Some(provider) = self.credentials(location)? {
            builder = builder.credentials_provider(provider);
        }
        Ok(aws_sdk_rbin::Client::from_conf(builder.build()))
    }

    /// The assumed role's credentials for the location's account; `None`: the ambient ones.
    fn credentials(&self, location: &Location) -> anyhow::Result<Option<SharedCredentialsProvider>> {
        if let Some(provider) = self.assumed.get(&location.account) {
            Ok(Some(provider.clone()))
        } else if self.ambient_account.as_deref() == Some(location.account.as_str()) {
            Ok(None)
        } else {
            bail!("no credentials for account {}: it is not in scope.accounts", location.account)
        }
    }
}
