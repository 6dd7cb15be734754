//! Synthetic inventories for benchmarks and trying amiwarden at scale: a deterministic
//! org of `n` images in families across two accounts and three regions, with
//! snapshots, replicas, instances, launch templates and shares.

use std::collections::{BTreeMap, BTreeSet};

use super::{SimAccount, SimBlockDevice, SimImage, SimInstance, SimLaunchTemplate, SimRegion, SimSnapshot, SimState};
use crate::model::{Principal, Timestamp};

/// The accounts of a synthetic org.
pub const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
/// The regions of a synthetic org.
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
const FAMILIES: [&str; 8] = ["web", "batch", "api", "worker", "base-linux", "base-windows", "ml", "edge"];

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` images ending at `now`, the same for the same `n`, `now` and `seed`.
pub fn generate(n: usize, now: Timestamp, seed: u64) -> SimState {
    let mut rng = Rng(seed);
    let mut accounts: BTreeMap<String, SimAccount> = BTreeMap::new();
    let shares = [
        Principal::Account("222222222222".into()),
        Principal::Account("999999999999".into()),
        Principal::Public,
        Principal::OrganizationalUnit("arn:aws:organizations::111111111111:ou/o-abc123/ou-ab12-cdef3456".into()),
    ];
    for i in 0..n {
        let account = ACCOUNTS[i % ACCOUNTS.len()];
        let region = REGIONS[(i / ACCOUNTS.len()) % REGIONS.len()];
        let family = FAMILIES[rng.below(FAMILIES.len() as u64) as usize];
        let age_days = rng.below(720) as i64;
        let created = Timestamp(now.0 - age_days * 86_400 - rng.below(86_400) as i64);
        let id = format!("ami-{:017x}", (i as u64) | (1 << 60));
        let snap = format!("snap-{:017x}", (i as u64) | (1 << 60));
        let size = [8, 8, 16, 30, 50, 100][rng.below(6) as usize];
        let reg: &mut SimRegion = accounts.entry(account.into()).or_default().regions.entry(region.into()).or_default();
        reg.snapshots.push(SimSnapshot {
            id: snap.clone(),
            size_gib: size,
            full_size_bytes: Some(u64::from(size) * (1 << 30) / (1 + rng.below(3))),
            storage_tier: Default::default(),
            encrypted: rng.below(2) == 0,
            kms_key_id: None,
            tags: Default::default(),
        });
        let mut launch_permissions = BTreeSet::new();
        if rng.below(10) == 0 {
            launch_permissions.insert(shares[rng.below(shares.len() as u64) as usize].clone());
        }
        let mut tags = crate::model::Tags::from([("family".to_string(), family.to_string())]);
        if rng.below(50) == 0 {
            tags.insert("keep".into(), "true".into());
        }
        if rng.below(4) == 0 {
            tags.insert("share-with".into(), "prod".into());
        }
        reg.images.push(SimImage {
            id: id.clone(),
            name: format!("golden-{family}-{}", created.to_string().get(..10).unwrap_or_default()),
            description: String::new(),
            creation_time: created,
            state: crate::model::ImageState::Available,
            architecture: crate::model::Architecture::X86_64,
            platform: if family == "base-windows" { crate::model::Platform::Windows } else { Default::default() },
            root_device_type: Default::default(),
            launch_permissions,
            tags,
            block_devices: vec![SimBlockDevice {
                device_name: "/dev/xvda".into(),
                snapshot_id: Some(snap),
                size_gib: size,
            }],
            deprecation_time: None,
            source_image_id: None,
            source_region: None,
            last_launched_time: (rng.below(5) == 0).then(|| Timestamp(now.0 - rng.below(90) as i64 * 86_400)),
            deregistration_protection: None,
        });
        if rng.below(20) == 0 {
            reg.instances.push(SimInstance {
                id: format!("i-{:017x}", i),
                image_id: id.clone(),
                state: "running".into(),
            });
        }
        if rng.below(100) == 0 {
            reg.launch_templates.push(SimLaunchTemplate {
                id: format!("lt-{:017x}", i),
                name: format!("{family}-{i}"),
                image_ids: vec![id],
            });
        }
    }
    SimState { version: super::state::STATE_VERSION, accounts, log_seq: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_org() {
        let now = Timestamp(1_795_000_000);
        assert_eq!(generate(500, now, 7), generate(500, now, 7));
        let text = serde_json::to_string(&generate(300, now, 7)).unwrap();
        let parsed = SimState::parse(&text, "synthetic").unwrap();
        let images: usize = parsed.accounts.values().flat_map(|a| a.regions.values()).map(|r| r.images.len()).sum();
        assert_eq!(images, 300);
    }
}
