//! `latchkey compile`, and the compiled-component cache `latchkey run` loads steps through.

use crate::cli::StoreArgs;
use anyhow::{Context, Result};
use clap::Args;
use latchkey_host::cache::{CacheStatus, ComponentCache};
use latchkey_host::sandbox::{Limits, Runtime, RuntimeConfig, Step};
use latchkey_host::store::SecretStore;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Instance slots the pooling allocator reserves for `latchkey run` (0: no pooling).
/// Measured in bench/RESULTS.md: for one step per process, reserving a pool costs more at
/// start than it saves on the single instantiation.
pub(crate) const RUN_POOL_INSTANCES: u32 = 0;

/// Where compiled components are cached.
#[derive(Default, Args, Debug, Clone)]
pub struct CacheArgs {
    /// Directory of the compiled-component cache (`latchkey compile` warms it). Default:
    /// `cache` beside the store directory (`.latchkey/cache`).
    #[arg(long, env = "LATCHKEY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the step in memory; neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// Components (.wasm) to compile into the cache.
    #[arg(required = true, value_name = "STEP.wasm")]
    pub steps: Vec<PathBuf>,
    /// Directory of the compiled-component cache. Default: `cache` beside the store
    /// directory (`.latchkey/cache`).
    #[arg(long, env = "LATCHKEY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Guest memory limit in MiB the steps will run with (must match `run --memory-mib`
    /// if the engine's configuration depends on it; a mismatch only costs a recompile).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub memory_mib: usize,
}

/// The cache directory: `--cache-dir`, else `cache` beside the store directory.
fn cache_dir(arg: Option<&Path>, store: &StoreArgs) -> PathBuf {
    match arg {
        Some(d) => d.to_owned(),
        None => store.store.parent().unwrap_or(Path::new(".")).join("cache"),
    }
}

/// The runtime configuration `latchkey run` uses, minus what does not affect the engine.
pub(crate) fn run_config(limits: Limits) -> RuntimeConfig {
    RuntimeConfig {
        limits,
        pool_instances: RUN_POOL_INSTANCES,
        ..Default::default()
    }
}

/// Loads a step for `latchkey run`: through the cache unless `--no-cache`. Cache entries
/// are authenticated with `secrets`' cache key (derived from its data key).
pub(crate) fn load_step(
    runtime: &Runtime,
    bytes: &[u8],
    path: &Path,
    cache: &CacheArgs,
    store: &StoreArgs,
    secrets: &SecretStore,
) -> Result<Step> {
    let what = || format!("loading the step {}", path.display());
    if cache.no_cache {
        return runtime.load(bytes).with_context(what);
    }
    let cache = ComponentCache::new(
        cache_dir(cache.cache_dir.as_deref(), store),
        runtime.engine(),
        secrets.cache_key(),
    );
    let (step, status) = runtime.load_cached(bytes, &cache).with_context(what)?;
    tracing::debug!(step = %path.display(), ?status, "loaded");
    Ok(step)
}

/// `latchkey compile STEP.wasm...`: compile each step into the cache. Opens the store
/// (so it needs the master key): entries are authenticated with the store's cache key.
pub fn run(store: &StoreArgs, args: CompileArgs) -> Result<()> {
    if args.memory_mib == 0 || args.memory_mib > 4096 {
        anyhow::bail!("--memory-mib must be between 1 and 4096");
    }
    let limits = Limits {
        memory_bytes: args.memory_mib << 20,
        ..Limits::default()
    };
    let (engine, _) =
        Runtime::engine_for(&run_config(limits)).context("creating the WebAssembly engine")?;
    let secrets = crate::keys::open_store(store)?;
    let cache = ComponentCache::new(
        cache_dir(args.cache_dir.as_deref(), store),
        &engine,
        secrets.cache_key(),
    );
    for path in &args.steps {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading the step {}", path.display()))?;
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!("{} is not a WebAssembly component", path.display());
        }
        let started = Instant::now();
        let cached = cache
            .load(&engine, &bytes)
            .with_context(|| format!("compiling {}", path.display()))?;
        if let Some(e) = cached.store_error {
            return Err(e).with_context(|| format!("caching {}", path.display()));
        }
        let how = match cached.status {
            CacheStatus::Hit => "already cached".to_owned(),
            CacheStatus::Compiled => "compiled".to_owned(),
            CacheStatus::Recompiled(why) => format!("recompiled (old entry: {why})"),
            _ => "compiled".to_owned(),
        };
        println!(
            "{}: {how} in {:.1} ms -> {}",
            path.display(),
            started.elapsed().as_secs_f64() * 1000.0,
            cache.entry_path(&bytes).display()
        );
    }
    Ok(())
}
