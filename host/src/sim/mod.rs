//! The embedded simulated EC2: a JSON state file behind the same seam as AWS.
//!
//! It follows EC2's semantics where the engine can observe them (`ops`), reads through
//! per-region indices (`view`), and makes an apply's changes durable through an
//! append-only log (`log`).

mod log;
mod ops;
mod state;
pub mod synth;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use state::{
    Binned, SimAccount, SimBlockDevice, SimImage, SimInstance, SimLaunchTemplate, SimRecycleBin, SimRegion,
    SimSnapshot, SimState,
};

use crate::backend::{ActionOutcome, Backend, Restore, SOURCE_IMAGE_TAG, SOURCE_REGION_TAG};
use crate::config::Scope;
use crate::model::{Image, InventoryNeed, Location, Timestamp};
use crate::plan::{Op, PlannedAction};
use view::{RegionIndex, to_image};

/// The simulated EC2.
pub struct SimBackend {
    path: Option<PathBuf>,
    state: Mutex<SimState>,
    /// Changes executed but not yet in the apply log, in the order they were made (pushed
    /// with the state locked; `commit` writes them).
    unlogged: Mutex<Vec<log::Entry>>,
    /// The apply log of the state file (none for a state held in memory).
    log: Option<Mutex<log::Writer>>,
    now: Timestamp,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Images an apply works on at once (the calls still queue on the state's lock).
    concurrency: usize,
    /// EC2's pace, when modelled: a latency per call and EC2's token buckets.
    pace: Option<Pace>,
    /// Whether `restore` changed the state (written whole by `finish`).
    restored: std::sync::atomic::AtomicBool,
    /// A plan's backend: the state is dropped once the inventory is taken from it.
    read_once: bool,
    /// Whether a read-once state was dropped (every later read or call then fails).
    drained: std::sync::atomic::AtomicBool,
}

/// A model of EC2's pace: every call waits for a token of its EC2 bucket, then takes
/// `latency`, outside the state's lock (so calls overlap as they do on EC2).
struct Pace {
    latency: Duration,
    buckets: crate::pacing::Pacer,
}

impl SimBackend {
    /// Opens a state file; `now` stamps the creation time of copies.
    pub fn open(path: &Path, now: Timestamp) -> anyhow::Result<SimBackend> {
        let (state, size) = SimState::load_measured(path)?;
        Ok(SimBackend {
            path: Some(path.to_path_buf()),
            state: Mutex::new(state),
            unlogged: Mutex::default(),
            log: Some(Mutex::new(log::Writer::new(path, size))),
            now,
            calls: Mutex::default(),
            concurrency: 1,
            pace: None,
            restored: Default::default(),
            read_once: false,
            drained: Default::default(),
        })
    }

    /// A backend over a state held in memory only.
    pub fn in_memory(state: SimState, now: Timestamp) -> SimBackend {
        SimBackend {
            path: None,
            state: Mutex::new(state),
            unlogged: Mutex::default(),
            log: None,
            now,
            calls: Mutex::default(),
            concurrency: 1,
            pace: None,
            restored: Default::default(),
            read_once: false,
            drained: Default::default(),
        }
    }

    /// For a command that only plans: the state is dropped as soon as the inventory is
    /// collected (the inventory holds what the plan reads; keeping the state too would
    /// hold EC2 twice), and any later read or call fails instead of seeing an empty EC2.
    /// Nothing is ever written back.
    pub fn read_once(mut self) -> SimBackend {
        self.read_once = true;
        self.log = None;
        self
    }

    /// Fails once a read-once state was dropped.
    fn live(&self) -> anyhow::Result<()> {
        if self.drained.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("{}: the state was read once for a plan and dropped; nothing may read it again", self.name());
        }
        Ok(())
    }

    /// Models EC2's pace: each call takes `latency` and draws from EC2's token buckets
    /// (the same buckets the AWS backend paces itself by), for benchmarks of an apply's
    /// wall time against the bound the buckets set.
    pub fn with_ec2_pace(mut self, latency: Duration) -> SimBackend {
        let clock = std::sync::Arc::new(crate::pacing::SystemClock::default());
        self.pace = Some(Pace { latency, buckets: crate::pacing::Pacer::new(clock) });
        self
    }

    /// Works on up to `n` images at once in an apply (as `--concurrency` does on AWS).
    pub fn with_concurrency(mut self, n: usize) -> SimBackend {
        self.concurrency = n.max(1);
        self
    }

    /// A copy of the current state.
    pub fn state(&self) -> SimState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one call in `location` and, when EC2's pace is modelled, waits as EC2 would
    /// make it wait. Never called with the state locked.
    fn call(&self, call: &str, location: &Location) {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(call.to_string()).or_default() += 1;
        if let Some(pace) = &self.pace {
            pace.buckets.wait(location, call);
            std::thread::sleep(pace.latency);
        }
    }
}

impl Backend for SimBackend {
    fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("sim:{}", p.display()),
            None => "sim:(memory)".into(),
        }
    }

    fn identity(&self) -> String {
        match &self.path {
            Some(p) => format!("sim:{}", std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display()),
            None => "sim:(memory)".into(),
        }
    }

    fn state_file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn collect(&self, scope: &Scope, needs: &BTreeSet<InventoryNeed>) -> anyhow::Result<Vec<Image>> {
        self.live()?;
        let locations: Vec<Location> = {
            let state = self.lock();
            let in_scope = state.accounts.iter().filter(|(a, _)| scope.accounts.contains(*a));
            in_scope
                .flat_map(|(account, acc)| {
                    acc.regions
                        .keys()
                        .filter(|r| scope.regions.contains(*r))
                        .map(|region| Location { account: account.clone(), region: region.clone() })
                })
                .collect()
        };
        for location in &locations {
            self.call("DescribeImages", location);
        }
        let mut state = self.lock();
        let stored = |l: &Location| state.accounts.get(&l.account).and_then(|a| a.regions.get(&l.region));
        // Sized once: grown by doubling, the largest inventories' vectors were a quarter slack.
        let mut images = Vec::with_capacity(locations.iter().filter_map(stored).map(|r| r.images.len()).sum());
        for Location { account, region } in &locations {
            let Some(r) = state.accounts.get_mut(account).and_then(|a| a.regions.get_mut(region)) else { continue };
            tracing::info!("inventory of {account}/{region}: {} image(s)", r.images.len());
            if self.read_once {
                // Taken region by region: the images' text moves into the inventory, and
                // what only the index needed is freed before the next region is read.
                let mut taken = std::mem::take(r);
                let owned = std::mem::take(&mut taken.images);
                let index = RegionIndex::new(&taken);
                images.extend(owned.into_iter().map(|image| to_image(account, region, &index, image, needs)));
            } else {
                let index = RegionIndex::new(r);
                images.extend(r.images.iter().map(|image| to_image(account, region, &index, image.clone(), needs)));
            }
        }
        drop(state);
        if self.read_once {
            self.drained.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(std::mem::take(&mut *self.lock()));
        }
        Ok(images)
    }

    fn refresh_many(
        &self,
        location: &Location,
        image_ids: &[String],
        permissions: bool,
    ) -> anyhow::Result<Vec<(String, Option<Image>)>> {
        self.live()?;
        self.call("DescribeImages", location);
        // A re-read before a destructive call always has usage, as on EC2.
        let mut needs: BTreeSet<InventoryNeed> = [InventoryNeed::Usage, InventoryNeed::Snapshots].into();
        if permissions {
            needs.insert(InventoryNeed::LaunchPermissions);
        }
        let state = self.lock();
        let region = state.accounts.get(&location.account).and_then(|a| a.regions.get(&location.region));
        let index = region.map(RegionIndex::new);
        Ok(image_ids
            .iter()
            .map(|id| {
                let found = index.as_ref().and_then(|index| {
                    let image = index.images.get(id.as_str())?;
                    Some(to_image(&location.account, &location.region, index, (*image).clone(), &needs))
                });
                (id.clone(), found)
            })
            .collect())
    }

    fn snapshot_users(
        &self,
        location: &Location,
        snapshot_ids: &[String],
    ) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        self.live()?;
        self.call("DescribeImages", location);
        let state = self.lock();
        let region = state.accounts.get(&location.account).and_then(|a| a.regions.get(&location.region));
        let wanted: BTreeSet<&str> = snapshot_ids.iter().map(String::as_str).collect();
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for image in region.iter().flat_map(|r| &r.images) {
            for snapshot in image.block_devices.iter().filter_map(|d| d.snapshot_id.as_deref()) {
                if !wanted.contains(snapshot) {
                    continue;
                }
                let entry = users.entry(snapshot.to_string()).or_default();
                if !entry.contains(&image.id) {
                    entry.push(image.id.clone());
                }
            }
        }
        Ok(users)
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn execute(&self, action: &PlannedAction) -> ActionOutcome {
        if let Err(e) = self.live() {
            return ActionOutcome::Failed { error: format!("{e:#}") };
        }
        let call = match &action.op {
            Op::Tag { .. } => "CreateTags",
            Op::Untag { .. } => "DeleteTags",
            Op::Share { .. } | Op::Unshare { .. } => "ModifyImageAttribute",
            Op::Copy { .. } => "CopyImage",
            Op::Deprecate { .. } => "EnableImageDeprecation",
            Op::Disable => "DisableImage",
            Op::Deregister => "DeregisterImage",
            Op::DeleteSnapshot { .. } => "DeleteSnapshot",
        };
        // CopyImage is called in (and throttled by) the destination region.
        let region = match &action.op {
            Op::Copy { request } => request.region.clone(),
            _ => action.location.region.clone(),
        };
        self.call(call, &Location { account: action.location.account.clone(), region });
        let mut state = self.lock();
        let outcome = ops::execute(&mut state, action, self.now);
        if self.log.is_some() && log::changed(&outcome) {
            state.log_seq += 1;
            let entry = log::Entry { seq: state.log_seq, now: self.now, action: action.clone() };
            self.unlogged.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
        }
        outcome
    }

    fn restore(&self, location: &Location, what: &Restore) -> ActionOutcome {
        let call = match what {
            Restore::Snapshot { .. } => "RestoreSnapshotFromRecycleBin",
            Restore::Image { .. } => "RestoreImageFromRecycleBin",
            Restore::Enable { .. } => "EnableImage",
        };
        if let Err(e) = self.live() {
            return ActionOutcome::Failed { error: format!("{e:#}") };
        }
        self.call(call, location);
        let mut state = self.lock();
        let Some(region) = state.accounts.get_mut(&location.account).and_then(|a| a.regions.get_mut(&location.region))
        else {
            return ActionOutcome::Failed { error: format!("no such account/region {location}") };
        };
        let outcome = ops::restore(region, what, self.now);
        if log::changed(&outcome) {
            self.restored.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        outcome
    }

    fn reload(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.path {
            *self.lock() = SimState::load(path)?;
            self.drained.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Appends the changes made since the last commit to the apply log; writes the state
    /// whole once the log is as large as the state file (so each byte of state is written
    /// once per as many bytes of log: linear in the actions).
    fn commit(&self) -> anyhow::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let entries = std::mem::take(&mut *self.unlogged.lock().unwrap_or_else(|p| p.into_inner()));
        log.append(&entries)?;
        if log.due() {
            log.fold(&self.lock())?;
        }
        Ok(())
    }

    /// Writes the state whole and removes its apply log, when there is one (or when
    /// `restore` changed the state).
    fn finish(&self) -> anyhow::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        self.commit()?;
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.pending() || self.restored.swap(false, std::sync::atomic::Ordering::SeqCst) {
            log.fold(&self.lock())?;
        }
        Ok(())
    }

    fn call_counts(&self) -> Vec<(String, u64)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_once_state_is_dropped_after_the_inventory_and_cannot_be_read_or_changed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let now = Timestamp(1_795_478_400);
        synth::generate(50, now, 1).save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let policy = crate::config::Policy::parse(
            "[scope]\naccounts = [\"111111111111\", \"222222222222\"]\nregions = [\"us-east-1\", \"eu-west-1\", \"ap-southeast-2\"]\n[[plugin]]\nname = \"r\"\nsource = \"builtin:retention\"\n",
        )
        .unwrap();
        let backend = SimBackend::open(&path, now).unwrap().read_once();
        let images = backend.collect(&policy.scope, &BTreeSet::new()).unwrap();
        assert_eq!(images.len(), 50);
        assert!(backend.lock().accounts.is_empty(), "the state is dropped");
        let again = backend.collect(&policy.scope, &BTreeSet::new()).unwrap_err().to_string();
        assert!(again.contains("read once for a plan"), "{again}");
        let location = Location { account: images[0].account.clone(), region: images[0].region.clone() };
        assert!(backend.refresh_many(&location, &[images[0].id.clone()], false).is_err());
        let action = crate::plan::PlannedAction {
            id: "act-1".into(),
            location: location.clone().into(),
            image_id: images[0].id.clone(),
            image_name: String::new(),
            op: Op::Disable,
            plugins: Default::default(),
            reasons: Default::default(),
            monthly_cost_delta: 0,
            one_time_cost: 0,
        };
        assert!(matches!(backend.execute(&action), ActionOutcome::Failed { .. }));
        backend.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing is written back");
    }
}
