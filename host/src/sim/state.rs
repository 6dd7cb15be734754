//! The simulated EC2's state file: accounts → regions → images, snapshots, instances and
//! launch templates, as documented in examples/sim/README.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::recycle::RetentionRule;
use crate::model::{Architecture, ImageState, Platform, Principal, RootDeviceType, StorageTier, Tags, Timestamp};

/// The version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The whole simulated EC2.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimState {
    pub version: u32,
    pub accounts: BTreeMap<String, SimAccount>,
    /// The last entry of the apply log (`STATE.log`) this file already contains: entries
    /// up to it are skipped when the log is replayed (see `sim::log`). Absent: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAccount {
    pub regions: BTreeMap<String, SimRegion>,
}

/// One region of one account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimRegion {
    pub images: Vec<SimImage>,
    pub snapshots: Vec<SimSnapshot>,
    pub instances: Vec<SimInstance>,
    pub launch_templates: Vec<SimLaunchTemplate>,
    /// EC2's image block public access setting: when true, images cannot be made public.
    pub block_public_access: bool,
    /// The region's Recycle Bin retention rules: a deregistered image or deleted snapshot
    /// one of them covers goes to `recycle_bin` instead of away.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recycle_bin_rules: Vec<RetentionRule>,
    /// What the Recycle Bin holds.
    #[serde(skip_serializing_if = "SimRecycleBin::is_empty")]
    pub recycle_bin: SimRecycleBin,
}

/// The deregistered images and deleted snapshots a retention rule keeps, restorable
/// until their time runs out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimRecycleBin {
    pub images: Vec<Binned<SimImage>>,
    pub snapshots: Vec<Binned<SimSnapshot>>,
}

impl SimRecycleBin {
    fn is_empty(&self) -> bool {
        self.images.is_empty() && self.snapshots.is_empty()
    }
}

/// Something in the Recycle Bin: what it was, when it was deleted, and until when it can
/// be restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binned<T> {
    pub resource: T,
    pub deleted: Timestamp,
    pub until: Timestamp,
}

fn available() -> ImageState {
    ImageState::Available
}

fn x86_64() -> Architecture {
    Architecture::X86_64
}

/// One registered image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimImage {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub creation_time: Timestamp,
    #[serde(default = "available")]
    pub state: ImageState,
    #[serde(default = "x86_64")]
    pub architecture: Architecture,
    #[serde(default)]
    pub platform: Platform,
    #[serde(default)]
    pub root_device_type: RootDeviceType,
    #[serde(default)]
    pub launch_permissions: BTreeSet<Principal>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub block_devices: Vec<SimBlockDevice>,
    #[serde(default)]
    pub deprecation_time: Option<Timestamp>,
    #[serde(default)]
    pub source_image_id: Option<String>,
    #[serde(default)]
    pub source_region: Option<String>,
    #[serde(default)]
    pub last_launched_time: Option<Timestamp>,
    /// EC2's deregistration protection: absent or `disabled` when off, else how it is on
    /// (`enabled-without-cooldown`, `enabled-with-cooldown`). DeregisterImage fails on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_protection: Option<String>,
}

/// A block device mapping of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBlockDevice {
    pub device_name: String,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    pub size_gib: u32,
}

/// An EBS snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSnapshot {
    pub id: String,
    pub size_gib: u32,
    #[serde(default)]
    pub full_size_bytes: Option<u64>,
    #[serde(default)]
    pub storage_tier: StorageTier,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

fn running() -> String {
    "running".into()
}

/// An instance (it keeps its image in use while not terminated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimInstance {
    pub id: String,
    pub image_id: String,
    #[serde(default = "running")]
    pub state: String,
}

/// A launch template with the image ids its versions reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimLaunchTemplate {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub image_ids: Vec<String>,
}

/// State files larger than this are parsed as they are read rather than read whole
/// first: ~40 % slower to parse (serde_json reading through `io::Read`), but the text is
/// never held beside the state it parses into, which at 1,000,000 images (1.2 GB of
/// text) was half of a plan's memory at that point (BENCHMARKS §14). Smaller files, up to
/// ~200,000 images, keep the faster parse.
const STREAMED_ABOVE: u64 = 256 << 20;

impl SimState {
    /// Parses state text, checking ids and references; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<SimState> {
        SimState::checked(serde_json::from_str(text), origin)
    }

    fn checked(parsed: serde_json::Result<SimState>, origin: &str) -> anyhow::Result<SimState> {
        let state = parsed.map_err(|e| anyhow::anyhow!("sim state {origin}: {e}"))?;
        state.check().with_context(|| format!("sim state {origin}"))?;
        Ok(state)
    }

    /// Reads a state file with the changes its apply log holds (`sim::log::replay`).
    pub fn load(path: &Path) -> anyhow::Result<SimState> {
        Ok(SimState::load_measured(path)?.0)
    }

    /// `load`, and the size of the state file in bytes.
    pub(super) fn load_measured(path: &Path) -> anyhow::Result<(SimState, u64)> {
        SimState::load_streaming_above(path, STREAMED_ABOVE)
    }

    /// `load_measured`, parsing a file larger than `threshold` bytes as it is read.
    fn load_streaming_above(path: &Path, threshold: u64) -> anyhow::Result<(SimState, u64)> {
        let origin = path.display().to_string();
        let (file, len) = crate::files::open_input(path, crate::files::Input::SimState)?;
        let mut state = if len > threshold {
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            SimState::checked(serde_json::from_reader(reader), &origin)?
        } else {
            drop(file);
            SimState::parse(&crate::files::read_text(path, crate::files::Input::SimState)?, &origin)?
        };
        if super::log::replay(&mut state, path)? {
            state.check().with_context(|| format!("sim state {} after its apply log", path.display()))?;
        }
        Ok((state, len))
    }

    /// Writes the state atomically and durably (`files::write_atomically`), then removes
    /// its apply log, whose changes the file now holds; returns the file's size.
    pub fn save(&self, path: &Path) -> anyhow::Result<u64> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::files::write_atomically(path, text.as_bytes())?;
        super::log::remove(path)?;
        Ok(text.len() as u64)
    }

    fn image_count(&self) -> usize {
        self.accounts
            .values()
            .flat_map(|a| a.regions.values())
            .map(|r| r.images.len() + r.recycle_bin.images.len())
            .sum()
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.version != STATE_VERSION {
            anyhow::bail!("field `version` is {}, but this amiwarden reads version {STATE_VERSION}", self.version);
        }
        // EC2's image ids are unique across accounts and regions, and the host names an
        // image by its id alone in proposals: the same id twice is refused.
        // Where each id was seen, spelled out only for an error (not per image).
        let mut seen: HashMap<&str, (&str, &str, &str)> = HashMap::with_capacity(self.image_count());
        let place = |(account, region, list): (&str, &str, &str)| format!("accounts.{account}.regions.{region}.{list}");
        for (account, acc) in &self.accounts {
            if !crate::model::is_account_id(account) {
                anyhow::bail!("accounts: `{account}` is not a 12-digit account id");
            }
            for (region, reg) in &acc.regions {
                if !crate::model::is_region_name(region) {
                    anyhow::bail!("accounts.{account}.regions: `{region}` is not a region name");
                }
                let binned = reg.recycle_bin.images.iter().map(|b| (&b.resource, "recycle_bin.images"));
                for (image, list) in reg.images.iter().map(|i| (i, "images")).chain(binned) {
                    let here = (account.as_str(), region.as_str(), list);
                    if !crate::model::is_image_id(&image.id) {
                        anyhow::bail!("{}: `{}` is not an AMI id", place(here), image.id);
                    }
                    if let Some(first) = seen.insert(&image.id, here) {
                        anyhow::bail!(
                            "{}: `{}` appears twice (also in {}); image ids are unique",
                            place(here),
                            image.id,
                            place(first)
                        );
                    }
                }
                let snaps: BTreeSet<&str> = reg.snapshots.iter().map(|s| s.id.as_str()).collect();
                for image in &reg.images {
                    for dev in &image.block_devices {
                        if let Some(snap) = &dev.snapshot_id
                            && !snaps.contains(snap.as_str())
                        {
                            anyhow::bail!(
                                "accounts.{account}.regions.{region}: image {} uses snapshot {snap}, which is not in `snapshots`",
                                image.id
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_as_a_sim_state_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = super::SimState::parse(&String::from_utf8_lossy(&bytes), "fuzz.json");
        }

        #[test]
        fn mangled_real_states_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
            let mut text = serde_json::to_string(&crate::sim::synth::generate(5, crate::model::Timestamp(1_795_000_000), 3)).unwrap().into_bytes();
            let at = cut % text.len();
            text[at] = byte;
            let _ = super::SimState::parse(&String::from_utf8_lossy(&text), "fuzz.json");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SimState;

    #[test]
    fn a_state_parsed_as_it_is_read_is_the_state_read_whole_and_its_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = crate::sim::synth::generate(400, crate::model::Timestamp(1_795_000_000), 5);
        std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let whole = SimState::load_streaming_above(&path, u64::MAX).unwrap();
        let streamed = SimState::load_streaming_above(&path, 0).unwrap();
        assert_eq!(whole, (state, size));
        assert_eq!(streamed, whole);
        // Bad text and a bad state are refused the same way on both paths.
        let image = r#"{"id": "ami-0aaaaaaaaaaaaaaa1", "name": "x", "creation_time": "2026-01-01T00:00:00Z"}"#;
        let twice = format!(
            r#"{{"version": 1, "accounts": {{"111111111111": {{"regions": {{"us-east-1": {{"images": [{image}, {image}]}}}}}}}}}}"#
        );
        for (text, want) in
            [(&twice[..], "ami-0aaaaaaaaaaaaaaa1"), (&twice[..40], "EOF"), ("{\"version\": 1, \"x\": 2}", "`x`")]
        {
            std::fs::write(&path, text).unwrap();
            for threshold in [0, u64::MAX] {
                let err = format!("{:#}", SimState::load_streaming_above(&path, threshold).unwrap_err());
                assert!(err.contains(&*path.display().to_string()) && err.contains(want), "{threshold}: {err}");
            }
        }
    }

    #[test]
    fn the_same_image_id_in_two_accounts_is_refused_naming_both_places() {
        let image = r#"{"id": "ami-0aaaaaaaaaaaaaaa1", "name": "x", "creation_time": "2026-01-01T00:00:00Z"}"#;
        let text = format!(
            r#"{{"version": 1, "accounts": {{
                "111111111111": {{"regions": {{"us-east-1": {{"images": [{image}]}}}}}},
                "222222222222": {{"regions": {{"us-east-1": {{"images": [{image}]}}}}}}}}}}"#
        );
        let err = format!("{:#}", super::SimState::parse(&text, "state.json").unwrap_err());
        assert!(err.contains("state.json"), "{err}");
        assert!(err.contains("accounts.111111111111.regions.us-east-1.images"), "{err}");
        assert!(err.contains("accounts.222222222222.regions.us-east-1.images"), "{err}");
    }
}
