//! The engine: its configuration (component model, epoch interruption, stack, optional
//! pooling) and the thread that advances its epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances; the deadline's resolution.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The configuration of every engine: pooling with `pool_instances` slots of at most
/// `memory_bytes` each, or on-demand allocation if `pool_instances` is 0.
pub(super) fn engine_config(pool_instances: u32, memory_bytes: usize) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(512 << 10);
    if pool_instances > 0 {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(pool_instances);
        pool.total_core_instances(pool_instances * 4);
        pool.total_memories(pool_instances * 2);
        pool.total_tables(pool_instances * 4);
        pool.total_stacks(pool_instances);
        pool.max_memory_size(memory_bytes);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Starts the thread that advances `engine`'s epoch every [`EPOCH_TICK`] until `stop` is
/// set.
pub(super) fn start_epoch_ticker(engine: &Engine, stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    let engine = engine.clone();
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("latchkey-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
}
