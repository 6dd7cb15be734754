//! The inventory of one run: every image in scope, indexed for the queries plugins make.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use crate::model::{Image, ImageState, Location, Micros};
use crate::plan::Shared;

/// foldhash rather than SipHash: ids are hashed for every lookup of a large plan (SipHash
/// was ~2 % of a 100,000-image plan's CPU); randomly seeded, as std's, and never iterated
/// for output.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash table of positions in `images`, keyed by text the images hold.
type HashTable<T> = hashbrown::HashTable<T>;

/// A position in `Inventory::images`: half a `usize` in every index (`Inventory::new`
/// refuses more images than it can count).
type Pos = u32;

/// The most images one plugin query may return as whole records.
pub const MAX_QUERY_IMAGES: usize = 10_000;

/// The most images one plugin query may return as summaries (a few fields each): enough
/// for a family of a 1,000,000-image org (~21,000 images per account, region and family
/// in the benchmark's synthetic org).
pub const MAX_QUERY_SUMMARIES: usize = 100_000;

/// A query over the inventory; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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
    /// Looked up for every proposal, candidate and action: hashed, not compared. Holds
    /// positions in `images` only, hashed by the image's id (a copy of each id as a key
    /// was ~90 MB of a 1,000,000-image plan).
    by_id: HashTable<Pos>,
    /// Each account and region once, in order, with its images: the location is shared by
    /// every candidate of a plan there (two strings each were ~80 MiB of a 1,000,000-image
    /// plan's candidates), and found by halving, without building a key.
    by_location: Vec<(Shared<Location>, Vec<Pos>)>,
    by_tag_key: BTreeMap<String, Vec<Pos>>,
    /// By tag key, then value: the family queries of ranking plugins.
    by_tag: BTreeMap<String, BTreeMap<String, Vec<Pos>>>,
    by_source: BTreeMap<String, Vec<Pos>>,
    /// The images behind each snapshot: (position in `images`, block device) once per
    /// (image, snapshot), hashed by the snapshot's id, so a snapshot shared by images is
    /// found under its hash once per image (no copy of the id, no list per snapshot).
    snapshot_users: HashTable<(Pos, u32)>,
    /// Hashes the ids of both tables.
    hasher: foldhash::fast::RandomState,
    /// `plan::fingerprint` of the images, computed once (a worker plans many events on one
    /// inventory; a scheduled run computes it beside the plugins' work).
    fingerprint: std::sync::OnceLock<String>,
    /// Monthly snapshot cost per account and region, summed once.
    monthly: std::sync::OnceLock<BTreeMap<Location, Micros>>,
    /// Rankings by age (`Inventory::rank`), computed once per query and shared by every
    /// plugin instance and thread of the run.
    rankings: Mutex<Rankings>,
}

/// The images of one query that rank, oldest first by (creation time, id).
type Ranking = Arc<[Pos]>;

/// The rankings computed so far, and how many images they hold together.
#[derive(Debug, Default)]
struct Rankings {
    by_query: HashMap<Query, Ranking>,
    held: usize,
}

/// Where an image stands by age among a query's images that rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    /// How many are newer than it (0: it is the newest).
    pub newer: usize,
    /// How many there are.
    pub total: usize,
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
        // Ids are unique now, so the key is total: sorted in place (a stable sort copies
        // half the images into a buffer beside them).
        images.sort_unstable_by(|a, b| {
            (&a.account, &a.region, a.creation_time, &a.id).cmp(&(&b.account, &b.region, b.creation_time, &b.id))
        });
        if Pos::try_from(images.len()).is_err() {
            return Err(format!("{} images: more than one inventory holds", images.len()));
        }
        let mut inv = Inventory { images, ..Inventory::default() };
        let hasher = &inv.hasher;
        let hash = |text: &str| hasher.hash_one(text);
        let images = &inv.images;
        inv.by_id.reserve(images.len(), |&i| hash(&images[i as usize].id));
        for (i, image) in images.iter().enumerate() {
            let at = i as Pos;
            inv.by_id.insert_unique(hash(&image.id), at, |&i| hash(&images[i as usize].id));
            // Images are in (account, region) order: a new location starts a new entry.
            match inv.by_location.last_mut() {
                Some((location, list)) if location.account == image.account && location.region == image.region => {
                    list.push(at);
                }
                _ => inv.by_location.push((Shared::from(image.location()), vec![at])),
            }
            for (key, value) in &image.tags {
                inv.by_tag_key.entry(key.clone()).or_default().push(at);
                inv.by_tag.entry(key.clone()).or_default().entry(value.clone()).or_default().push(at);
            }
            if let Some(source) = &image.source_image_id {
                inv.by_source.entry(source.clone()).or_default().push(at);
            }
            // Once per (image, snapshot), however many of its devices name the snapshot.
            for (d, device) in image.block_devices.iter().enumerate() {
                let Some(snap) = &device.snapshot_id else { continue };
                if !image.block_devices[..d].iter().any(|b| b.snapshot_id.as_ref() == Some(snap)) {
                    let rehash = |&(i, d): &(Pos, u32)| hash(snapshot_at(images, i, d));
                    inv.snapshot_users.insert_unique(hash(snap), (at, d as u32), rehash);
                }
            }
        }
        Ok(inv)
    }

    /// `image`'s account and region, shared.
    pub fn location(&self, image: &Image) -> Shared<Location> {
        match self.in_location(&image.account, &image.region) {
            Some((location, _)) => location.clone(),
            None => Shared::from(image.location()),
        }
    }

    /// The entry of `by_location` for an account and region.
    fn in_location(&self, account: &str, region: &str) -> Option<&(Shared<Location>, Vec<Pos>)> {
        let key = (account, region);
        let found = self.by_location.binary_search_by(|(l, _)| (l.account.as_str(), l.region.as_str()).cmp(&key));
        found.ok().map(|i| &self.by_location[i])
    }

    /// The inventory's fingerprint (`plan::fingerprint`), computed on first use.
    pub fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| crate::plan::fingerprint(&self.images))
    }

    /// Today's monthly snapshot cost per account and region, summed on first use.
    pub fn monthly_by_location(&self) -> &BTreeMap<Location, Micros> {
        self.monthly.get_or_init(|| {
            let mut by: BTreeMap<Location, Micros> = BTreeMap::new();
            for (location, list) in &self.by_location {
                let sum = crate::cost::total(list.iter().map(|&i| self.at(i).monthly_cost));
                by.insert(Location::clone(location), sum);
            }
            by
        })
    }

    /// The image at position `i`.
    fn at(&self, i: Pos) -> &Image {
        &self.images[i as usize]
    }

    /// Every image, in inventory order.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// One image by id.
    pub fn get(&self, id: &str) -> Option<&Image> {
        self.find(id).map(|(_, image)| image)
    }

    /// One image by id, with its position in `images()`.
    pub fn find(&self, id: &str) -> Option<(usize, &Image)> {
        let at = self.by_id.find(self.hasher.hash_one(id), |&i| self.images[i as usize].id == id)?;
        Some((*at as usize, self.at(*at)))
    }

    /// The ids of the images using a snapshot, in id order.
    pub fn snapshot_users(&self, snapshot_id: &str) -> impl Iterator<Item = &str> {
        let mut users: Vec<&str> = (self.snapshot_users.iter_hash(self.hasher.hash_one(snapshot_id)))
            .filter(|&&(i, d)| snapshot_at(&self.images, i, d) == snapshot_id)
            .map(|&(i, _)| self.at(i).id.as_str())
            .collect();
        users.sort_unstable();
        users.into_iter()
    }

    /// Images matching `query`, sorted by region, creation time, then id; an error when
    /// more than `MAX_QUERY_IMAGES` match.
    pub fn query(&self, query: &Query) -> Result<Vec<&Image>, String> {
        self.query_at_most(query, MAX_QUERY_IMAGES)
    }

    /// `query` with its own limit (`MAX_QUERY_SUMMARIES` for summaries).
    pub fn query_at_most(&self, query: &Query, limit: usize) -> Result<Vec<&Image>, String> {
        let mut found = Vec::new();
        for i in self.matching(query) {
            if found.len() == limit {
                return Err(format!("query matches more than {limit} images; narrow it"));
            }
            found.push(self.at(i));
        }
        found.sort_by(|a, b| (&a.region, a.creation_time, &a.id).cmp(&(&b.region, b.creation_time, &b.id)));
        Ok(found)
    }
}

impl Inventory {
    /// Where image `id` stands by age (creation time, then id) among the images matching
    /// `query` that rank in their region: available, and not a copy of an image in scope
    /// that is not deregistered. The ranking is computed once per query and kept for the
    /// run, up to four images held per image in the inventory (past that a query is
    /// ranked afresh each time: slower, never different). `None` when `id` is not in scope.
    pub fn rank(&self, query: &Query, id: &str) -> Option<Rank> {
        let image = self.get(id)?;
        let ranking = self.ranking(query);
        let key = (image.creation_time, image.id.as_str());
        let not_newer = ranking.partition_point(|&i| (self.at(i).creation_time, self.at(i).id.as_str()) <= key);
        Some(Rank { newer: ranking.len() - not_newer, total: ranking.len() })
    }

    fn ranking(&self, query: &Query) -> Ranking {
        let cached =
            self.rankings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).by_query.get(query).cloned();
        if let Some(ranking) = cached {
            return ranking;
        }
        let mut ranking: Vec<Pos> = self
            .matching(query)
            .filter(|&i| {
                let image = self.at(i);
                image.state == ImageState::Available
                    && image
                        .source_image_id
                        .as_deref()
                        .and_then(|s| self.get(s))
                        .is_none_or(|s| s.state == ImageState::Deregistered)
            })
            .collect();
        // Within one account and region, inventory order is age order: a family's
        // ranking there (every live event's query) is sorted already and is only checked.
        let age = |&a: &Pos, &b: &Pos| {
            let (a, b) = (self.at(a), self.at(b));
            (a.creation_time, &a.id).cmp(&(b.creation_time, &b.id))
        };
        if !ranking.is_sorted_by(|a, b| age(a, b).is_le()) {
            ranking.sort_by(age);
        }
        let ranking: Ranking = ranking.into();
        let mut rankings = self.rankings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if rankings.held + ranking.len() <= 4 * self.images.len() && !rankings.by_query.contains_key(query) {
            rankings.held += ranking.len();
            rankings.by_query.insert(query.clone(), Arc::clone(&ranking));
        }
        ranking
    }

    /// The narrowest index `query` can use (source image, location, tag key and value, tag
    /// key), as the positions of its images, kept to the account and region it names, with
    /// what every image listed matches already; `None` when it can use none and looks at
    /// every image.
    fn index(&self, query: &Query) -> Option<(&[Pos], Known)> {
        fn found(list: Option<&Vec<Pos>>) -> &[Pos] {
            list.map_or(&[], Vec::as_slice)
        }
        // Every query a plugin makes goes through here: no allocation.
        let by_source = query.source_image_id.as_ref().map(|source| found(self.by_source.get(source)));
        let by_location = match (&query.account, &query.region) {
            (Some(account), Some(region)) => Some(found(self.in_location(account, region).map(|(_, list)| list))),
            _ => None,
        };
        let by_tag = query.tag_key.as_ref().map(|key| match &query.tag_value {
            Some(value) => found(self.by_tag.get(key).and_then(|values| values.get(value))),
            None => found(self.by_tag_key.get(key)),
        });
        // `within` keeps a list to the query's account, and region when it names one.
        let located = query.account.is_some();
        let source = Known { location: located, source: true, ..Known::default() };
        let tag = Known { location: located, tag: true, ..Known::default() };
        [
            by_source.map(|l| (self.within(l, query), source)),
            by_location.map(|l| (l, Known { location: true, ..Known::default() })),
            by_tag.map(|l| (self.within(l, query), tag)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(list, _)| list.len())
    }

    /// The run of `list` in the account and region `query` names, found by halving: an
    /// index lists positions in ascending order, and the images are in (account, region)
    /// order, so a family's images in one location sit together in the family's list.
    fn within<'a>(&self, list: &'a [Pos], query: &Query) -> &'a [Pos] {
        let Some(account) = query.account.as_deref() else { return list };
        let region = query.region.as_deref();
        let place = |&i: &Pos| {
            let image = self.at(i);
            image
                .account
                .as_str()
                .cmp(account)
                .then_with(|| region.map_or(Ordering::Equal, |r| image.region.as_str().cmp(r)))
        };
        let start = list.partition_point(|i| place(i) == Ordering::Less);
        let end = start + list[start..].partition_point(|i| place(i) == Ordering::Equal);
        &list[start..end]
    }

    /// The positions of the images matching `query`, in inventory order. An image its
    /// index listed is checked only for what the index does not tell: a family's first
    /// ranking reads ~2,000 images scattered over the inventory, and comparing the account,
    /// region and tag each index already matched was most of its ~0.4 ms (a cache miss per
    /// string).
    fn matching<'a>(&'a self, query: &'a Query) -> Box<dyn Iterator<Item = Pos> + 'a> {
        match self.index(query) {
            Some((list, known)) => Box::new(list.iter().copied().filter(move |&i| matches(query, self.at(i), known))),
            None => {
                Box::new((0..self.images.len() as Pos).filter(move |&i| matches(query, self.at(i), Known::default())))
            }
        }
    }

    /// How many images `query` looks at (what it costs before anything is returned).
    pub fn scan_size(&self, query: &Query) -> usize {
        self.index(query).map_or(self.images.len(), |(list, _)| list.len())
    }
}

/// The snapshot on device `d` of image `i` (an entry of `Inventory::snapshot_users`).
fn snapshot_at(images: &[Image], i: Pos, d: u32) -> &str {
    images[i as usize].block_devices[d as usize].snapshot_id.as_deref().unwrap_or_default()
}

/// What every image an index lists is known to match of the query that chose it.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    /// The account, and the region when the query names one.
    location: bool,
    /// The tag key, and the value when the query names one.
    tag: bool,
    /// The source image.
    source: bool,
}

/// Whether `image` matches `q`, checking only what is not `known`.
fn matches(q: &Query, image: &Image, known: Known) -> bool {
    (known.location
        || q.account.as_ref().is_none_or(|a| *a == image.account)
            && q.region.as_ref().is_none_or(|r| *r == image.region))
        && q.name_prefix.as_ref().is_none_or(|p| image.name.starts_with(p.as_str()))
        && (known.source || q.source_image_id.as_ref().is_none_or(|s| image.source_image_id.as_ref() == Some(s)))
        && (known.tag
            || q.tag_key.as_ref().is_none_or(|k| match image.tags.get(k) {
                None => false,
                Some(v) => q.tag_value.as_ref().is_none_or(|want| want == v),
            }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Inventory, MAX_QUERY_SUMMARIES, Query, Rank};
    use crate::model::{Architecture, Image, ImageState, Micros, Timestamp, Usage};

    fn image(n: u32, family: &str) -> Image {
        Image {
            id: format!("ami-0{n:016x}"),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            name: format!("img-{n}"),
            description: String::new(),
            creation_time: Timestamp(i64::from(n)),
            state: ImageState::Available,
            architecture: Architecture::X86_64,
            platform: Default::default(),
            root_device_type: Default::default(),
            public: false,
            launch_permissions: None,
            tags: [("family".to_string(), family.to_string())].into(),
            block_devices: Vec::new(),
            deprecation_time: None,
            source_image_id: None,
            source_region: None,
            deregistration_protection: None,
            recycle_bin_days: None,
            usage: Usage::default(),
            monthly_cost: 0,
        }
    }

    /// The images of one `family` tag value in one account and region.
    fn family_in(account: &str, region: &str, family: &str) -> Query {
        Query {
            account: Some(account.into()),
            region: Some(region.into()),
            tag_key: Some("family".into()),
            tag_value: Some(family.into()),
            ..Query::default()
        }
    }

    #[test]
    fn every_image_and_every_snapshots_users_are_found_by_id_once_each_in_id_order() {
        // Image n uses snapshot n, the one before it in the same order (so every snapshot
        // but the last has two users), and its own snapshot a second time on a second
        // device: enough images that both tables grow (and rehash) many times.
        let device = |snap: u32| crate::model::BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some(format!("snap-{snap}")),
            size_gib: 8,
            full_size_bytes: None,
            storage_tier: Default::default(),
            recycle_bin_days: None,
        };
        let n = 5000;
        let images: Vec<Image> = (0..n)
            .rev()
            .map(|i| Image { block_devices: vec![device(i), device(i + 1), device(i)], ..image(i, "f") })
            .collect();
        let inventory = Inventory::new(images.clone()).unwrap();
        for image in &images {
            let (at, found) = inventory.find(&image.id).unwrap();
            assert_eq!((found, &inventory.images()[at]), (image, image));
        }
        assert!(inventory.get("ami-0ffffffffffffffff").is_none());
        for snap in 0..n {
            let users: Vec<&str> = inventory.snapshot_users(&format!("snap-{snap}")).collect();
            let mut want = vec![images[(n - 1 - snap) as usize].id.as_str()];
            if snap > 0 {
                want.insert(0, images[(n - snap) as usize].id.as_str());
            }
            assert_eq!(users, want, "snap-{snap}");
        }
        assert_eq!(inventory.snapshot_users(&format!("snap-{n}")).count(), 1);
        assert_eq!(inventory.snapshot_users("snap-x").count(), 0);
    }

    #[test]
    fn a_family_query_looks_at_its_family_only_and_finds_what_a_full_scan_finds() {
        // 1,000 images in one region, in 100 families of 10.
        let inventory = Inventory::new((0..1000).map(|n| image(n, &format!("f{}", n % 100))).collect()).unwrap();
        let family = family_in("111111111111", "us-east-1", "f7");
        // The region holds 1,000 images and the tag key 1,000: the (key, value) index 10.
        assert_eq!(inventory.scan_size(&family), 10);
        let found: Vec<&str> = inventory.query(&family).unwrap().iter().map(|i| i.id.as_str()).collect();
        let scanned: Vec<&str> = inventory
            .images()
            .iter()
            .filter(|i| i.tags.get("family").map(String::as_str) == Some("f7"))
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(found, scanned);
        let by_key = Query { tag_value: None, ..family.clone() };
        assert_eq!(inventory.scan_size(&by_key), 1000);
        let absent = Query { tag_value: Some("nope".into()), ..family };
        assert_eq!((inventory.scan_size(&absent), inventory.query(&absent).unwrap().len()), (0, 0));
        assert_eq!(inventory.scan_size(&Query::default()), 1000);
    }

    #[test]
    fn a_family_query_in_one_location_looks_at_the_family_there_only() {
        // 1,200 images in 2 accounts × 3 regions, in 10 families: 20 of a family per location.
        let place = |n: u32| {
            (
                ["111111111111", "222222222222"][n as usize % 2],
                ["eu-west-1", "us-east-1", "us-west-2"][n as usize / 2 % 3],
            )
        };
        let inventory = Inventory::new(
            (0..1200)
                .map(|n| Image {
                    account: place(n).0.into(),
                    region: place(n).1.into(),
                    source_image_id: (n % 7 == 0).then(|| "ami-0source".to_string()),
                    ..image(n, &format!("f{}", n / 6 % 10))
                })
                .collect(),
        )
        .unwrap();
        // Every index, with and without what it does not tell (a name prefix, a region
        // without an account): the images it lists are checked for the rest only.
        let places = [
            (None, None),
            (Some("111111111111"), None),
            (None, Some("us-east-1")),
            (Some("222222222222"), Some("us-east-1")),
        ];
        let filters =
            [(Some("f3"), None), (None, None), (None, Some("ami-0source")), (Some("f3"), Some("ami-0source"))];
        for ((account, region), (tag_value, source)) in places.into_iter().flat_map(|p| filters.map(|f| (p, f))) {
            for name_prefix in [None, Some("img-11")] {
                let query = Query {
                    account: account.map(str::to_string),
                    region: region.map(str::to_string),
                    tag_key: Some("family".into()),
                    tag_value: tag_value.map(str::to_string),
                    source_image_id: source.map(str::to_string),
                    name_prefix: name_prefix.map(str::to_string),
                };
                let scanned: BTreeSet<&str> = inventory
                    .images()
                    .iter()
                    .filter(|i| super::matches(&query, i, Default::default()))
                    .map(|i| i.id.as_str())
                    .collect();
                let found = inventory.query_at_most(&query, MAX_QUERY_SUMMARIES).unwrap();
                assert_eq!(found.iter().map(|i| i.id.as_str()).collect::<BTreeSet<_>>(), scanned, "{query:?}");
                let every_match_is_looked_at = inventory.scan_size(&query) >= scanned.len();
                assert!(every_match_is_looked_at, "{query:?}");
                // Every image ranks here (available; the source is not in scope), whichever
                // order the index listed them in.
                let by_age = |i: &&&Image| (i.creation_time, i.id.clone());
                if let (Some(oldest), Some(newest)) = (found.iter().min_by_key(by_age), found.iter().max_by_key(by_age))
                {
                    let total = scanned.len();
                    assert_eq!(inventory.rank(&query, &newest.id), Some(Rank { newer: 0, total }), "{query:?}");
                    assert_eq!(inventory.rank(&query, &oldest.id), Some(Rank { newer: total - 1, total }), "{query:?}");
                }
            }
        }
        let family_there = family_in("222222222222", "us-east-1", "f3");
        // The family has 120 images, the location 200: the family there 20.
        assert_eq!(inventory.scan_size(&family_there), 20);
        assert_eq!(inventory.scan_size(&Query { region: None, ..family_there.clone() }), 60);
        let newest = inventory.query(&family_there).unwrap().last().unwrap().id.clone();
        assert_eq!(inventory.rank(&family_there, &newest), Some(Rank { newer: 0, total: 20 }));
    }

    #[test]
    fn a_family_too_large_for_whole_records_is_still_answered_as_summaries() {
        let inventory = Inventory::new((0..10_001).map(|n| image(n, "web")).collect()).unwrap();
        let family = Query { tag_key: Some("family".into()), tag_value: Some("web".into()), ..Query::default() };
        let refused = inventory.query(&family).unwrap_err();
        assert!(refused.contains("more than 10000"), "{refused}");
        assert_eq!(inventory.query_at_most(&family, MAX_QUERY_SUMMARIES).unwrap().len(), 10_001);
    }

    #[test]
    fn the_fingerprint_and_monthly_costs_are_computed_once_and_match_the_images() {
        let mut images: Vec<Image> = (0..20).map(|n| image(n, "web")).collect();
        for (n, i) in images.iter_mut().enumerate() {
            i.monthly_cost = n as Micros * 1000;
        }
        let inventory = Inventory::new(images.clone()).unwrap();
        assert_eq!(inventory.fingerprint(), crate::plan::fingerprint(&images));
        let monthly: Micros = inventory.monthly_by_location().values().sum();
        assert_eq!(monthly, images.iter().map(|i| i.monthly_cost).sum::<Micros>());
    }

    #[test]
    fn a_rank_counts_the_newer_members_that_rank_and_is_the_same_from_the_cache() {
        // 12 images of family web: 0..=9 originals, 10 a copy of 3 (in scope, so it follows
        // it), 11 a copy of an image out of scope (it stands on its own); 4 is disabled and 6
        // is deregistered (neither ranks); 9 has the same creation time as 8 (the id decides).
        let mut images: Vec<Image> = (0..12).map(|n| image(n, "web")).collect();
        images[4].state = ImageState::Disabled;
        images[6].state = ImageState::Deregistered;
        images[9].creation_time = images[8].creation_time;
        images[10].source_image_id = Some(images[3].id.clone());
        images[11].source_image_id = Some("ami-0ffffffffffffffff".into());
        images.push(image(12, "db"));
        let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
        let inventory = Inventory::new(images).unwrap();
        let web = Query { tag_key: Some("family".into()), tag_value: Some("web".into()), ..Query::default() };
        // Ranking, newest first: 11, 9, 8, 7, 5, 3, 2, 1, 0.
        let want = [(0, 8), (1, 7), (2, 6), (3, 5), (4, 5), (5, 4), (6, 4), (7, 3), (8, 2), (9, 1), (10, 1), (11, 0)];
        for round in 0..2 {
            for (n, newer) in want {
                let got = inventory.rank(&web, &ids[n]).unwrap();
                assert_eq!(got, Rank { newer, total: 9 }, "image {n}, round {round}");
            }
        }
        // The db image is not in the family but has a place in its ranking; an unknown id has none.
        assert_eq!(inventory.rank(&web, &ids[12]).unwrap().newer, 0);
        assert_eq!(inventory.rank(&web, "ami-0ffffffffffffffff"), None);
        // Deregistering the copy's source (a new inventory) makes the copy rank.
        let mut images: Vec<Image> = inventory.images().to_vec();
        images.iter_mut().find(|i| i.id == ids[3]).unwrap().state = ImageState::Deregistered;
        let inventory = Inventory::new(images).unwrap();
        assert_eq!(inventory.rank(&web, &ids[10]).unwrap(), Rank { newer: 1, total: 9 });
    }

    #[test]
    fn rankings_past_the_cache_bound_are_recomputed_with_the_same_answer() {
        let inventory = Inventory::new((0..10).map(|n| image(n, "web")).collect()).unwrap();
        let id = inventory.images()[2].id.clone();
        // 10 images allow 40 held: four distinct 10-image rankings are kept, the fifth is
        // not, and asking for it again ranks it afresh.
        let queries: Vec<Query> = [None, Some("i"), Some("im"), Some("img"), Some("img-"), Some("img-")]
            .into_iter()
            .map(|prefix| Query { name_prefix: prefix.map(str::to_string), ..Query::default() })
            .collect();
        for query in &queries {
            assert_eq!(inventory.rank(query, &id), Some(Rank { newer: 7, total: 10 }));
        }
        let rankings = inventory.rankings.lock().unwrap();
        assert_eq!((rankings.by_query.len(), rankings.held), (4, 40));
    }
}
