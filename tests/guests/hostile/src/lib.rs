//! A plugin that misbehaves on demand: the mode comes from its config, or from the
//! event image's `hostile-mode` tag, so it can fail on one image and behave on others.

use amiwarden_sdk::prelude::*;
use serde::Deserialize;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Hostile {
    mode: String,
    review_mode: String,
}

fn ok_tag(image: &str, value: String) -> Vec<Proposal> {
    let tags = vec![Tag::new("probe", &value)];
    vec![Proposal::new(image, Action::Tag(tags), "probe result")]
}

fn arg(mode: &str) -> u64 {
    mode.split_once(':').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    let mut local = pad;
    local[0] = local[0].wrapping_add(1);
    local[1] = depth as u8;
    recurse(depth + 1, local) + u64::from(local[255])
}

fn io_probe<T: std::fmt::Debug>(
    what: &str,
    image: &str,
    result: std::io::Result<T>,
) -> Result<Vec<Proposal>, PolicyError> {
    match result {
        Ok(value) => Ok(ok_tag(image, format!("LEAKED {what}: {value:?}").chars().take(200).collect())),
        Err(err) => Err(PolicyError::Failed(format!("{what} denied: {err}"))),
    }
}

impl Policy for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"))
            .proposes([
                ActionKind::Tag,
                ActionKind::Retain,
                ActionKind::Share,
                ActionKind::Copy,
                ActionKind::Untag,
                ActionKind::Deprecate,
            ])
            .reviews()
    }

    fn configure(&mut self, config: &str) -> Result<(), PolicyError> {
        *self = parse_config(config)?;
        if self.mode == "bad-config" {
            return Err(PolicyError::InvalidConfig("mode bad-config is refused on purpose".into()));
        }
        Ok(())
    }

    fn propose(&self, event: &ImageEvent) -> Result<Vec<Proposal>, PolicyError> {
        let image = event.image.id.as_str();
        let mode = event.image.tag("hostile-mode").unwrap_or(&self.mode).to_string();
        let name = mode.split(':').next().unwrap_or_default();
        match name {
            "" | "ok" => Ok(ok_tag(image, "ok".into())),
            "loop" => loop {
                std::hint::black_box(0u8);
            },
            "spin" => {
                let mut x = 0u64;
                for i in 0..arg(&mode) {
                    x = std::hint::black_box(x.wrapping_add(i));
                }
                Ok(ok_tag(image, format!("spun {x}")))
            }
            "alloc" => {
                let mib = arg(&mode) as usize;
                let mut blocks = Vec::new();
                for _ in 0..mib {
                    blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
                Ok(ok_tag(image, format!("allocated {} MiB", blocks.len())))
            }
            "alloc-forever" => {
                let mut blocks = Vec::new();
                loop {
                    blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => panic!("hostile plugin traps on purpose"),
            "stack-overflow" => Ok(ok_tag(image, recurse(0, [0; 256]).to_string())),
            "proposals" => Ok((0..arg(&mode)).map(|i| Proposal::new(image, Action::Retain, format!("r{i}"))).collect()),
            "big-string" => Ok(vec![Proposal::new(image, Action::Retain, "x".repeat(arg(&mode) as usize))]),
            "bad-ami" => Ok(vec![Proposal::new("ami-NOTHEX", Action::Retain, "bad id")]),
            "unknown-image" => Ok(vec![Proposal::new("ami-00000000000000000", Action::Retain, "not in inventory")]),
            "short-account" => {
                Ok(vec![Proposal::new(image, Action::Share(Principal::Account("12345678901".into())), "11 digits")])
            }
            "bad-region" => {
                let copy = amiwarden_sdk::CopyRequest {
                    region: "xx-moon-1".into(),
                    encrypted: false,
                    kms_key_id: None,
                    copy_tags: false,
                    name: None,
                };
                Ok(vec![Proposal::new(image, Action::CopyToRegion(copy), "a copy to the moon")])
            }
            "empty-tag-key" => Ok(vec![Proposal::new(image, Action::Tag(vec![Tag::new("", "v")]), "empty key")]),
            "undeclared-kind" => Ok(vec![Proposal::new(image, Action::Deregister(true), "not declared")]),
            "policy-error" => Err(PolicyError::Failed("refuses this image on purpose".into())),
            // Writes the host's own replica tags, as if the image were a copy of another.
            "host-tag" => {
                let tags = vec![
                    Tag::new("amiwarden:source-image-id", "ami-0ffffffffffffffff"),
                    Tag::new("amiwarden:source-region", "eu-west-1"),
                    Tag::new("team", "hostile"),
                ];
                Ok(vec![Proposal::new(image, Action::Tag(tags), "I am a replica now")])
            }
            "host-untag" => Ok(vec![Proposal::new(
                image,
                Action::Untag(vec!["amiwarden:source-image-id".into(), "aws:cloudformation:stack-name".into()]),
                "forget where I came from",
            )]),
            "deprecate-max" => Ok(vec![Proposal::new(image, Action::DeprecateAt(i64::MAX), "never, really")]),
            "ansi-reason" => Ok(vec![Proposal::new(image, Action::Retain, "kept\u{1b}[1A\u{1b}[2K\u{1b}[1A")]),
            "ansi-tag" => Ok(vec![Proposal::new(image, Action::Tag(vec![Tag::new("note", "\u{202e}gpj.exe")]), "rtl")]),
            "read-host-file" => io_probe("reading /etc/passwd", image, std::fs::read_to_string("/etc/passwd")),
            "read-outside-data" => {
                io_probe("reading /data/../etc/passwd", image, std::fs::read_to_string("/data/../etc/passwd"))
            }
            "read-data" => match std::fs::read_to_string("/data/allowed.txt") {
                Ok(text) => Ok(ok_tag(image, format!("read {}", text.trim()))),
                Err(err) => Err(PolicyError::Failed(format!("reading /data/allowed.txt failed: {err}"))),
            },
            "write-data" => io_probe("writing /data/written.txt", image, std::fs::write("/data/written.txt", b"x")),
            "env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                if vars.is_empty() && std::env::args().count() == 0 {
                    Err(PolicyError::Failed("environment denied: no variables, no args".into()))
                } else {
                    Ok(ok_tag(image, format!("LEAKED env: {vars:?}").chars().take(200).collect()))
                }
            }
            "network" => io_probe("connecting to 127.0.0.1:22", image, std::net::TcpStream::connect("127.0.0.1:22")),
            "clock" => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(ok_tag(image, format!("{secs}/{}", now())))
            }
            "query-everything" | "query-loop" => {
                // `query-loop` asks again and again, as a buggy plugin might, for a name
                // nothing has: the host scans every image, the guest gets nothing to pay for.
                let looping = name == "query-loop";
                let everything = ImageQuery {
                    account: None,
                    region: None,
                    tag_key: None,
                    tag_value: None,
                    name_prefix: looping.then(|| "no-image-has-this-name".to_string()),
                    source_image_id: None,
                };
                let mut seen = 0;
                for _ in 0..if looping { u32::MAX } else { 1 } {
                    seen += query_images(&everything).map_err(PolicyError::Failed)?.len();
                }
                Ok(ok_tag(image, format!("saw {seen}")))
            }
            "counter" => {
                // Keeps state across calls in one instance, to show where it stops.
                static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(ok_tag(image, n.to_string()))
            }
            "log-flood" => {
                for i in 0..arg(&mode) {
                    log(LogLevel::Warn, &format!("flood {i} {}", "x".repeat(1000)));
                }
                Ok(ok_tag(image, "flooded".into()))
            }
            "print" => {
                println!("hello from {image}");
                eprintln!("warning about {image}");
                Ok(ok_tag(image, "printed".into()))
            }
            other => Err(PolicyError::InvalidConfig(format!("unknown mode `{other}`"))),
        }
    }

    fn review(&self, plan: &PricedPlan) -> Result<Vec<Verdict>, PolicyError> {
        match self.review_mode.as_str() {
            "" | "approve" => Ok(Vec::new()),
            "veto-all" => Ok(plan.actions.iter().map(|a| Verdict::veto(&a.id, "hostile vetoes everything")).collect()),
            "loop" => loop {
                std::hint::black_box(0u8);
            },
            "trap" => panic!("hostile review traps on purpose"),
            "unknown-verdict" => Ok(vec![Verdict::veto("cand-00000000000000000000", "a verdict on nothing")]),
            other => Err(PolicyError::InvalidConfig(format!("unknown review mode `{other}`"))),
        }
    }
}

export_policy!(Hostile);
