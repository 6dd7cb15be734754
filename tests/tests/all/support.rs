//! Fixtures shared by the end-to-end tests.

use std::sync::Arc;

use amiwarden::inventory::Inventory;
use amiwarden::model::{Architecture, Image, ImageEvent, ImageState, Platform, RootDeviceType, Timestamp, Usage};
use amiwarden::plugin::{Limits, PluginSpec};

/// The evaluation time most tests use.
pub const NOW: Timestamp = Timestamp(1_795_000_000);

/// An available image in 111111111111/us-east-1 with the given id and tags.
pub fn image(id: &str, tags: &[(&str, &str)]) -> Image {
    Image {
        id: id.to_string(),
        account: "111111111111".into(),
        region: "us-east-1".into(),
        name: format!("golden-{id}"),
        description: String::new(),
        creation_time: Timestamp(NOW.0 - 86_400),
        state: ImageState::Available,
        architecture: Architecture::X86_64,
        platform: Platform::Linux,
        root_device_type: RootDeviceType::Ebs,
        public: false,
        launch_permissions: Some(Default::default()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
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

/// A scheduled event about `image`.
pub fn scheduled(image: Image) -> ImageEvent {
    ImageEvent { kind: amiwarden::model::EventKind::Scheduled, image, evaluation_time: NOW, raw: "".into() }
}

/// A plugin spec with the given name, config and limits.
pub fn spec(name: &str, config: serde_json::Value, limits: Limits) -> PluginSpec {
    PluginSpec {
        name: name.to_string(),
        origin: format!("{name}.wasm"),
        sha256: None,
        limits,
        data_dir: None,
        config: config.to_string(),
    }
}

/// An inventory of the given images.
pub fn inventory(images: Vec<Image>) -> Arc<Inventory> {
    Arc::new(Inventory::new(images).expect("unique image ids"))
}

/// A compiled-artifact cache shared by every test in this process.
pub fn cache_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path().to_path_buf()
}
