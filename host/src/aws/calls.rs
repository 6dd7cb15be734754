//! One EC2 client for one location, with every call paced by the token buckets and counted by operation name.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::errors::ApiError;
use crate::model::Location;
use crate::pacing::Pacer;

/// API calls made, by operation name; calls that ended throttled (after the SDK's
/// retries) also count under `OPERATION throttled`.
#[derive(Debug, Default)]
pub struct CallCounts(Mutex<BTreeMap<String, u64>>);

impl CallCounts {
    fn add(&self, key: &str) {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(key.to_string()).or_default() += 1;
    }

    /// The counts, sorted by operation name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(op, n)| (op.to_string(), *n)).collect()
    }
}

/// What this endpoint turned out not to implement, learned once and warned about once.
#[derive(Debug, Default)]
pub struct Gaps {
    /// DescribeImageReferences failed: usage comes from instances and launch templates.
    pub no_image_references: AtomicBool,
    /// The `block-device-mapping.snapshot-id` filter failed: scan the images instead.
    pub no_snapshot_filter: AtomicBool,
}

impl Gaps {
    /// Records a gap; true the first time (the caller then warns).
    pub fn learn(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::SeqCst)
    }

    /// Whether a gap is known.
    pub fn known(flag: &AtomicBool) -> bool {
        flag.load(Ordering::SeqCst)
    }
}

/// An EC2 client bound to one account and region.
#[derive(Debug, Clone)]
pub struct Ec2 {
    pub client: aws_sdk_ec2::Client,
    /// The Recycle Bin client of the same account and region (`None`: rules not read).
    pub rbin: Option<aws_sdk_rbin::Client>,
    pub location: Location,
    pub gaps: Arc<Gaps>,
    pacer: Arc<Pacer>,
    counts: Arc<CallCounts>,
}

impl Ec2 {
    /// Binds `client` to `location`, sharing the backend's buckets, counters and gaps.
    pub fn new(
        client: aws_sdk_ec2::Client,
        location: Location,
        pacer: Arc<Pacer>,
        counts: Arc<CallCounts>,
        gaps: Arc<Gaps>,
    ) -> Ec2 {
        Ec2 { client, rbin: None, location, gaps, pacer, counts }
    }

    /// The same handle with a Recycle Bin client.
    pub fn with_rbin(mut self, rbin: aws_sdk_rbin::Client) -> Ec2 {
        self.rbin = Some(rbin);
        self
    }

    /// Makes one call: waits for a token of the operation's bucket, counts it, sends it
    /// (the request future does nothing until awaited), and classifies a failure.
    pub async fn call<T, E, F>(&self, operation: &'static str, request: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.pacer.acquire(&self.location, operation).await;
        self.counts.add(operation);
        request.await.map_err(|e| {
            let err = ApiError::from_sdk(operation, &e);
            if err.kind == super::errors::ErrorKind::Throttled {
                self.counts.add(&format!("{operation} throttled"));
            }
            tracing::debug!(location = %self.location, "{err}");
            err
        })
    }
}

/// The token of the next page of `operation`: `None` after the last page (no token, or
/// an empty one). A token the endpoint already gave would be asked for ever, and stopping
/// there would take part of a listing for the whole (an instance left out is an image
/// that looks unused): the listing fails instead.
pub fn next_page(
    operation: &'static str,
    next: Option<&str>,
    seen: &mut BTreeSet<String>,
) -> Result<Option<String>, ApiError> {
    match next.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(token) if seen.insert(token.to_string()) => Ok(Some(token.to_string())),
        Some(token) => Err(ApiError {
            operation,
            kind: super::errors::ErrorKind::Other,
            code: None,
            message: format!("the endpoint gave the page token {token:?} twice; the listing cannot be completed"),
        }),
    }
}
