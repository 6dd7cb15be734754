//! Host imports with native fallbacks, so plugin unit tests run under plain `cargo test`.
//!
//! On wasm32 every call goes to the host. Natively the calls read a thread-local test
//! inventory that `testing::set_inventory` fills.

use crate::{Image, ImageQuery, ImageSummary, LogLevel, Rank, Timestamp};

/// Images in scope matching `query` (see the WIT `query-images`).
pub fn query_images(query: &ImageQuery) -> Result<Vec<Image>, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::query_images(query)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::query(query)
    }
}

/// Images in scope matching `query`, as summaries (see the WIT `query-summaries`).
pub fn query_summaries(query: &ImageQuery) -> Result<Vec<ImageSummary>, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::query_summaries(query)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::query(query).map(|found| found.iter().map(ImageSummary::from).collect())
    }
}

/// One image's summary by id, if in scope.
pub fn get_summary(id: &str) -> Option<ImageSummary> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::get_summary(id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::with(|inv| inv.get(id).map(ImageSummary::from))
    }
}

/// Where image `id` stands by age among the images of `query` that rank (see the WIT
/// `rank-by-age`): a family's ranking without lowering the family.
pub fn rank_by_age(query: &ImageQuery, id: &str) -> Result<Rank, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::rank_by_age(query, id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::rank(query, id)
    }
}

/// One image by id, if in scope.
pub fn get_image(id: &str) -> Option<Image> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::get_image(id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::with(|inv| inv.get(id).cloned())
    }
}

/// The evaluation time.
pub fn now() -> Timestamp {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::with(|inv| inv.now)
    }
}

/// Logs a line under the plugin's name.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::amiwarden::policy::host::log(level, message)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::with_mut(|inv| inv.logs.push((level, message.to_string())))
    }
}

/// The native stand-in for the host, for plugin unit tests and native benchmarks.
pub mod testing {
    use super::*;
    use std::cell::RefCell;

    /// What the native host fallback serves.
    #[derive(Default, Clone)]
    pub struct Inventory {
        /// Every image in scope.
        pub images: Vec<Image>,
        /// The evaluation time.
        pub now: Timestamp,
        /// Lines the plugin logged.
        pub logs: Vec<(LogLevel, String)>,
        /// Image positions by (account, region), by source image and by tag key, so
        /// native runs over large inventories answer queries as the host does.
        by_location: std::collections::BTreeMap<(String, String), Vec<usize>>,
        by_source: std::collections::BTreeMap<String, Vec<usize>>,
        by_tag_key: std::collections::BTreeMap<String, Vec<usize>>,
        by_id: std::collections::HashMap<String, usize>,
        /// Rankings by age, oldest first, per query (its debug text), kept as the host
        /// keeps them for a run.
        rankings: std::collections::HashMap<String, std::rc::Rc<Vec<(Timestamp, String)>>>,
    }

    thread_local! {
        static INVENTORY: RefCell<Inventory> = RefCell::new(Inventory::default());
    }

    /// Replaces the native inventory for this thread.
    pub fn set_inventory(images: Vec<Image>, now: Timestamp) {
        let mut inventory = Inventory { images, now, ..Inventory::default() };
        for (i, image) in inventory.images.iter().enumerate() {
            inventory.by_id.entry(image.id.clone()).or_insert(i);
            inventory.by_location.entry((image.account.clone(), image.region.clone())).or_default().push(i);
            if let Some(source) = &image.source_image_id {
                inventory.by_source.entry(source.clone()).or_default().push(i);
            }
            for tag in &image.tags {
                inventory.by_tag_key.entry(tag.key.clone()).or_default().push(i);
            }
        }
        INVENTORY.with(|inv| *inv.borrow_mut() = inventory);
    }

    impl Inventory {
        /// One image by id (the first, if a test gave the same id twice).
        pub fn get(&self, id: &str) -> Option<&Image> {
            self.by_id.get(id).map(|&i| &self.images[i])
        }
    }

    /// Reads the native inventory.
    pub fn with<R>(f: impl FnOnce(&Inventory) -> R) -> R {
        INVENTORY.with(|inv| f(&inv.borrow()))
    }

    pub(crate) fn with_mut<R>(f: impl FnOnce(&mut Inventory) -> R) -> R {
        INVENTORY.with(|inv| f(&mut inv.borrow_mut()))
    }

    /// The message of an `InvalidConfig` error, for config tests; panics on anything else.
    pub fn invalid_config_message<T: std::fmt::Debug>(result: Result<T, crate::PolicyError>) -> String {
        match result {
            Err(crate::PolicyError::InvalidConfig(message)) => message,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    /// Whether `image` matches `query`, with the event image's account as default.
    pub fn matches(query: &ImageQuery, image: &Image) -> bool {
        query.account.as_ref().is_none_or(|a| *a == image.account)
            && query.region.as_ref().is_none_or(|r| *r == image.region)
            && query.name_prefix.as_ref().is_none_or(|p| image.name.starts_with(p.as_str()))
            && query.source_image_id.as_ref().is_none_or(|s| image.source_image_id.as_ref() == Some(s))
            && query.tag_key.as_ref().is_none_or(|k| match image.tag(k) {
                None => false,
                Some(v) => query.tag_value.as_ref().is_none_or(|want| want == v),
            })
    }

    pub(crate) fn rank(query: &ImageQuery, id: &str) -> Result<Rank, String> {
        let image = with(|inv| inv.get(id).map(|i| (i.creation_time, i.id.clone())))
            .ok_or_else(|| format!("image {id} is not in scope"))?;
        let key = format!("{query:?}");
        let ranking = match with(|inv| inv.rankings.get(&key).cloned()) {
            Some(ranking) => ranking,
            None => {
                let stands = |i: &Image| {
                    i.copied_from().and_then(get_image).is_none_or(|s| s.state == crate::ImageState::Deregistered)
                };
                let mut ranking: Vec<(Timestamp, String)> = self::query(query)?
                    .into_iter()
                    .filter(|i| i.state == crate::ImageState::Available && stands(i))
                    .map(|i| (i.creation_time, i.id))
                    .collect();
                ranking.sort();
                let ranking = std::rc::Rc::new(ranking);
                with_mut(|inv| inv.rankings.insert(key, std::rc::Rc::clone(&ranking)));
                ranking
            }
        };
        let not_newer = ranking.partition_point(|entry| *entry <= image);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Rank { newer: count(ranking.len() - not_newer), total: count(ranking.len()) })
    }

    pub(crate) fn query(query: &ImageQuery) -> Result<Vec<Image>, String> {
        with(|inv| {
            let all: Vec<usize>;
            let candidates: &[usize] = if let Some(source) = &query.source_image_id {
                inv.by_source.get(source).map_or(&[], Vec::as_slice)
            } else if let (Some(account), Some(region)) = (&query.account, &query.region) {
                inv.by_location.get(&(account.clone(), region.clone())).map_or(&[], Vec::as_slice)
            } else if let Some(key) = &query.tag_key {
                inv.by_tag_key.get(key).map_or(&[], Vec::as_slice)
            } else {
                all = (0..inv.images.len()).collect();
                &all
            };
            let mut found: Vec<Image> =
                candidates.iter().map(|&i| &inv.images[i]).filter(|i| matches(query, i)).cloned().collect();
            found.sort_by(|a, b| (&a.region, a.creation_time, &a.id).cmp(&(&b.region, b.creation_time, &b.id)));
            Ok(found)
        })
    }
}
