//! What the plugin benchmarks share: the synthetic org they evaluate.

use std::collections::BTreeSet;
use std::sync::Arc;

use amiwarden::inventory::Inventory;
use amiwarden::model::{InventoryNeed, Timestamp};

/// The evaluation time of every benchmark: 2026-11-24.
pub const NOW: Timestamp = Timestamp(1_795_478_400);

/// How many images a benchmark's org has: `BENCH_IMAGES`, else 20,000.
pub fn images() -> usize {
    std::env::var("BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// The inventory of a synthetic org of `images` images (two accounts, three regions),
/// read with `needs`.
pub fn inventory(images: usize, needs: &BTreeSet<InventoryNeed>) -> Arc<Inventory> {
    let backend = amiwarden::sim::SimBackend::in_memory(amiwarden::sim::synth::generate(images, NOW, 1), NOW);
    let policy = amiwarden::config::Policy::parse(
        "[scope]\naccounts = [\"111111111111\", \"222222222222\"]\nregions = [\"us-east-1\", \"eu-west-1\", \"ap-southeast-2\"]\n",
    )
    .expect("policy");
    Arc::new(amiwarden::run::collect(&policy, &backend, needs).expect("collect"))
}
