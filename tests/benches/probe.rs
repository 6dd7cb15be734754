//! What a plugin call would cost on a contract where images stay in the host and a
//! plugin reads them field by field, or are lowered with only the fields it reads; one
//! call per event or one per batch: the probe of `tests/fixtures/wit-probe`
//! (keep-tagged, and a sharing-like read) against the same logic natively, beside a warm
//! `amiwarden:policy@0.2.0` call of the trivial plugin, all in one run. Run: `cargo bench -p amiwarden-tests --bench probe`. The engine is
//! configured as the host's (fuel and epoch deadlines on), and every call sets its fuel
//! and deadline as the host does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiwarden::event::scheduled_event;
use amiwarden::model::{self, Principal};
use amiwarden::plugin::{Limits, Lowered, PluginSpec, Runtime};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        world: "measure",
        path: "fixtures/wit-probe",
        imports: { default: trappable },
    });
}

use bindings::Measure;
use bindings::amiwarden::probe::images as wit;
use bindings::exports::amiwarden::probe::probe::{KeepImage, Proposal, ShareImage, Tag};

mod common;
use common::NOW;

/// The store of a probe instance: the images of the call in progress are
/// `images[first..first + count]`, found by their index in the call.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    images: Arc<Vec<model::Image>>,
    first: usize,
    count: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl State {
    fn image(&self, index: u32) -> wasmtime::Result<&model::Image> {
        let index = index as usize;
        if index >= self.count {
            wasmtime::bail!("image {index} is not in this call's {} images", self.count);
        }
        Ok(&self.images[self.first + index])
    }
}

impl wit::Host for State {
    fn id(&mut self, image: u32) -> wasmtime::Result<String> {
        Ok(self.image(image)?.id.clone())
    }

    fn account(&mut self, image: u32) -> wasmtime::Result<String> {
        Ok(self.image(image)?.account.clone())
    }

    fn tag(&mut self, image: u32, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.image(image)?.tags.get(&key).cloned())
    }

    fn launch_permissions(&mut self, image: u32) -> wasmtime::Result<Option<Vec<wit::Principal>>> {
        Ok(permissions(self.image(image)?))
    }
}

fn permissions(image: &model::Image) -> Option<Vec<wit::Principal>> {
    image.launch_permissions.as_ref().map(|ps| {
        ps.iter()
            .map(|p| match p {
                Principal::Account(a) => wit::Principal::Account(a.clone()),
                Principal::Organization(a) => wit::Principal::Organization(a.clone()),
                Principal::OrganizationalUnit(a) => wit::Principal::OrganizationalUnit(a.clone()),
                Principal::Public => wit::Principal::Public,
            })
            .collect()
    })
}

/// The image's tag `key` as a projection lowers it: `none` when the image has none.
fn declared_tag(image: &model::Image, key: &str) -> Option<Vec<Tag>> {
    image.tags.get(key).map(|value| vec![Tag { key: key.to_string(), value: value.clone() }])
}

/// The guest's keep-tagged, natively.
fn native_keep(image: &model::Image) -> Vec<Proposal> {
    match image.tags.get("keep").map(String::as_str) {
        Some("true") => vec![Proposal { image_id: image.id.clone(), reason: "tagged keep=true".into() }],
        _ => Vec::new(),
    }
}

/// The guest's sharing-like read, natively.
fn native_share(image: &model::Image) -> Vec<Proposal> {
    let Some(permissions) = &image.launch_permissions else { return Vec::new() };
    if permissions.is_empty() {
        return Vec::new();
    }
    let wanted = image.tags.get("share-with").cloned().unwrap_or_default();
    permissions
        .iter()
        .filter_map(|p| match p {
            Principal::Account(a) if *a == image.account || wanted.split(',').any(|w| w == a) => None,
            Principal::Account(a) | Principal::Organization(a) | Principal::OrganizationalUnit(a) => Some(a.clone()),
            Principal::Public => Some("public".into()),
        })
        .map(|p| Proposal { image_id: image.id.clone(), reason: format!("{p} is not desired") })
        .collect()
}

/// The probe's policies, by name, on handles or on lowered images.
#[derive(Clone, Copy)]
enum Which {
    Keep,
    Share,
    KeepLowered,
    ShareLowered,
}

/// Runs `which` over every image in calls of `batch` images; returns the proposals
/// made and the time taken.
fn run(store: &mut Store<State>, probe: &Measure, which: Which, batch: usize) -> (usize, Duration) {
    let total = store.data().images.len();
    let start = Instant::now();
    let mut made = 0;
    for first in (0..total).step_by(batch) {
        let count = batch.min(total - first);
        store.data_mut().first = first;
        store.data_mut().count = count;
        // As the host does before every call.
        store.set_epoch_deadline(1_000);
        store.set_fuel(1_000_000_000).expect("fuel is on");
        let p = probe.amiwarden_probe_probe();
        let images = &store.data().images[first..first + count];
        let out = match which {
            Which::Keep => p.call_keep(&mut *store, count as u32),
            Which::Share => p.call_share(&mut *store, count as u32),
            Which::KeepLowered => {
                let lowered: Vec<KeepImage> =
                    images.iter().map(|i| KeepImage { id: i.id.clone(), tags: declared_tag(i, "keep") }).collect();
                p.call_keep_lowered(&mut *store, &lowered)
            }
            Which::ShareLowered => {
                let lowered: Vec<ShareImage> = images
                    .iter()
                    .map(|i| ShareImage {
                        id: i.id.clone(),
                        account: i.account.clone(),
                        tags: declared_tag(i, "share-with"),
                        launch_permissions: permissions(i),
                    })
                    .collect();
                p.call_share_lowered(&mut *store, &lowered)
            }
        }
        .expect("probe call");
        assert_eq!(out.len(), count);
        made += out.iter().map(Vec::len).sum::<usize>();
    }
    (made, start.elapsed())
}

fn main() {
    let needs: BTreeSet<model::InventoryNeed> = [model::InventoryNeed::LaunchPermissions].into();
    let inventory = common::inventory(common::images(), &needs);
    let all: Arc<Vec<model::Image>> = Arc::new(inventory.images().to_vec());
    let us = |d: Duration| d.as_secs_f64() * 1e6 / all.len() as f64;

    // The contract as it is: the trivial plugin's warm call, the image lowered whole.
    let runtime = Runtime::new(None).expect("runtime");
    let trivial = std::fs::read(amiwarden_tests::TRIVIAL).expect("trivial guest");
    let spec = PluginSpec {
        name: "trivial".into(),
        origin: "trivial".into(),
        sha256: None,
        limits: Limits::default(),
        data_dir: None,
        config: "{}".into(),
    };
    let plugin = runtime.load(&trivial, spec).expect("load trivial");
    let lowered: Vec<Lowered> = all.iter().map(|i| Lowered::from(&scheduled_event(i, NOW))).collect();
    let mut session = plugin.session(Arc::clone(&inventory), NOW).expect("session");
    let start = Instant::now();
    let made_0_2: usize = lowered.iter().map(|e| session.propose_lowered(e).expect("propose").len()).sum();
    let contract = start.elapsed();

    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true).consume_fuel(true);
    let engine = Engine::new(&config).expect("engine");
    let component = Component::from_file(&engine, amiwarden_tests::PROBE).expect("probe component");
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    wit::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("probe imports");
    let state = State {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        images: Arc::clone(&all),
        first: 0,
        count: 0,
    };
    let mut store = Store::new(&engine, state);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(1_000);
    store.set_fuel(1_000_000_000).expect("fuel is on");
    let probe = Measure::instantiate(&mut store, &component, &linker).expect("instantiate");

    println!("## Images as host-held handles: one call per event or per batch ({} images)\n", all.len());
    println!("| policy | images | calls of | wasm µs/event | native µs/event | wasm ÷ native |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, how: &str, batch: usize, wasm: Duration, native: Duration| {
        let ratio = wasm.as_secs_f64() / native.as_secs_f64();
        println!("| {name} | {how} | {batch} | {:.2} | {:.2} | {ratio:.1}× |", us(wasm), us(native));
    };
    for (name, handles, lowered, native) in [
        ("keep-tagged", Which::Keep, Which::KeepLowered, native_keep as fn(&model::Image) -> Vec<Proposal>),
        ("sharing's reads", Which::Share, Which::ShareLowered, native_share),
    ] {
        let start = Instant::now();
        let native_made: usize = all.iter().map(|i| native(i).len()).sum();
        let native_time = start.elapsed();
        for (how, which) in [("left in the host", handles), ("lowered with what it reads", lowered)] {
            // Warm the instance's memory before timing.
            run(&mut store, &probe, which, 64);
            for batch in [1, 16, 64, 256] {
                let (made, wasm) = run(&mut store, &probe, which, batch);
                assert_eq!(made, native_made, "{name}, {how}: wasm and native disagree");
                row(name, how, batch, wasm, native_time);
            }
        }
        if let Which::Share = handles {
            // A plugin-info saying which images a plugin wants at all: the host calls
            // sharing's reads only on images with launch permissions. The time counts the
            // host's scan for them (positions), not the copy this probe makes of them.
            let start = Instant::now();
            let positions: Vec<u32> = (0..all.len() as u32)
                .filter(|&k| all[k as usize].launch_permissions.as_ref().is_some_and(|p| !p.is_empty()))
                .collect();
            let select = start.elapsed();
            let wanted: Vec<model::Image> = positions.iter().map(|&k| all[k as usize].clone()).collect();
            store.data_mut().images = Arc::new(wanted);
            run(&mut store, &probe, Which::Share, 64);
            for batch in [16, 64, 256] {
                let (made, wasm) = run(&mut store, &probe, Which::Share, batch);
                assert_eq!(made, native_made, "{name}, only wanted images: wasm and native disagree");
                let how = format!("left in the host, only the {} it wants", positions.len());
                row(name, &how, batch, wasm + select, native_time);
            }
            store.data_mut().images = Arc::clone(&all);
        }
        if let Which::Keep = handles {
            assert_eq!(made_0_2, native_made, "the trivial plugin and the probe disagree");
            row(name, "contract 0.2.0: lowered whole", 1, contract, native_time);
        }
    }
}
