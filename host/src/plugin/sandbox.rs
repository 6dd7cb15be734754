//! The sandbox a plugin runs in: limits, the store's state, a deny-all WASI context, the
//! epoch ticker that enforces CPU deadlines, and the limiter that records out-of-memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::output::OutputPipe;
use crate::config::Limits;
use crate::inventory::Inventory;
use crate::model::Timestamp;

/// How often the epoch advances; wall-clock deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Fuel (roughly, wasm instructions) granted per millisecond of `time_ms`. Fuel makes the
/// CPU budget deterministic: a plugin hits it at the same point on an idle or a loaded
/// machine, so plans do not depend on load. Calibrated so a Rust guest spends its fuel in
/// about the budgeted time on this class of machine.
pub const FUEL_PER_MS: u64 = 1_000_000;

/// Host work (see `StoreState::charge_host_work`) granted per millisecond of `time_ms`:
/// an image a query looks at costs 1, an image it returns (lowered into the guest)
/// `RETURNED_IMAGE_WORK`. 100 ms allow 100,000 images returned (ten of the largest
/// queries), about as much host CPU as the plugin's own budget.
pub const HOST_WORK_PER_MS: u64 = 10_000;

/// The host work of returning one image to a plugin.
pub const RETURNED_IMAGE_WORK: u64 = 10;

/// The host work of returning one image summary (a few fields, not the whole record).
pub const RETURNED_SUMMARY_WORK: u64 = 2;

/// The wall-clock backstop, as a multiple of `time_ms`: it catches what fuel does not
/// count (a slow host call) without making a busy machine fail plugins.
pub const WALL_CLOCK_FACTOR: u64 = 20;

/// Bytes of a plugin's linear memory that stay mapped when its store ends, reset to the
/// module's initial contents instead of being unmapped (see `instance_pool`).
pub const KEEP_RESIDENT: usize = 1 << 20;

/// The instance allocator every plugin store uses: wasmtime's pool of reserved slots.
///
/// Each event or batch runs in a fresh store, and wasmtime's default allocator maps a new
/// 4 GiB reservation per store and unmaps it at the store's end: on a live event that
/// was ~30 % of the CPU (page faults on the copy-on-write image, `munmap`, and the TLB
/// shootdowns an unmap sends to every other core running a thread of ours). The pool
/// keeps slots reserved for the life of the runtime; a slot is reset when its store
/// ends, by rewriting the pages the plugin dirtied (`PAGEMAP_SCAN` finds them on Linux
/// 6.7 and later, else the lowest `KEEP_RESIDENT` bytes) and releasing only what lies
/// beyond. The next instance of the same plugin finds its image still mapped.
///
/// Isolation is wasmtime's: a slot is wiped before another instance gets it. The pool's
/// sizes bound what may be live at once, not what a plugin may use: a memory slot holds
/// the 4 GiB a 32-bit memory can ever reach (a plugin's own cap is the limiter's), and
/// the counts allow far more stores than a run keeps at once (one per plugin session,
/// and a session lives on one thread).
pub fn instance_pool() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto)
        // A component built from an interpreter links a dozen core modules or more.
        .total_core_instances(10_000)
        // Interpreters' function tables run to tens of thousands of entries.
        .table_elements(100_000);
    pool
}

/// How the policy's limits become wasmtime's deadlines and fuel.
impl Limits {
    /// The wall-clock (epoch) deadline for one call, in ticks.
    pub fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_millis() as u64;
        self.time_ms.saturating_mul(WALL_CLOCK_FACTOR).div_ceil(tick).max(1) + 1
    }

    /// The fuel for one call.
    pub fn fuel(&self) -> u64 {
        self.time_ms.saturating_mul(FUEL_PER_MS)
    }

    /// The host work one call may cause.
    pub fn host_work(&self) -> u64 {
        self.time_ms.saturating_mul(HOST_WORK_PER_MS)
    }
}

/// Refuses memory and table growth past the caps and records that it did.
pub struct Limiter {
    memory_bytes: usize,
    pub hit_memory_cap: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// What a plugin's store holds.
pub struct StoreState {
    pub plugin: Arc<str>,
    pub inventory: Arc<Inventory>,
    pub now: Timestamp,
    pub limiter: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: OutputPipe,
    stderr: OutputPipe,
    /// Whether `log` messages, stdout and stderr going past their budget was noted in
    /// the log: once per store, not once per call for the rest of its batch.
    output_noted: [bool; 3],
    output_budget: usize,
    /// Bytes of `log` messages this store may still emit (`limits.output_bytes`).
    log_left: usize,
    /// `log` calls dropped once the budget ran out, not yet reported.
    log_dropped: u64,
    /// Host work the current call may still cause, and whether it ran out.
    host_work_left: u64,
    pub host_work_spent: bool,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A wall clock stopped at the evaluation time.
struct PinnedWallClock(Timestamp);

impl HostWallClock for PinnedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.0.0).unwrap_or(0))
    }
}

/// A monotonic clock that never advances.
struct StoppedClock;

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl StoreState {
    /// A fresh state: no env, args, network or inherited stdio; clocks pinned to `now`,
    /// a fixed random seed, and only `data_dir` (read-only, as `/data`) on the file system.
    pub fn new(
        plugin: Arc<str>,
        inventory: Arc<Inventory>,
        now: Timestamp,
        limits: &Limits,
        data_dir: Option<&PathBuf>,
    ) -> anyhow::Result<StoreState> {
        let stdout = OutputPipe::new(limits.output_bytes);
        let stderr = OutputPipe::new(limits.output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(PinnedWallClock(now))
            .monotonic_clock(StoppedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![42, 7, 19, 3]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![11, 5, 23, 1]))
            .insecure_random_seed(0x0061_6d69_7761_7264_656e)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        if let Some(dir) = data_dir {
            wasi.preopened_dir(dir, "/data", FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("cannot open data directory {}: {e}", dir.display()))?;
        }
        Ok(StoreState {
            plugin,
            inventory,
            now,
            limiter: Limiter {
                memory_bytes: (limits.memory_mib as usize).saturating_mul(1 << 20),
                hit_memory_cap: false,
            },
            wasi: wasi.build(),
            table: ResourceTable::new(),
            stdout,
            stderr,
            output_noted: [false; 3],
            output_budget: limits.output_bytes,
            log_left: limits.output_bytes,
            log_dropped: 0,
            host_work_left: limits.host_work(),
            host_work_spent: false,
        })
    }

    /// Gives the next call `budget` units of host work.
    pub fn reset_host_work(&mut self, budget: u64) {
        self.host_work_left = budget;
        self.host_work_spent = false;
    }

    /// Charges host work done for the plugin; past the call's budget the plugin traps
    /// (fuel counts only the guest's own instructions, so a plugin looping over queries
    /// would otherwise make the host work without bound).
    pub fn charge_host_work(&mut self, units: u64) -> wasmtime::Result<()> {
        if units > self.host_work_left || self.host_work_spent {
            self.host_work_spent = true;
            return Err(wasmtime::format_err!("the plugin's queries exceeded the host work of its time budget"));
        }
        self.host_work_left -= units;
        Ok(())
    }

    /// Whether a `log` message of `len` bytes fits the store's budget; counts it as
    /// dropped if not.
    pub fn take_log_budget(&mut self, len: usize) -> bool {
        if len > self.log_left {
            self.log_dropped += 1;
            return false;
        }
        self.log_left -= len;
        true
    }

    /// Sends what the plugin wrote to stdout and stderr since the last call to the log
    /// under its name, and says once per store, when it first happens, that `log`
    /// messages, stdout or stderr went over the budget.
    pub fn flush_output(&mut self) {
        let log_dropped = std::mem::take(&mut self.log_dropped);
        if log_dropped > 0 && !std::mem::replace(&mut self.output_noted[0], true) {
            tracing::warn!(
                plugin = %self.plugin,
                "{log_dropped} log message(s) dropped, and any more in this batch: over the {} bytes one batch may log (limits.output_bytes)",
                self.output_budget
            );
        }
        for (i, (stream, pipe)) in [("stdout", &self.stdout), ("stderr", &self.stderr)].into_iter().enumerate() {
            let (new, dropped) = pipe.take();
            for line in String::from_utf8_lossy(&new).lines() {
                tracing::info!(plugin = %self.plugin, stream, "{line}");
            }
            if dropped > 0 && !std::mem::replace(&mut self.output_noted[i + 1], true) {
                tracing::warn!(
                    plugin = %self.plugin,
                    "{dropped} byte(s) of {stream} dropped, and any more in this batch: over the {} bytes one batch may write (limits.output_bytes)",
                    self.output_budget
                );
            }
        }
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("amiwarden-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
