//! The plugin runtime: one wasmtime engine, plugins compiled once (cached on disk) and
//! pre-instantiated, and sessions that evaluate events in a fresh, limited store.
//!
//! A plugin's failure (policy error, trap, timeout, out of memory, malformed output) is a
//! typed `PluginError`; it never takes the host down.

mod bindings;
mod cache;
mod host_api;
mod output;
mod review;
mod sandbox;
mod set;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

pub use crate::config::Limits;
use bindings::wit;
pub use bindings::{PLUGIN_EXPORT, WIT_VERSION};
pub use cache::ArtifactCache;
pub use set::{Proposals, Reviewed, load_plugins, narrow_needs, needs, propose, review};

use crate::inventory::Inventory;
use crate::model::{ImageEvent, PluginInfo, Proposal, Timestamp, Verdict};
pub use crate::model::{PluginError, PluginFailure, PolicyErrorKind, Stage};
use bindings::{Policy, PolicyPre};
use sandbox::{EpochTicker, StoreState};

/// An event lowered to the contract's types: lowered once, evaluated by every plugin.
pub struct Lowered(wit::ImageEvent);

impl From<&ImageEvent> for Lowered {
    fn from(event: &ImageEvent) -> Self {
        Lowered(wit::ImageEvent::from(event))
    }
}

impl Lowered {
    /// The scheduled event of `image`, lowered without an intermediate `ImageEvent`.
    pub fn scheduled(image: &crate::model::Image, now: Timestamp) -> Lowered {
        Lowered(wit::ImageEvent {
            kind: (&crate::model::EventKind::Scheduled).into(),
            image: image.into(),
            evaluation_time: now.0,
            raw: String::new(),
        })
    }

    /// Lowers the events of `range`, in order.
    pub fn range(events: &crate::event::Events, inventory: &Inventory, range: std::ops::Range<usize>) -> Vec<Lowered> {
        match events {
            crate::event::Events::Scheduled(now) => {
                inventory.images()[range].iter().map(|image| Lowered::scheduled(image, *now)).collect()
            }
            crate::event::Events::Listed(list) => list[range].iter().map(Lowered::from).collect(),
        }
    }

    /// The id of the image the event is about.
    pub fn image_id(&self) -> &str {
        &self.0.image.id
    }
}

/// The process's plugin runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: ArtifactCache,
    _ticker: EpochTicker,
}

/// Where a plugin's bytes come from and how it is to run.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The name the policy file gives it (also used in logs and plans).
    pub name: String,
    /// A path or `builtin:NAME`, for messages.
    pub origin: String,
    /// The sha256 the policy file pins, if any.
    pub sha256: Option<String>,
    pub limits: Limits,
    pub data_dir: Option<PathBuf>,
    /// Its config as JSON text.
    pub config: String,
}

/// A loaded, pre-instantiated plugin.
pub struct Plugin {
    pub name: Arc<str>,
    pub origin: String,
    pub sha256: String,
    pub size: usize,
    pub info: PluginInfo,
    pub limits: Limits,
    pub load_time: Duration,
    pub from_cache: bool,
    data_dir: Option<PathBuf>,
    config: String,
    pre: PolicyPre<StoreState>,
    engine: Engine,
}

/// The sha256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::model::id::sha256_hex(bytes)
}

impl Runtime {
    /// A runtime whose compiled artifacts are cached in `cache_dir` (none: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true).consume_fuel(true).max_wasm_stack(1 << 20);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(sandbox::instance_pool()));
        let engine = Engine::new(&config).or_else(|pool| {
            // The pool reserves ~4 TiB of address space up front; where that is refused
            // (`ulimit -v`), each store maps its own memory, slower and otherwise alike.
            tracing::warn!("plugin stores map their own memory (slower): wasmtime's instance pool: {pool:#}");
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
            Engine::new(&config)
        });
        let engine = engine.map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        Policy::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime { engine, linker, cache: ArtifactCache::new(cache_dir), _ticker: ticker })
    }

    /// Loads a plugin from a file.
    pub fn load_file(&self, path: &Path, spec: PluginSpec) -> Result<Plugin, PluginError> {
        let bytes = crate::files::read_input(path, crate::files::Input::Plugin)
            .map_err(|e| load_error(&spec, format!("{e:#}")))?;
        self.load(&bytes, spec)
    }

    /// Loads a plugin: checks its pin and WIT version, compiles (or loads the cached
    /// artifact), pre-instantiates, asks `describe` and checks `configure` accepts its config.
    pub fn load(&self, bytes: &[u8], spec: PluginSpec) -> Result<Plugin, PluginError> {
        let mut plugin = self.load_unconfigured(bytes, spec)?;
        let started = Instant::now();
        // Configure once now so a bad config fails the run at start.
        plugin.session(Arc::new(Inventory::default()), Timestamp(0))?;
        plugin.load_time += started.elapsed();
        Ok(plugin)
    }

    /// Loads a plugin as `load` does but without configuring it (for `inspect`).
    pub fn load_unconfigured(&self, bytes: &[u8], spec: PluginSpec) -> Result<Plugin, PluginError> {
        let started = Instant::now();
        let sha256 = sha256_hex(bytes);
        if let Some(pinned) = &spec.sha256
            && !pinned.eq_ignore_ascii_case(&sha256)
        {
            return Err(load_error(
                &spec,
                format!("{} has sha256 {sha256}, but the policy pins {pinned}", spec.origin),
            ));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(load_error(&spec, format!("{} is not a WebAssembly file", spec.origin)));
        }
        let (component, from_cache) = self
            .cache
            .load(&self.engine, bytes, &sha256)
            .map_err(|e| load_error(&spec, format!("{} is not a valid WebAssembly component: {e}", spec.origin)))?;
        check_wit_version(&self.engine, &component).map_err(|m| load_error(&spec, format!("{}: {m}", spec.origin)))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| load_error(&spec, format!("{} imports what the host does not offer: {e}", spec.origin)))?;
        let pre = PolicyPre::new(pre).map_err(|e| load_error(&spec, format!("{}: {e}", spec.origin)))?;
        let mut plugin = Plugin {
            name: Arc::from(spec.name.as_str()),
            origin: spec.origin.clone(),
            sha256,
            size: bytes.len(),
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                actions: Default::default(),
                needs: Default::default(),
                reviews: false,
            },
            limits: spec.limits.clone(),
            load_time: Duration::ZERO,
            from_cache,
            data_dir: spec.data_dir.clone(),
            config: spec.config.clone(),
            pre,
            engine: self.engine.clone(),
        };
        let mut session = plugin.instantiate(Arc::new(Inventory::default()), Timestamp(0))?;
        let info = session.call(Stage::Load, None, |p, s| p.amiwarden_policy_plugin().call_describe(s))?;
        plugin.info = info.try_into().map_err(|e| PluginError {
            plugin: spec.name.clone(),
            stage: Stage::Load,
            image: None,
            failure: PluginFailure::Malformed(e),
        })?;
        plugin.load_time = started.elapsed();
        Ok(plugin)
    }
}

fn load_error(spec: &PluginSpec, message: String) -> PluginError {
    PluginError {
        plugin: spec.name.clone(),
        stage: Stage::Load,
        image: None,
        failure: PluginFailure::Instantiate(message),
    }
}

/// The WIT version of the `plugin` interface a component exports, if any.
pub fn exported_wit_version(engine: &Engine, component: &wasmtime::component::Component) -> Option<String> {
    let ty = component.component_type();
    ty.exports(engine).find_map(|(name, _)| {
        name.strip_prefix(PLUGIN_EXPORT).map(|rest| rest.strip_prefix('@').unwrap_or("(unversioned)").to_string())
    })
}

fn check_wit_version(engine: &Engine, component: &wasmtime::component::Component) -> Result<(), String> {
    match exported_wit_version(engine, component) {
        Some(v) if v == WIT_VERSION => Ok(()),
        Some(v) => Err(format!(
            "built for amiwarden:policy@{v}, but this host implements amiwarden:policy@{WIT_VERSION}; rebuild it against WIT {WIT_VERSION}"
        )),
        None => Err(format!("does not export {PLUGIN_EXPORT}@{WIT_VERSION}: not an amiwarden policy plugin")),
    }
}

/// A plugin instance in a fresh store, configured and ready to evaluate.
pub struct Session<'p> {
    plugin: &'p Plugin,
    store: Store<StoreState>,
    policy: Policy,
}

impl Plugin {
    fn instantiate(&self, inventory: Arc<Inventory>, now: Timestamp) -> Result<Session<'_>, PluginError> {
        let err = |failure| PluginError { plugin: self.name.to_string(), stage: Stage::Load, image: None, failure };
        let state = StoreState::new(self.name.clone(), inventory, now, &self.limits, self.data_dir.as_ref())
            .map_err(|e| err(PluginFailure::Instantiate(e.to_string())))?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.set_fuel(self.limits.fuel()).map_err(|e| err(PluginFailure::Instantiate(format!("{e}"))))?;
        let policy = self.pre.instantiate(&mut store).map_err(|e| err(PluginFailure::Instantiate(format!("{e}"))))?;
        Ok(Session { plugin: self, store, policy })
    }

    /// A fresh store and instance, configured with the plugin's config.
    pub fn session(&self, inventory: Arc<Inventory>, now: Timestamp) -> Result<Session<'_>, PluginError> {
        let mut session = self.instantiate(inventory, now)?;
        let config = self.config.clone();
        let result =
            session.call(Stage::Configure, None, |p, s| p.amiwarden_policy_plugin().call_configure(s, &config))?;
        result.map_err(|e| {
            let (kind, message) = bindings::policy_error_message(e);
            PluginError {
                plugin: self.name.to_string(),
                stage: Stage::Configure,
                image: None,
                failure: PluginFailure::Policy(kind, message),
            }
        })?;
        Ok(session)
    }
}

impl Session<'_> {
    fn call<R>(
        &mut self,
        stage: Stage,
        image: Option<&str>,
        f: impl FnOnce(&Policy, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call_scaled(stage, image, 1, f)
    }

    /// A call with `scale` times the per-call CPU budget.
    fn call_scaled<R>(
        &mut self,
        stage: Stage,
        image: Option<&str>,
        scale: u64,
        f: impl FnOnce(&Policy, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = &self.plugin.limits;
        self.store.set_epoch_deadline(limits.deadline_ticks().saturating_mul(scale));
        // Fuel is reset per call; it cannot fail once consume_fuel is on.
        let _ = self.store.set_fuel(limits.fuel().saturating_mul(scale));
        self.store.data_mut().limiter.hit_memory_cap = false;
        self.store.data_mut().reset_host_work(limits.host_work().saturating_mul(scale));
        let result = f(&self.policy, &mut self.store);
        self.store.data_mut().flush_output();
        result.map_err(|e| {
            let failure = if self.store.data().limiter.hit_memory_cap {
                PluginFailure::OutOfMemory(limits.memory_mib)
            } else if self.store.data().host_work_spent {
                PluginFailure::HostWork(limits.time_ms.saturating_mul(scale))
            } else if matches!(e.downcast_ref::<Trap>(), Some(&Trap::Interrupt | &Trap::OutOfFuel)) {
                PluginFailure::Timeout(limits.time_ms.saturating_mul(scale))
            } else if let Some(trap) = e.downcast_ref::<Trap>() {
                PluginFailure::Trap(trap.to_string())
            } else {
                PluginFailure::Trap(format!("{e}"))
            };
            PluginError { plugin: self.plugin.name.to_string(), stage, image: image.map(str::to_string), failure }
        })
    }

    fn fail(&self, stage: Stage, image: Option<&str>, failure: PluginFailure) -> PluginError {
        PluginError { plugin: self.plugin.name.to_string(), stage, image: image.map(str::to_string), failure }
    }

    /// Proposals for one event, validated. After an error the session must be dropped.
    pub fn propose(&mut self, event: &ImageEvent) -> Result<Vec<Proposal>, PluginError> {
        self.propose_lowered(&Lowered::from(event))
    }

    /// `propose` on an event already lowered to the contract's types (once for every
    /// plugin that sees it).
    pub fn propose_lowered(&mut self, event: &Lowered) -> Result<Vec<Proposal>, PluginError> {
        let event = &event.0;
        let image = Some(event.image.id.as_str());
        let result = self.call(Stage::Propose, image, |p, s| p.amiwarden_policy_plugin().call_propose(s, event))?;
        let proposals = result.map_err(|e| {
            let (kind, message) = bindings::policy_error_message(e);
            self.fail(Stage::Propose, image, PluginFailure::Policy(kind, message))
        })?;
        let max = self.plugin.limits.max_proposals;
        if proposals.len() > max {
            let msg = format!("{} proposals for one event, over the limit of {max}", proposals.len());
            return Err(self.fail(Stage::Propose, image, PluginFailure::Malformed(msg)));
        }
        let mut out = Vec::with_capacity(proposals.len());
        for p in proposals {
            let now = self.store.data().now;
            let proposal = bindings::proposal_from_wit(p, now)
                .map_err(|m| self.fail(Stage::Propose, image, PluginFailure::Malformed(m)))?;
            if !self.plugin.info.actions.contains(&proposal.action.kind()) {
                let msg =
                    format!("proposed a `{}` action, which its plugin-info does not declare", proposal.action.kind());
                return Err(self.fail(Stage::Propose, image, PluginFailure::Malformed(msg)));
            }
            out.push(proposal);
        }
        Ok(out)
    }

    /// Verdicts on the candidate plan, reviewed part by part (`review::REVIEW_PART`
    /// actions each, in plan order) in this one session. After an error the session must
    /// be dropped.
    pub fn review(&mut self, plan: &crate::resolve::PricedPlan<'_>) -> Result<Vec<Verdict>, PluginError> {
        let ledger = review::ledger(plan);
        let mut verdicts = Vec::new();
        for part in 0..review::parts(plan) {
            verdicts.extend(self.review_part(&review::priced_part(plan, &ledger, part))?);
        }
        Ok(verdicts)
    }

    fn review_part(&mut self, plan: &wit::PricedPlan) -> Result<Vec<Verdict>, PluginError> {
        // One review call sees one part: its budget grows with the part, one `time_ms`
        // per 100 candidate actions.
        let scale = (plan.actions.len() as u64 / 100).max(1);
        let result =
            self.call_scaled(Stage::Review, None, scale, |p, s| p.amiwarden_policy_plugin().call_review(s, plan))?;
        let verdicts = result.map_err(|e| {
            let (kind, message) = bindings::policy_error_message(e);
            self.fail(Stage::Review, None, PluginFailure::Policy(kind, message))
        })?;
        if verdicts.len() > plan.actions.len().max(1) * 4 {
            let msg = format!("{} verdicts for {} actions", verdicts.len(), plan.actions.len());
            return Err(self.fail(Stage::Review, None, PluginFailure::Malformed(msg)));
        }
        verdicts
            .into_iter()
            .map(|v| {
                bindings::verdict_from_wit(v).map_err(|m| self.fail(Stage::Review, None, PluginFailure::Malformed(m)))
            })
            .collect()
    }
}
