//! The inventory of one run: every image in scope, indexed for the queries plugins make.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::model::{Image, ImageState, Location, Micros};

/// foldhash rather than SipHash: ids are hashed for every lookup of a large plan (SipHash
/// was ~2 % of a 100,000-image plan's CPU); randomly seeded, as std's, and never iterated
/// for output.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

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
    /// Looked up for every proposal, candidate and action: hashed, not compared.
    by_id: HashMap<String, usize>,
    by_location: BTreeMap<Location, Vec<usize>>,
    by_tag_key: BTreeMap<String, Vec<usize>>,
    /// By tag key, then value: the family queries of ranking plugins.
    by_tag: BTreeMap<String, BTreeMap<String, Vec<usize>>>,
    by_source: BTreeMap<String, Vec<usize>>,
    /// The images behind each snapshot, by id (one, nearly always: indices, not a set of
    /// ids, keep it small).
    snapshot_users: HashMap<String, Vec<usize>>,
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
type Ranking = Arc<[usize]>;

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
        let mut inv = Inventory { images, ..Inventory::default() };
        inv.by_id.reserve(inv.images.len());
        for (i, image) in inv.images.iter().enumerate() {
            inv.by_id.insert(image.id.clone(), i);
            inv.by_location.entry(image.location()).or_default().push(i);
            for (key, value) in &image.tags {
                inv.by_tag_key.entry(key.clone()).or_default().push(i);
                inv.by_tag.entry(key.clone()).or_default().entry(value.clone()).or_default().push(i);
            }
            if let Some(source) = &image.source_image_id {
                inv.by_source.entry(source.clone()).or_default().push(i);
            }
            for snap in image.snapshot_ids() {
                let users = inv.snapshot_users.entry(snap.to_string()).or_default();
                if users.last() != Some(&i) {
                    users.push(i);
                }
            }
        }
        for users in inv.snapshot_users.values_mut().filter(|users| users.len() > 1) {
            users.sort_by(|&a, &b| inv.images[a].id.cmp(&inv.images[b].id));
        }
        Ok(inv)
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
                let sum = crate::cost::total(list.iter().map(|&i| self.images[i].monthly_cost));
                by.insert(location.clone(), sum);
            }
            by
        })
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
        self.by_id.get(id).map(|&i| (i, &self.images[i]))
    }

    /// The ids of the images using a snapshot, in id order.
    pub fn snapshot_users(&self, snapshot_id: &str) -> impl Iterator<Item = &str> {
        self.snapshot_users.get(snapshot_id).into_iter().flatten().map(|&i| self.images[i].id.as_str())
    }

    /// Images matching `query`, sorted by region, creation time, then id; an error when
    /// more than `MAX_QUERY_IMAGES` match.
    pub fn query(&self, query: &Query) -> Result<Vec<&Image>, String> {
        self.query_at_most(query, MAX_QUERY_IMAGES)
    }

    /// `query` with its own limit (`MAX_QUERY_SUMMARIES` for summaries).
    pub fn query_at_most(&self, query: &Query, limit: usize) -> Result<Vec<&Image>, String> {
        let mut found = Vec::new();
        for i in self.candidates(query) {
            let image = &self.images[i];
            if matches(query, image) {
                if found.len() == limit {
                    return Err(format!("query matches more than {limit} images; narrow it"));
                }
                found.push(image);
            }
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
        let not_newer = ranking.partition_point(|&i| (self.images[i].creation_time, self.images[i].id.as_str()) <= key);
        Some(Rank { newer: ranking.len() - not_newer, total: ranking.len() })
    }

    fn ranking(&self, query: &Query) -> Ranking {
        let cached =
            self.rankings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).by_query.get(query).cloned();
        if let Some(ranking) = cached {
            return ranking;
        }
        let mut ranking: Vec<usize> = self
            .candidates(query)
            .filter(|&i| {
                let image = &self.images[i];
                image.state == ImageState::Available
                    && matches(query, image)
                    && image
                        .source_image_id
                        .as_deref()
                        .and_then(|s| self.get(s))
                        .is_none_or(|s| s.state == ImageState::Deregistered)
            })
            .collect();
        ranking.sort_by(|&a, &b| {
            let (a, b) = (&self.images[a], &self.images[b]);
            (a.creation_time, &a.id).cmp(&(b.creation_time, &b.id))
        });
        let ranking: Ranking = ranking.into();
        let mut rankings = self.rankings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if rankings.held + ranking.len() <= 4 * self.images.len() && !rankings.by_query.contains_key(query) {
            rankings.held += ranking.len();
            rankings.by_query.insert(query.clone(), Arc::clone(&ranking));
        }
        ranking
    }

    /// The narrowest index `query` can use (source image, location, tag key and value, tag
    /// key), as the positions of its images, kept to the account and region it names;
    /// `None` when it can use none and looks at every image.
    fn index(&self, query: &Query) -> Option<&[usize]> {
        fn found(list: Option<&Vec<usize>>) -> &[usize] {
            list.map_or(&[], Vec::as_slice)
        }
        // Every query a plugin makes goes through here: no allocation.
        let by_source = query.source_image_id.as_ref().map(|source| found(self.by_source.get(source)));
        let by_location = match (&query.account, &query.region) {
            (Some(account), Some(region)) => {
                Some(found(self.by_location.get(&Location { account: account.clone(), region: region.clone() })))
            }
            _ => None,
        };
        let by_tag = query.tag_key.as_ref().map(|key| match &query.tag_value {
            Some(value) => found(self.by_tag.get(key).and_then(|values| values.get(value))),
            None => found(self.by_tag_key.get(key)),
        });
        [by_source.map(|l| self.within(l, query)), by_location, by_tag.map(|l| self.within(l, query))]
            .into_iter()
            .flatten()
            .min_by_key(|list| list.len())
    }

    /// The run of `list` in the account and region `query` names, found by halving: an
    /// index lists positions in ascending order, and the images are in (account, region)
    /// order, so a family's images in one location sit together in the family's list.
    fn within<'a>(&self, list: &'a [usize], query: &Query) -> &'a [usize] {
        let Some(account) = query.account.as_deref() else { return list };
        let region = query.region.as_deref();
        let place = |&i: &usize| {
            let image = &self.images[i];
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
        for (account, region) in [(None, None), (Some("111111111111"), None), (Some("222222222222"), Some("us-east-1"))]
        {
            for (tag_value, source) in
                [(Some("f3"), None), (None, None), (None, Some("ami-0source")), (Some("f3"), Some("ami-0source"))]
            {
                let query = Query {
                    account: account.map(str::to_string),
                    region: region.map(str::to_string),
                    tag_key: Some("family".into()),
                    tag_value: tag_value.map(str::to_string),
                    source_image_id: source.map(str::to_string),
                    ..Query::default()
                };
                let scanned: BTreeSet<&str> =
                    inventory.images().iter().filter(|i| super::matches(&query, i)).map(|i| i.id.as_str()).collect();
                let found = inventory.query_at_most(&query, MAX_QUERY_SUMMARIES).unwrap();
                assert_eq!(found.iter().map(|i| i.id.as_str()).collect::<BTreeSet<_>>(), scanned, "{query:?}");
                let every_match_is_looked_at = inventory.scan_size(&query) >= scanned.len();
                assert!(every_match_is_looked_at, "{query:?}");
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
