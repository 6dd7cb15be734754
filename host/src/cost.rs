//! Pricing, in one place: EBS snapshot storage per GiB-month (standard and archive
//! tiers) and inter-region transfer per GiB with the policy's overrides; what an image
//! costs, what an action changes, and the ledger per account and region plugins review.
//!
//! Money is integer micro-dollars (`Micros`). A snapshot is billed on its full size when
//! EC2 reports it (`full_size_bytes`), else on its provisioned size: an upper bound.

use std::collections::BTreeMap;

use crate::config::PricingOverrides;
use crate::inventory::Inventory;
use crate::model::{Action, BlockDevice, Image, Micros, StorageTier};

/// The built-in table, USD: (region, standard $/GiB-month, transfer-out $/GiB).
/// Archive storage is a quarter of standard in every region.
const TABLE: &[(&str, f64, f64)] = &[
    ("us-east-1", 0.05, 0.02),
    ("us-east-2", 0.05, 0.02),
    ("us-west-1", 0.055, 0.02),
    ("us-west-2", 0.05, 0.02),
    ("ca-central-1", 0.055, 0.02),
    ("eu-west-1", 0.05, 0.02),
    ("eu-west-2", 0.053, 0.02),
    ("eu-west-3", 0.053, 0.02),
    ("eu-central-1", 0.054, 0.02),
    ("eu-north-1", 0.0475, 0.02),
    ("ap-southeast-1", 0.05, 0.09),
    ("ap-southeast-2", 0.055, 0.098),
    ("ap-northeast-1", 0.05, 0.09),
    ("ap-south-1", 0.05, 0.086),
    ("sa-east-1", 0.068, 0.138),
];

/// The regions the built-in price table knows.
pub fn known_regions() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(region, _, _)| *region)
}

/// Prices for the regions of one run.
#[derive(Debug, Clone)]
pub struct Pricing {
    standard: BTreeMap<String, f64>,
    archive: BTreeMap<String, f64>,
    transfer: BTreeMap<String, f64>,
}

const DEFAULT_STANDARD: f64 = 0.05;
const DEFAULT_TRANSFER: f64 = 0.02;

/// Dollars as micro-dollars; a float cast saturates, so an absurd size or price gives
/// `Micros::MAX`, never a wrapped or negative figure.
fn micros(usd: f64) -> Micros {
    (usd * 1_000_000.0).round() as Micros
}

/// The sum of `values`, saturating at the bounds of `Micros`.
pub fn total(values: impl Iterator<Item = Micros>) -> Micros {
    values.fold(0, Micros::saturating_add)
}

/// Formats micro-dollars as `$12.34` (or `-$0.40`).
pub fn dollars(m: Micros) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let cents = (m.unsigned_abs() + 5_000) / 10_000;
    format!("{sign}${}.{:02}", cents / 100, cents % 100)
}

impl Pricing {
    /// The built-in table with the policy's overrides applied.
    pub fn new(overrides: &PricingOverrides) -> Pricing {
        let mut p = Pricing { standard: BTreeMap::new(), archive: BTreeMap::new(), transfer: BTreeMap::new() };
        for (region, standard, transfer) in TABLE {
            p.standard.insert(region.to_string(), *standard);
            p.archive.insert(region.to_string(), standard / 4.0);
            p.transfer.insert(region.to_string(), *transfer);
        }
        p.standard.extend(overrides.snapshot_gib_month.clone());
        p.archive.extend(overrides.archive_gib_month.clone());
        p.transfer.extend(overrides.transfer_gib.clone());
        p
    }

    /// Storage price per GiB-month in `region` for `tier`.
    pub fn storage(&self, region: &str, tier: StorageTier) -> f64 {
        let standard = self.standard.get(region).copied().unwrap_or(DEFAULT_STANDARD);
        match tier {
            StorageTier::Standard => standard,
            StorageTier::Archive => self.archive.get(region).copied().unwrap_or(standard / 4.0),
        }
    }

    /// Transfer price per GiB out of `region`.
    pub fn transfer(&self, region: &str) -> f64 {
        self.transfer.get(region).copied().unwrap_or(DEFAULT_TRANSFER)
    }

    /// Monthly storage cost of one snapshot.
    pub fn snapshot_monthly(&self, region: &str, device: &BlockDevice) -> Micros {
        if device.snapshot_id.is_none() {
            return 0;
        }
        micros(billable_gib(device) * self.storage(region, device.storage_tier))
    }

    /// Monthly cost of a copy of these devices in `target` (standard tier).
    pub fn copy_monthly(&self, target: &str, devices: &[BlockDevice]) -> Micros {
        devices
            .iter()
            .filter(|d| d.snapshot_id.is_some())
            .map(|d| micros(billable_gib(d) * self.storage(target, StorageTier::Standard)))
            .fold(0, Micros::saturating_add)
    }

    /// One-time transfer cost of copying these devices out of `source`.
    pub fn copy_transfer(&self, source: &str, devices: &[BlockDevice]) -> Micros {
        devices
            .iter()
            .filter(|d| d.snapshot_id.is_some())
            .map(|d| micros(billable_gib(d) * self.transfer(source)))
            .fold(0, Micros::saturating_add)
    }
}

/// What one action changes in cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionCost {
    /// Change in monthly cost (negative saves).
    pub monthly: Micros,
    /// One-time cost (copy transfer).
    pub one_time: Micros,
    /// The snapshots a deregistration deletes (used by no other image), with the monthly
    /// cost each saves (negative).
    pub snapshots: Vec<(String, Micros)>,
}

impl Pricing {
    /// What `action` on `image` changes in cost: a copy's storage and transfer, the
    /// snapshots a deregistration with its snapshots frees.
    pub fn action_cost(&self, inventory: &Inventory, image: &Image, action: &Action) -> ActionCost {
        let mut cost = ActionCost::default();
        match action {
            Action::CopyToRegion(c) => {
                cost.monthly = self.copy_monthly(&c.region, &image.block_devices);
                cost.one_time = self.copy_transfer(&image.region, &image.block_devices);
            }
            Action::Deregister { delete_snapshots: true } => {
                for dev in &image.block_devices {
                    let Some(snap) = &dev.snapshot_id else { continue };
                    // A snapshot behind two of the image's devices is deleted (and saved) once.
                    let listed = cost.snapshots.iter().any(|(s, _)| s == snap);
                    if !listed && inventory.snapshot_users(snap).all(|user| user == image.id) {
                        let saved = self.snapshot_monthly(&image.region, dev);
                        cost.monthly = cost.monthly.saturating_sub(saved);
                        cost.snapshots.push((snap.clone(), -saved));
                    }
                }
            }
            _ => {}
        }
        cost
    }

    /// Fills each image's monthly cost; a snapshot shared by several images of one
    /// account and region is split evenly between them.
    pub fn price_images(&self, mut images: Vec<Image>) -> Vec<Image> {
        let mut users: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for image in &images {
            for snap in image.snapshot_ids() {
                *users.entry((image.account.clone(), image.region.clone(), snap.to_string())).or_default() += 1;
            }
        }
        for image in &mut images {
            image.monthly_cost = image
                .block_devices
                .iter()
                .map(|d| {
                    let n = d
                        .snapshot_id
                        .as_ref()
                        .and_then(|s| users.get(&(image.account.clone(), image.region.clone(), s.clone())))
                        .copied()
                        .unwrap_or(1)
                        .max(1);
                    self.snapshot_monthly(&image.region, d) / n
                })
                .fold(0, Micros::saturating_add);
        }
        images
    }
}

/// One account and region's monthly cost before and after a plan, and its one-time cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub account: String,
    pub region: String,
    pub monthly_before: Micros,
    pub monthly_after: Micros,
    pub one_time: Micros,
}

/// The ledger per (account, region): today's cost (`monthly`, per location), changed by `changes` of
/// (account, region the cost lands in, monthly delta, one-time cost).
pub fn ledger<'a>(
    monthly: &BTreeMap<crate::model::Location, Micros>,
    changes: impl Iterator<Item = (&'a str, &'a str, Micros, Micros)>,
) -> Vec<LedgerEntry> {
    let mut rows: BTreeMap<(String, String), (Micros, Micros, Micros)> = BTreeMap::new();
    for (location, cost) in monthly {
        let e = rows.entry((location.account.clone(), location.region.clone())).or_default();
        e.0 = e.0.saturating_add(*cost);
        e.1 = e.1.saturating_add(*cost);
    }
    for (account, region, monthly, one_time) in changes {
        let e = rows.entry((account.to_string(), region.to_string())).or_default();
        e.1 = e.1.saturating_add(monthly);
        e.2 = e.2.saturating_add(one_time);
    }
    rows.into_iter()
        .map(|((account, region), (before, after, one_time))| LedgerEntry {
            account,
            region,
            monthly_before: before,
            monthly_after: after,
            one_time,
        })
        .collect()
}

/// GiB billed for a snapshot: its full size if known, else the volume size.
pub fn billable_gib(device: &BlockDevice) -> f64 {
    match device.full_size_bytes {
        Some(bytes) => bytes as f64 / (1u64 << 30) as f64,
        None => f64::from(device.size_gib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(size_gib: u32, tier: StorageTier) -> BlockDevice {
        BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some("snap-1".into()),
            size_gib,
            full_size_bytes: None,
            storage_tier: tier,
            recycle_bin_days: None,
        }
    }

    #[test]
    fn snapshot_prices_follow_region_and_tier() {
        let p = Pricing::new(&PricingOverrides::default());
        assert_eq!(p.snapshot_monthly("us-east-1", &device(8, StorageTier::Standard)), 400_000);
        assert_eq!(p.snapshot_monthly("us-east-1", &device(8, StorageTier::Archive)), 100_000);
        assert_eq!(p.snapshot_monthly("ap-southeast-2", &device(100, StorageTier::Standard)), 5_500_000);
    }

    #[test]
    fn overrides_replace_the_table() {
        let mut o = PricingOverrides::default();
        o.snapshot_gib_month.insert("us-east-1".into(), 0.1);
        let p = Pricing::new(&o);
        assert_eq!(p.snapshot_monthly("us-east-1", &device(10, StorageTier::Standard)), 1_000_000);
    }

    #[test]
    fn absurd_sizes_and_prices_saturate_instead_of_wrapping() {
        let mut o = PricingOverrides::default();
        o.snapshot_gib_month.insert("us-east-1".into(), crate::config::MAX_PRICE);
        o.transfer_gib.insert("us-east-1".into(), crate::config::MAX_PRICE);
        let p = Pricing::new(&o);
        let huge = BlockDevice { full_size_bytes: Some(u64::MAX), ..device(u32::MAX, StorageTier::Standard) };
        let devices = vec![huge.clone(), huge.clone(), huge];
        assert_eq!(p.snapshot_monthly("us-east-1", &devices[0]), Micros::MAX);
        assert_eq!(p.copy_monthly("us-east-1", &devices), Micros::MAX);
        assert_eq!(p.copy_transfer("us-east-1", &devices), Micros::MAX);
        assert_eq!(total([Micros::MAX, Micros::MAX, -1].into_iter()), Micros::MAX - 1);
        assert_eq!(total([Micros::MIN, -5].into_iter()), Micros::MIN);
    }

    #[test]
    fn dollars_are_rounded_to_cents() {
        assert_eq!(dollars(1_234_567), "$1.23");
        assert_eq!(dollars(-400_000), "-$0.40");
        assert_eq!(dollars(0), "$0.00");
    }
}
