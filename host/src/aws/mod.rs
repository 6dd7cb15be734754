//! The AWS backend: `Backend` over aws-sdk-ec2, paced per account, region and throttling bucket.
//!
//! The only module that knows the AWS SDK. `connect` builds the configuration once
//! (credential chain, profile, endpoint URL, AssumeRole per account); every call goes
//! through an [`calls::Ec2`] handle that waits for a token of EC2's matching throttling
//! bucket and counts the call. The `Backend` trait is synchronous, so the backend owns
//! a tokio runtime and blocks on it; inventory runs every location concurrently.

mod calls;
mod collect;
mod connect;
mod convert;
mod errors;
mod execute;
mod preflight;
pub mod queue;
mod recycle;
mod usage;

#[cfg(test)]
mod mock_tests;
pub mod organization;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::task::JoinSet;

mod iam;

pub use crate::pacing::{BucketClass, Clock, SystemClock, TokenBucket};
pub use connect::AwsOptions;
pub use errors::{ApiError, ErrorKind};
pub use iam::{iam_policy, trust_policy};

use crate::backend::{ActionOutcome, Backend, recheck_expiry};
use crate::config::{AwsSettings, Scope};
use crate::model::{Image, ImageState, InventoryNeed, Location};
use crate::pacing::Pacer;
use crate::plan::{Op, PlannedAction};
use calls::{CallCounts, Ec2, Gaps};
use connect::Connection;

/// Usage (and launch permissions when asked) of images just re-read: what an
/// apply's re-check reads. Snapshot sizes are for pricing, and a DescribeSnapshots per
/// destructive action would spend a fifth of the Describe* bucket (20/s) that paces a
/// large apply. An image whose permission read finds it gone is dropped.
async fn complete_usage(ec2: &Ec2, images: &mut Vec<Image>, permissions: bool) -> anyhow::Result<()> {
    let mut needs = BTreeSet::from([InventoryNeed::Usage]);
    if permissions {
        needs.insert(InventoryNeed::LaunchPermissions);
    }
    collect::complete(ec2, images, &needs).await
}

/// Images an apply works on at once inside a phase, unless `--concurrency` says otherwise:
/// enough to keep the mutating buckets (5–10 calls/s) busy at EC2's latency.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// EC2 through aws-sdk-ec2.
pub struct AwsBackend {
    runtime: tokio::runtime::Runtime,
    /// `None` only in unit tests, where every client is given up front.
    connection: Option<Connection>,
    clients: Mutex<BTreeMap<Location, Ec2>>,
    pacer: Arc<Pacer>,
    counts: Arc<CallCounts>,
    gaps: Arc<Gaps>,
    label: String,
    /// The label and the accounts: what a journal is bound to.
    identity: String,
    /// Snapshots the apply found unused, and until when that finding may be used (see `Backend::snapshot_users`).
    verified: Mutex<BTreeMap<String, Instant>>,
    concurrency: usize,
}

impl std::fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsBackend").field("label", &self.label).finish_non_exhaustive()
    }
}

impl AwsBackend {
    /// One image re-read on its own (after a batch read failed on an id EC2 no longer knows).
    fn refresh_one(&self, location: &Location, image_id: &str, permissions: bool) -> anyhow::Result<Option<Image>> {
        let ec2 = self.ec2(location)?;
        self.runtime.block_on(async {
            let described = match collect::describe_images(&ec2, Some(vec![image_id.to_string()]), Vec::new()).await {
                Ok(described) => described,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e).with_context(|| format!("re-reading {image_id} in {location}")),
            };
            let Some(raw) = described.first() else { return Ok(None) };
            let image = convert::image(location, raw).map_err(anyhow::Error::msg)?;
            if image.state == ImageState::Deregistered {
                return Ok(None);
            }
            let mut images = vec![image];
            complete_usage(&ec2, &mut images, permissions).await?;
            Ok(images.pop())
        })
    }

    /// Loads the AWS configuration and credentials for every account in `scope`.
    pub fn connect(scope: &Scope, settings: &AwsSettings, options: AwsOptions) -> anyhow::Result<AwsBackend> {
        let runtime = runtime()?;
        let connection = runtime.block_on(Connection::open(scope, settings, &options))?;
        let label = match &options.endpoint_url {
            Some(url) => format!("aws:{url}"),
            None => format!("aws{}", options.profile.as_ref().map(|p| format!(":{p}")).unwrap_or_default()),
        };
        let accounts: Vec<&str> = scope.accounts.iter().map(String::as_str).collect();
        let identity = format!("{label} accounts={}", accounts.join(","));
        let clock = Arc::new(SystemClock::default());
        let pacer = if options.unpaced { Pacer::unpaced(clock) } else { Pacer::new(clock) };
        let mut backend = AwsBackend::assemble(runtime, Some(connection), label, pacer);
        backend.identity = identity;
        backend.concurrency = options.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
        Ok(backend)
    }

    fn assemble(
        runtime: tokio::runtime::Runtime,
        connection: Option<Connection>,
        label: String,
        pacer: Pacer,
    ) -> AwsBackend {
        AwsBackend {
            runtime,
            connection,
            clients: Mutex::new(BTreeMap::new()),
            pacer: Arc::new(pacer),
            verified: Mutex::new(BTreeMap::new()),
            concurrency: DEFAULT_CONCURRENCY,
            counts: Arc::new(CallCounts::default()),
            gaps: Arc::new(Gaps::default()),
            identity: label.clone(),
            label,
        }
    }

    /// A backend over given clients (mock clients in unit tests).
    #[cfg(test)]
    fn with_clients(clients: Vec<(Location, aws_sdk_ec2::Client)>) -> AwsBackend {
        let backend = AwsBackend::assemble(
            runtime().expect("a tokio runtime"),
            None,
            "aws:mock".into(),
            Pacer::new(Arc::new(SystemClock::default())),
        );
        {
            let mut map = backend.clients.lock().expect("fresh mutex");
            for (location, client) in clients {
                let ec2 = Ec2::new(
                    client,
                    location.clone(),
                    backend.pacer.clone(),
                    backend.counts.clone(),
                    backend.gaps.clone(),
                );
                map.insert(location, ec2);
            }
        }
        backend
    }

    /// Checks with EC2's DryRun flag that the credentials may make each action's call;
    /// nothing is changed. Returns (action id, allowed or the reason), in plan order.
    pub fn dry_run(&self, actions: &[PlannedAction]) -> Vec<(String, Result<(), String>)> {
        actions
            .iter()
            .map(|action| {
                let verdict = match self.clients_for(action) {
                    Ok((ec2, destination)) => {
                        self.runtime.block_on(preflight::check(&ec2, destination.as_ref(), action))
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                (action.id.clone(), verdict)
            })
            .collect()
    }

    /// The client of an action's location and, for a copy, of its destination.
    fn clients_for(&self, action: &PlannedAction) -> anyhow::Result<(Ec2, Option<Ec2>)> {
        let ec2 = self.ec2(&action.location)?;
        let destination = match &action.op {
            Op::Copy { request } => {
                Some(self.ec2(&Location { account: action.location.account.clone(), region: request.region.clone() })?)
            }
            _ => None,
        };
        Ok((ec2, destination))
    }

    /// The client of one location, made on first use.
    fn ec2(&self, location: &Location) -> anyhow::Result<Ec2> {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ec2) = clients.get(location) {
            return Ok(ec2.clone());
        }
        let connection = self.connection.as_ref().with_context(|| format!("no EC2 client for {location}"))?;
        let ec2 = Ec2::new(
            connection.client(location)?,
            location.clone(),
            self.pacer.clone(),
            self.counts.clone(),
            self.gaps.clone(),
        )
        .with_rbin(connection.rbin_client(location)?);
        clients.insert(location.clone(), ec2.clone());
        Ok(ec2)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("amiwarden-aws")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime for the AWS backend")
}

impl Backend for AwsBackend {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn preflight(&self, actions: &[PlannedAction]) -> Option<Vec<(String, Result<(), String>)>> {
        Some(self.dry_run(actions))
    }

    fn collect(&self, scope: &Scope, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<Vec<Image>> {
        let mut handles = Vec::new();
        for account in &scope.accounts {
            for region in &scope.regions {
                handles.push(self.ec2(&Location { account: account.clone(), region: region.clone() })?);
            }
        }
        let mut images = self.runtime.block_on(async {
            let mut tasks = JoinSet::new();
            for ec2 in handles {
                let needs = needs.clone();
                tasks.spawn(async move {
                    let (location, started) = (ec2.location.clone(), std::time::Instant::now());
                    let images = collect::location(ec2, needs).await?;
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!("inventory of {location}: {} image(s) in {seconds:.2} s", images.len());
                    anyhow::Ok(images)
                });
            }
            let mut images = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                images.extend(joined.context("an inventory task panicked")??);
            }
            anyhow::Ok(images)
        })?;
        images.sort_by(|a, b| (&a.account, &a.region, &a.id).cmp(&(&b.account, &b.region, &b.id)));
        Ok(images)
    }

    fn refresh_many(
        &self,
        location: &Location,
        image_ids: &[String],
        permissions: bool,
    ) -> anyhow::Result<Vec<(String, Option<Image>)>> {
        let ec2 = self.ec2(location)?;
        let batched = self.runtime.block_on(async {
            // One DescribeImages for the batch; an id EC2 no longer knows fails the whole
            // call, and then each image is re-read on its own.
            let described = match collect::describe_images(&ec2, Some(image_ids.to_vec()), Vec::new()).await {
                Ok(described) => described,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => {
                    return Err(e).with_context(|| format!("re-reading {} images in {location}", image_ids.len()));
                }
            };
            let mut images = Vec::new();
            for raw in &described {
                let image = convert::image(location, raw).map_err(anyhow::Error::msg)?;
                if image.state != ImageState::Deregistered {
                    images.push(image);
                }
            }
            complete_usage(&ec2, &mut images, permissions).await?;
            anyhow::Ok(Some(images))
        })?;
        match batched {
            Some(images) => {
                Ok(image_ids.iter().map(|id| (id.clone(), images.iter().find(|i| &i.id == id).cloned())).collect())
            }
            None => image_ids.iter().map(|id| Ok((id.clone(), self.refresh_one(location, id, permissions)?))).collect(),
        }
    }

    fn snapshot_users(
        &self,
        location: &Location,
        snapshot_ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let ec2 = self.ec2(location)?;
        let started = Instant::now();
        let users = self
            .runtime
            .block_on(execute::snapshot_users(&ec2, snapshot_ids))
            .with_context(|| format!("which images use {} snapshot(s) in {location}", snapshot_ids.len()))?;
        let expires = recheck_expiry(started);
        let mut verified = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        verified.retain(|_, until| Instant::now() <= *until);
        for id in snapshot_ids.iter().filter(|id| !users.contains_key(*id)) {
            verified.insert(id.clone(), expires);
        }
        Ok(users)
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn execute(&self, action: &PlannedAction) -> ActionOutcome {
        let (ec2, destination) = match self.clients_for(action) {
            Ok(clients) => clients,
            Err(e) => return ActionOutcome::Failed { error: format!("{e:#}") },
        };
        // A deletion whose snapshot the apply just found unused is not read again.
        let checked = match &action.op {
            Op::DeleteSnapshot { snapshot_id } => self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(snapshot_id)
                .is_some_and(|until| Instant::now() <= until),
            _ => false,
        };
        self.runtime.block_on(execute::run(&ec2, destination.as_ref(), action, checked))
    }

    fn restore(&self, location: &Location, what: &crate::backend::Restore) -> ActionOutcome {
        match self.ec2(location) {
            Ok(ec2) => self.runtime.block_on(recycle::restore(&ec2, what)),
            Err(e) => ActionOutcome::Failed { error: format!("{e:#}") },
        }
    }

    fn call_counts(&self) -> Vec<(String, u64)> {
        self.counts.snapshot()
    }
}
