//! The `host` interface a plugin imports: read-only, deterministic views of the inventory.

use super::bindings::{Host, ImageQuery, ImageSummary, LogLevel, Rank, wit};
use super::sandbox::{RETURNED_IMAGE_WORK, RETURNED_SUMMARY_WORK, StoreState};
use crate::inventory::{MAX_QUERY_IMAGES, MAX_QUERY_SUMMARIES, Query};
use crate::model::Image;

impl Host for StoreState {
    fn query_images(&mut self, query: ImageQuery) -> wasmtime::Result<Result<Vec<wit::Image>, String>> {
        self.query(query, MAX_QUERY_IMAGES, RETURNED_IMAGE_WORK, |i| wit::Image::from(i))
    }

    fn get_image(&mut self, id: String) -> wasmtime::Result<Option<wit::Image>> {
        self.charge_host_work(RETURNED_IMAGE_WORK)?;
        Ok(self.inventory.get(&id).map(wit::Image::from))
    }

    fn query_summaries(&mut self, query: ImageQuery) -> wasmtime::Result<Result<Vec<ImageSummary>, String>> {
        self.query(query, MAX_QUERY_SUMMARIES, RETURNED_SUMMARY_WORK, |i| ImageSummary::from(i))
    }

    fn get_summary(&mut self, id: String) -> wasmtime::Result<Option<ImageSummary>> {
        self.charge_host_work(RETURNED_SUMMARY_WORK)?;
        Ok(self.inventory.get(&id).map(ImageSummary::from))
    }

    fn rank_by_age(&mut self, query: ImageQuery, id: String) -> wasmtime::Result<Result<Rank, String>> {
        // Charged as the scan it would be, whether or not the ranking is cached: what a
        // plugin may do does not depend on what other plugins or threads asked first.
        let query = Query::from(query);
        let inventory = std::sync::Arc::clone(&self.inventory);
        self.charge_host_work(inventory.scan_size(&query) as u64)?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(match inventory.rank(&query, &id) {
            Some(rank) => Ok(Rank { newer: count(rank.newer), total: count(rank.total) }),
            None => Err(format!("image {id} is not in scope")),
        })
    }

    fn now(&mut self) -> wit::Timestamp {
        self.now.0
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let message: String = message.chars().take(2048).collect();
        if !self.take_log_budget(message.len()) {
            return;
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl wit::Host for StoreState {}

impl StoreState {
    /// Answers a query of at most `limit` images, charging the images it scans and
    /// `work` per image it returns.
    fn query<T>(
        &mut self,
        query: ImageQuery,
        limit: usize,
        work: u64,
        lower: impl Fn(&Image) -> T,
    ) -> wasmtime::Result<Result<Vec<T>, String>> {
        let query = Query::from(query);
        let inventory = std::sync::Arc::clone(&self.inventory);
        self.charge_host_work(inventory.scan_size(&query) as u64)?;
        let found = match inventory.query_at_most(&query, limit) {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        self.charge_host_work((found.len() as u64).saturating_mul(work))?;
        Ok(Ok(found.into_iter().map(lower).collect()))
    }
}

impl From<ImageQuery> for Query {
    fn from(query: ImageQuery) -> Self {
        Query {
            account: query.account,
            region: query.region,
            tag_key: query.tag_key,
            tag_value: query.tag_value,
            name_prefix: query.name_prefix,
            source_image_id: query.source_image_id,
        }
    }
}
