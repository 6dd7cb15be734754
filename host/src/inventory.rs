//! The inventory of one run: every image in scope, indexed for the queries plugins make.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Image, Location};

/// The most images one plugin query may return.
pub const MAX_QUERY_IMAGES: usize = 10_000;

/// A query over the inventory; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub account: Option<String>,
    pub region: Option<String>,
    pub tag_key: Option<String>,
    pub tag_value: Option<String>,
    pub name_prefix: Option<String>,
    pub source_image_id: Option<String>,
}

/// Every image in scope, sorted by (account, region, creation time, id), with indices.
#[derive(Debug, Default)]
pub struct Inventory {
    images: Vec<Image>,
    by_id: BTreeMap<String, usize>,
    by_location: BTreeMap<Location, Vec<usize>>,
    by_tag_key: BTreeMap<String, Vec<usize>>,
    by_source: BTreeMap<String, Vec<usize>>,
    snapshot_users: BTreeMap<String, BTreeSet<String>>,
}

impl Inventory {
    /// Builds the inventory; input order does not matter. An image id is EC2's key for
    /// an image everywhere in the host (proposals name images by id alone), so the same id
    /// in two places is refused rather than letting an action land on the wrong image.
    pub fn new(mut images: Vec<Image>) -> Result<Inventory, String> {
        images.sort_by(|a, b| (&a.id, &a.account, &a.region).cmp(&(&b.id, &b.account, &b.region)));
        images.dedup_by(|a, b| a.id == b.id && a.account == b.account && a.region == b.region);
        if let Some(pair) = images.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(format!(
                "image id {} appears in both {} and {}: ids must be unique",
                pair[0].id,
                pair[0].location(),
                pair[1].location()
            ));
        }
        images.sort_by(|a, b| {
            (&a.account, &a.region, a.creation_time, &a.id).cmp(&(&b.account, &b.region, b.creation_time, &b.id))
        });
        let mut inv = Inventory { images, ..Inventory::default() };
        for (i, image) in inv.images.iter().enumerate() {
            inv.by_id.insert(image.id.clone(), i);
            inv.by_location.entry(image.location()).or_default().push(i);
            for key in image.tags.keys() {
                inv.by_tag_key.entry(key.clone()).or_default().push(i);
            }
            if let Some(source) = &image.source_image_id {
                inv.by_source.entry(source.clone()).or_default().push(i);
            }
            for snap in image.snapshot_ids() {
                inv.snapshot_users.entry(snap.to_string()).or_default().insert(image.id.clone());
            }
        }
        Ok(inv)
    }

    /// Every image, in inventory order.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// One image by id.
    pub fn get(&self, id: &str) -> Option<&Image> {
        self.by_id.get(id).map(|&i| &self.images[i])
    }

    /// Images using a snapshot.
    pub fn snapshot_users(&self, snapshot_id: &str) -> impl Iterator<Item = &str> {
        self.snapshot_users.get(snapshot_id).into_iter().flatten().map(String::as_str)
    }

    /// Images matching `query`, sorted by region, creation time, then id; an error when
    /// more than `MAX_QUERY_IMAGES` match.
    pub fn query(&self, query: &Query) -> Result<Vec<&Image>, String> {
        let mut found = Vec::new();
        for i in self.candidates(query) {
            let image = &self.images[i];
            if matches(query, image) {
                if found.len() == MAX_QUERY_IMAGES {
                    return Err(format!("query matches more than {MAX_QUERY_IMAGES} images; narrow it"));
                }
                found.push(image);
            }
        }
        found.sort_by(|a, b| (&a.region, a.creation_time, &a.id).cmp(&(&b.region, b.creation_time, &b.id)));
        Ok(found)
    }
}

impl Inventory {
    /// The narrowest index `query` can use (source image, location, tag key), as the
    /// positions of its images; `None` when it can use none and looks at every image.
    fn index(&self, query: &Query) -> Option<&[usize]> {
        let list = if let Some(source) = &query.source_image_id {
            self.by_source.get(source)
        } else if let (Some(account), Some(region)) = (&query.account, &query.region) {
            self.by_location.get(&Location { account: account.clone(), region: region.clone() })
        } else if let Some(key) = &query.tag_key {
            self.by_tag_key.get(key)
        } else {
            return None;
        };
        Some(list.map_or(&[], Vec::as_slice))
    }

    /// The images `query` looks at before its filters.
    fn candidates(&self, query: &Query) -> Box<dyn Iterator<Item = usize> + '_> {
        match self.index(query) {
            Some(list) => Box::new(list.iter().copied()),
            None => Box::new(0..self.images.len()),
        }
    }

    /// How many images `query` looks at (what it costs before anything is returned).
    pub fn scan_size(&self, query: &Query) -> usize {
        self.index(query).map_or(self.images.len(), <[usize]>::len)
    }
}

fn matches(q: &Query, image: &Image) -> bool {
    q.account.as_ref().is_none_or(|a| *a == image.account)
        && q.region.as_ref().is_none_or(|r| *r == image.region)
        && q.name_prefix.as_ref().is_none_or(|p| image.name.starts_with(p.as_str()))
        && q.source_image_id.as_ref().is_none_or(|s| image.source_image_id.as_ref() == Some(s))
        && q.tag_key.as_ref().is_none_or(|k| match image.tags.get(k) {
            None => false,
            Some(v) => q.tag_value.as_ref().is_none_or(|want| want == v),
        })
}
