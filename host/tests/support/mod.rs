//! A moto server per test, on a free 127.0.0.1 port, and SDK clients for it.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use std::collections::BTreeMap;

use aws_sdk_ec2::types::ImageAttributeName;
use serde_json::{Value, json};

/// A moto server of our own, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server ({e}): install it with pip install 'moto[server]'"));
        let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start ({status}): install it with pip install 'moto[server]'");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain SDK client for seeding and checking, outside the backend under test.
#[allow(dead_code, reason = "not every test binary seeds EC2")]
pub fn sdk(moto: &Moto, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(&moto.url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

/// An image's launch permissions as EC2 reports them: account ids, and `public` for
/// `Group=all`; sorted.
#[allow(dead_code, reason = "not every test binary reads launch permissions")]
pub async fn launch_permissions(ec2: &aws_sdk_ec2::Client, image: &str) -> Vec<String> {
    let out = ec2
        .describe_image_attribute()
        .image_id(image)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .expect("DescribeImageAttribute");
    let mut list: Vec<String> = out
        .launch_permissions()
        .iter()
        .map(|p| p.user_id().map(str::to_string).unwrap_or_else(|| "public".into()))
        .collect();
    list.sort();
    list
}

/// The sim state mirroring what moto holds now.
#[allow(dead_code, reason = "not every test binary mirrors moto into a sim state")]
#[allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]
pub async fn mirror(ec2_east: &aws_sdk_ec2::Client, account: &str, east: &str, west: &str) -> Value {
    let images = ec2_east.describe_images().owners("self").send().await.unwrap().images().to_vec();
    let instances = ec2_east.describe_instances().send().await.unwrap();
    let mut sim_images = Vec::new();
    let mut snapshots = Vec::new();
    for image in &images {
        let id = image.image_id().unwrap();
        let tags: BTreeMap<&str, &str> =
            image.tags().iter().map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))).collect();
        let mut devices = Vec::new();
        for m in image.block_device_mappings() {
            let ebs = m.ebs().unwrap();
            let snap = ebs.snapshot_id().unwrap();
            let size = ec2_east.describe_snapshots().snapshot_ids(snap).send().await.unwrap().snapshots()[0]
                .volume_size()
                .unwrap_or(0);
            devices.push(json!({"device_name": m.device_name().unwrap(), "snapshot_id": snap, "size_gib": size}));
            snapshots.push(json!({"id": snap, "size_gib": size}));
        }
        sim_images.push(json!({
            "id": id,
            "name": image.name().unwrap(),
            "creation_time": image.creation_date().unwrap(),
            "launch_permissions": launch_permissions(ec2_east, id).await,
            "tags": tags,
            "block_devices": devices,
        }));
    }
    let sim_instances: Vec<Value> = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| json!({"id": i.instance_id().unwrap(), "image_id": i.image_id().unwrap(), "state": "running"}))
        .collect();
    json!({"version": 1, "accounts": {account: {"regions": {
        east: {"images": sim_images, "snapshots": snapshots, "instances": sim_instances},
        west: {}
    }}}})
}

/// The test credentials (no AWS config files, no instance metadata), as (key, value).
pub const TEST_CREDENTIALS: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/amiwarden-test"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/amiwarden-test"),
];

/// The amiwarden binary run in `dir` with the test credentials and compiled plugins
/// cached under `cache`, for tests that drive `--aws` against moto.
#[allow(dead_code, reason = "not every test binary runs the CLI against moto")]
pub fn aws_cli(dir: &std::path::Path, cache: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amiwarden"));
    command.current_dir(dir).args(["--cache-dir", cache]).envs(TEST_CREDENTIALS);
    command
}

/// Static test credentials for the standard chain, set before any other thread exists:
/// the backend takes its credentials from the chain, as it does in production.
#[allow(dead_code, reason = "not every test binary builds an AWS backend in process")]
pub fn use_test_credentials() {
    #[expect(unsafe_code, reason = "set_var is unsafe in edition 2024; no other thread runs yet")]
    unsafe {
        for (key, value) in TEST_CREDENTIALS {
            std::env::set_var(key, value);
        }
    }
}

/// The id of the `i`-th image of `tagged_org`.
#[allow(dead_code, reason = "not every test binary uses a sim org")]
pub fn org_image_id(i: usize) -> String {
    format!("ami-{:017x}", i + 1)
}

/// A sim state of `n` images in `account`/us-east-1, each asking by tag to be shared
/// with the group `prod` (`share-with=prod`), none shared yet.
#[allow(dead_code, reason = "not every test binary uses a sim org")]
pub fn tagged_org(account: &str, n: usize) -> Value {
    let images: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": org_image_id(i), "name": format!("golden-{i}"), "creation_time": "2026-11-01T00:00:00Z",
                   "tags": {"share-with": "prod"}})
        })
        .collect();
    json!({"version": 1, "accounts": {account: {"regions": {"us-east-1": {"images": images}}}}})
}

/// A copy of an image to `region` with its tags, unencrypted and under its own name.
#[allow(dead_code, reason = "not every test binary copies")]
pub fn copy_with_tags(region: &str) -> amiwarden::plan::Op {
    amiwarden::plan::Op::Copy {
        request: Box::new(amiwarden::model::CopyRequest {
            region: region.into(),
            encrypted: false,
            kms_key_id: None,
            copy_tags: true,
            name: None,
        }),
    }
}
