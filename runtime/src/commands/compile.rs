//! `latchkey compile`: steps compiled into the cache `latchkey run` loads them through.

use crate::common::{StoreArgs, runtime_config};
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_host::CacheStatus;
use latchkey_host::Limits;
use latchkey_host::Options;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CompileCommand {
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

impl CompileCommand {
    /// Compiles each step into the cache. Opens the store (so it needs the master key):
    /// entries are authenticated with the store's cache key.
    pub fn execute(self, store: &StoreArgs) -> Result<()> {
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            bail!("--memory-mib must be between 1 and 4096");
        }
        let limits = Limits {
            memory_bytes: self.memory_mib << 20,
            ..Limits::default()
        };
        let latchkey = store.open(Options {
            runtime: runtime_config(limits),
            cache_dir: Some(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| store.default_cache_dir()),
            ),
            ..Options::default()
        })?;
        for path in &self.steps {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the step {}", path.display()))?;
            if !bytes.starts_with(b"\0asm") {
                bail!("{} is not a WebAssembly component", path.display());
            }
            let started = Instant::now();
            let compiled = latchkey
                .compile(&bytes)
                .with_context(|| format!("compiling {}", path.display()))?;
            let how = match compiled.status {
                CacheStatus::Hit => "already cached".to_owned(),
                CacheStatus::Compiled => "compiled".to_owned(),
                CacheStatus::Recompiled(why) => format!("recompiled (old entry: {why})"),
                _ => "compiled".to_owned(),
            };
            println!(
                "{}: {how} in {:.1} ms -> {}",
                path.display(),
                started.elapsed().as_secs_f64() * 1000.0,
                compiled.entry.display()
            );
        }
        Ok(())
    }
}
