//! The compiled-component cache: compile a component once, load it in about a millisecond
//! afterwards.
//!
//! Compiling a component with cranelift takes tens of milliseconds (release) to seconds
//! (debug). [`ComponentCache`] keeps the output of [`Component::serialize`] on disk, one
//! entry per component and engine configuration:
//!
//! - the entry's name is the SHA-256 of the component's bytes and of the engine's
//!   fingerprint ([`engine_fingerprint`]: target, cranelift flags, tunables, wasm features,
//!   wasmtime's version, this crate's version), so a changed component or a changed engine
//!   configuration never finds an old entry;
//! - beside each artifact (`<name>.cwasm`) lies the SHA-256 of its bytes (`<name>.sha256`);
//!   an artifact whose checksum does not match, or that wasmtime refuses to deserialize
//!   (incompatible, truncated), is deleted and the component is compiled again;
//! - entries are written to a temporary file and renamed into place, so a reader never sees
//!   a half-written entry, and two processes warming the same entry do not corrupt it.
//!
//! Import checks are not part of the cache: [`crate::sandbox::Runtime::load_cached`] checks
//! every component it loads, cached or not.
//!
//! ```no_run
//! use latchkey_host::cache::ComponentCache;
//! # fn demo(engine: &wasmtime::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! let cache = ComponentCache::new(".latchkey/cache", engine);
//! let bytes = std::fs::read("slack_post.wasm")?;
//! let loaded = cache.load(engine, &bytes)?;
//! println!("{:?}", loaded.status); // Compiled the first time, Hit afterwards
//! # Ok(()) }
//! ```

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bumped when the layout of the cache changes.
const CACHE_FORMAT: &str = "latchkey-component-cache/v1";

/// Why the cache could not produce a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The bytes are not a valid component (compilation failed).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// Reading or writing the cache directory failed.
    #[error("component cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// How a component was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheStatus {
    /// Loaded from a valid cache entry.
    Hit,
    /// No entry: compiled (and stored, unless [`Cached::store_error`] says otherwise).
    Compiled,
    /// An entry existed but was rejected (the reason says why); it was deleted, and the
    /// component compiled and stored again.
    Recompiled(String),
}

/// A component from the cache.
pub struct Cached {
    /// The compiled component.
    pub component: Component,
    /// Hit, or why it was compiled.
    pub status: CacheStatus,
    /// Storing a freshly compiled entry failed (read-only directory, disk full…). The
    /// component is still good; only the next load will compile again.
    pub store_error: Option<CacheError>,
}

/// An on-disk cache of compiled components for engines of one configuration.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    engine_fp: [u8; 32],
}

/// Feeds [`Hash`] output into SHA-256, so the fingerprint is stable across processes
/// (std's `DefaultHasher` is randomly keyed per process… and per Rust version).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Not used: the digest is taken from the inner state.
        0
    }
}

/// The SHA-256 fingerprint of everything in `engine`'s configuration that decides whether a
/// compiled artifact is usable: wasmtime's [`Engine::precompile_compatibility_hash`]
/// (target triple, cranelift and ISA flags, tunables, wasm features, wasmtime's version),
/// plus this crate's version and the cache format.
pub fn engine_fingerprint(engine: &Engine) -> [u8; 32] {
    let mut h = Sha256Hasher(Sha256::new());
    CACHE_FORMAT.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    std::env::consts::ARCH.hash(&mut h);
    std::env::consts::OS.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().into()
}

fn io_err(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ComponentCache {
    /// A cache in `dir` (created on first store) for components compiled by `engine` or by
    /// any engine with the same configuration.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        ComponentCache {
            dir: dir.into(),
            engine_fp: engine_fingerprint(engine),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the artifact `bytes` compile to (it may not exist yet).
    pub fn entry_path(&self, bytes: &[u8]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT.as_bytes());
        h.update(self.engine_fp);
        h.update(Sha256::digest(bytes));
        self.dir
            .join(format!("{}.cwasm", hex::encode(h.finalize())))
    }

    /// The component `bytes` compile to with `engine`: from the cache if a valid entry
    /// exists, otherwise compiled and stored. `engine` must have the configuration the cache
    /// was created for (a different one only costs a recompilation: wasmtime refuses the
    /// artifact and the entry is replaced).
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<Cached, CacheError> {
        let path = self.entry_path(bytes);
        let rejected = match self.try_read(engine, &path) {
            Ok(Some(component)) => {
                return Ok(Cached {
                    component,
                    status: CacheStatus::Hit,
                    store_error: None,
                });
            }
            Ok(None) => None,
            Err(why) => {
                tracing::warn!(entry = %path.display(), reason = %why, "discarding a compiled-component cache entry");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(checksum_path(&path));
                Some(why)
            }
        };
        let component =
            Component::new(engine, bytes).map_err(|e| CacheError::Compile(format!("{e:#}")))?;
        let store_error = self.store(&path, &component).err();
        Ok(Cached {
            component,
            status: rejected.map_or(CacheStatus::Compiled, CacheStatus::Recompiled),
            store_error,
        })
    }

    /// Compiles `bytes` and writes the entry even if one exists (`latchkey compile`).
    /// Returns the entry's path.
    pub fn compile_and_store(&self, engine: &Engine, bytes: &[u8]) -> Result<PathBuf, CacheError> {
        let cached = self.load(engine, bytes)?;
        if let Some(e) = cached.store_error {
            return Err(e);
        }
        Ok(self.entry_path(bytes))
    }

    /// `Ok(None)`: no entry. `Err(why)`: an entry that must not be used.
    fn try_read(&self, engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
        let artifact = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let expected = std::fs::read_to_string(checksum_path(path))
            .map_err(|e| format!("its checksum file is unreadable: {e}"))?;
        if hex::encode(Sha256::digest(&artifact)) != expected.trim() {
            return Err("checksum mismatch (damaged or partly written)".into());
        }
        deserialize_checked(engine, &artifact)
            .map(Some)
            .map_err(|e| format!("wasmtime refused it: {e:#}"))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), CacheError> {
        let artifact = component
            .serialize()
            .map_err(|e| CacheError::Compile(format!("serializing: {e:#}")))?;
        create_private_dir(&self.dir)?;
        let sum = hex::encode(Sha256::digest(&artifact));
        // The checksum first: a crash between the two renames leaves an artifact without a
        // matching checksum at worst, which is rejected and rebuilt.
        write_atomically(&checksum_path(path), sum.as_bytes())?;
        write_atomically(path, &artifact)
    }
}

fn checksum_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("sha256")
}

/// Deserializes an artifact read from our cache, after its checksum matched.
#[allow(unsafe_code)]
fn deserialize_checked(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` is unsafe because wasmtime maps the bytes as native
    // code and trusts them to be its own output for a compatible engine; it does not
    // verify them. Here:
    // - the bytes come from the cache directory, which belongs to the operator (created
    //   0700) and into which only this module writes, output of `Component::serialize` by
    //   an engine whose fingerprint (target, flags, tunables, features, wasmtime version)
    //   is part of the entry's name;
    // - the bytes are read into memory and checked against the SHA-256 written beside them
    //   before this call, so a truncated, partly written or damaged entry never gets here,
    //   and the file changing afterwards cannot affect the copy we deserialize (unlike
    //   `deserialize_file`, which maps the file itself);
    // - wasmtime still checks the artifact's header, version and engine compatibility and
    //   returns an error (the entry is then deleted and recompiled) rather than trusting
    //   an incompatible one.
    // The checksum is not a signature: someone who can write the operator's cache directory
    // can run native code as the operator, exactly as they could by replacing the
    // `latchkey` binary. The cache directory must be as private as the binary.
    unsafe { Component::deserialize(engine, artifact) }
}

fn create_private_dir(dir: &Path) -> Result<(), CacheError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_err(dir, e))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        hex::encode(r)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is: `(component)`.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        Engine::new(&c).expect("engine")
    }

    #[test]
    fn accepts_own_entry_on_second_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path().join("c"), &e);
        let first = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert_eq!(first.status, CacheStatus::Compiled);
        assert!(first.store_error.is_none());
        let second = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert_eq!(second.status, CacheStatus::Hit);
    }

    #[test]
    fn rejects_damaged_entry_and_recompiles() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e);
        cache.load(&e, EMPTY_COMPONENT).expect("load");
        let path = cache.entry_path(EMPTY_COMPONENT);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let again = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert!(
            matches!(&again.status, CacheStatus::Recompiled(why) if why.contains("checksum")),
            "{:?}",
            again.status
        );
        assert_eq!(
            cache.load(&e, EMPTY_COMPONENT).expect("load").status,
            CacheStatus::Hit
        );
    }

    #[test]
    fn rejects_entry_wasmtime_refuses_even_with_matching_checksum() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e);
        let path = cache.entry_path(EMPTY_COMPONENT);
        let junk = b"not an artifact".to_vec();
        std::fs::write(&path, &junk).expect("write");
        std::fs::write(checksum_path(&path), hex::encode(Sha256::digest(&junk))).expect("w");
        let got = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert!(
            matches!(&got.status, CacheStatus::Recompiled(why) if why.contains("wasmtime")),
            "{:?}",
            got.status
        );
    }

    #[test]
    fn rejects_missing_checksum() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e);
        cache.load(&e, EMPTY_COMPONENT).expect("load");
        std::fs::remove_file(checksum_path(&cache.entry_path(EMPTY_COMPONENT))).expect("rm");
        assert!(matches!(
            cache.load(&e, EMPTY_COMPONENT).expect("load").status,
            CacheStatus::Recompiled(_)
        ));
    }

    #[test]
    fn different_engine_configuration_uses_a_different_entry() {
        let e1 = engine();
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        let e2 = Engine::new(&c).expect("engine");
        let dir = tempfile::tempdir().expect("tmp");
        let a = ComponentCache::new(dir.path(), &e1).entry_path(EMPTY_COMPONENT);
        let b = ComponentCache::new(dir.path(), &e2).entry_path(EMPTY_COMPONENT);
        assert_ne!(a, b);
        assert_eq!(engine_fingerprint(&e1), engine_fingerprint(&engine()));
    }

    #[test]
    fn rejects_invalid_component() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e);
        assert!(matches!(
            cache.load(&e, b"\0asm garbage"),
            Err(CacheError::Compile(_))
        ));
    }
}
