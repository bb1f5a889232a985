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
//! - beside each artifact (`<name>.cwasm`) lies its MAC (`<name>.mac`): HMAC-SHA256 of the
//!   cache format, the entry's file name and the artifact's bytes, keyed with a key derived
//!   from the store's data key ([`crate::store::SecretStore::cache_key`]). An artifact is
//!   native code that runs as the operator: a plain checksum would let anyone who can write
//!   the directory run their code, the MAC needs the master key. An entry whose MAC does not
//!   verify (damaged, partly written, written by someone without the key, or another
//!   entry's artifact moved under this name) is never deserialized: it is deleted and the
//!   component compiled again, as is one that wasmtime refuses (incompatible, truncated);
//! - the directory must be private: a cache directory that is group- or world-writable or
//!   owned by another user (or whose parent others could write to without the sticky bit)
//!   is refused with [`CacheError::Insecure`], which names the command that fixes it;
//! - entries are written to a temporary file and renamed into place, so a reader never sees
//!   a half-written entry, and two processes warming the same entry do not corrupt it.
//!
//! Import checks are not part of the cache: [`crate::sandbox::Runtime::load_cached`] checks
//! every component it loads, cached or not.
//!
//! ```no_run
//! use latchkey_host::cache::{CacheKey, ComponentCache};
//! # fn demo(engine: &wasmtime::Engine, store: &latchkey_host::store::SecretStore) -> Result<(), Box<dyn std::error::Error>> {
//! let cache = ComponentCache::new(".latchkey/cache", engine, CacheKey::of(store));
//! let bytes = std::fs::read("slack_post.wasm")?;
//! let loaded = cache.load(engine, &bytes)?;
//! println!("{:?}", loaded.status); // Compiled the first time, Hit afterwards
//! # Ok(()) }
//! ```

use crate::wasmtime_error::WasmtimeError;
use crate::store::{PermissionError, SecretStore, check_private_dir, create_private_dir};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bumped when the layout of the cache changes.
const CACHE_FORMAT: &str = "latchkey-component-cache/v2";

/// The key that authenticates cache entries: derived from a store's data key
/// ([`crate::store::SecretStore::cache_key`]). Its bytes are never printed.
#[derive(Clone)]
pub struct CacheKey(zeroize::Zeroizing<[u8; 32]>);

impl CacheKey {
    /// The key that authenticates `store`'s cache entries (derived from its data key, so
    /// it survives master-key rotation).
    pub fn of(store: &SecretStore) -> Self {
        CacheKey(store.derived_key("cache"))
    }

    /// A random key for this process only (tests, benchmarks): entries written under it
    /// are recompiled by every other process.
    #[cfg(any(test, feature = "testing"))]
    pub fn random() -> std::io::Result<Self> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(CacheKey(k))
    }

    fn mac(&self, entry_name: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(CACHE_FORMAT.as_bytes());
        m.update(&(entry_name.len() as u64).to_be_bytes());
        m.update(entry_name.as_bytes());
        m.update(artifact);
        m
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Why the cache could not produce a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The bytes are not a valid component (compilation failed).
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(#[source] WasmtimeError),
    /// The cache directory could be changed by someone else than this user: refused.
    #[error("refusing to use the component cache: {0}")]
    Insecure(PermissionError),
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
    key: CacheKey,
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
    /// A cache in `dir` (created 0700 on first store) for components compiled by `engine`
    /// or by any engine with the same configuration, whose entries are authenticated with
    /// `key` (a store's [`crate::store::SecretStore::cache_key`]).
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine, key: CacheKey) -> Self {
        ComponentCache {
            dir: dir.into(),
            engine_fp: engine_fingerprint(engine),
            key,
        }
    }

    /// The cache directory.
    #[cfg(any(test, feature = "testing"))]
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
    ///
    /// Fails with [`CacheError::Insecure`] before reading anything if the directory (or
    /// its parent) is not private.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<Cached, CacheError> {
        self.load_noting(engine, bytes, || ())
    }

    /// [`ComponentCache::load`], calling `compiling` just before a component without a
    /// valid entry is compiled: seconds for a JavaScript or Python step, a wait a front end
    /// explains as it starts.
    pub fn load_noting(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compiling: impl FnOnce(),
    ) -> Result<Cached, CacheError> {
        check_private_dir(&self.dir).map_err(CacheError::Insecure)?;
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
                let _ = std::fs::remove_file(mac_path(&path));
                // An entry of the format before MACs.
                let _ = std::fs::remove_file(path.with_extension("sha256"));
                Some(why)
            }
        };
        compiling();
        let component = Component::new(engine, bytes).map_err(|e| CacheError::Compile(e.into()))?;
        let store_error = self.store(&path, &component).err();
        Ok(Cached {
            component,
            status: rejected.map_or(CacheStatus::Compiled, CacheStatus::Recompiled),
            store_error,
        })
    }

    /// `Ok(None)`: no entry. `Err(why)`: an entry that must not be used.
    fn try_read(&self, engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
        let artifact = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let expected = std::fs::read_to_string(mac_path(path))
            .map_err(|e| format!("its MAC file is unreadable: {e}"))?;
        let expected = hex::decode(expected.trim()).unwrap_or_default();
        if self
            .key
            .mac(&entry_name(path), &artifact)
            .verify_slice(&expected)
            .is_err()
        {
            return Err(
                "checksum mismatch: its MAC does not verify under this store's key (damaged, partly written, or not written by this store)"
                    .into(),
            );
        }
        deserialize_checked(engine, &artifact)
            .map(Some)
            .map_err(|e| format!("wasmtime refused it: {e:#}"))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), CacheError> {
        let artifact = component
            .serialize()
            .map_err(|e| CacheError::Compile(e.context("serializing").into()))?;
        create_private_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        check_private_dir(&self.dir).map_err(CacheError::Insecure)?;
        let mac = hex::encode(
            self.key
                .mac(&entry_name(path), &artifact)
                .finalize()
                .into_bytes(),
        );
        // The MAC first: a crash between the two renames leaves an artifact without a
        // matching MAC at worst, which is rejected and rebuilt.
        write_atomically(&mac_path(path), mac.as_bytes())?;
        write_atomically(path, &artifact)
    }
}

fn mac_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("mac")
}

/// The entry's file name, bound into its MAC so that one entry's artifact cannot be
/// moved under another entry's name.
fn entry_name(artifact: &Path) -> String {
    artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Deserializes an artifact read from our cache, after its MAC verified.
#[allow(unsafe_code)]
fn deserialize_checked(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` is unsafe because wasmtime maps the bytes as native
    // code and trusts them to be its own output for a compatible engine; it does not
    // verify them. Here:
    // - the bytes come from the cache directory, which must belong to the operator and be
    //   writable by nobody else (checked before every load; created 0700), output of
    //   `Component::serialize` by an engine whose fingerprint (target, flags, tunables,
    //   features, wasmtime version) is part of the entry's name;
    // - the bytes are read into memory and their HMAC-SHA256 (keyed from the store's data
    //   key, over the entry's name and the bytes) is verified before this call, so a
    //   truncated, damaged or planted entry, or another entry's artifact, never gets here,
    //   and the file changing afterwards cannot affect the copy we deserialize (unlike
    //   `deserialize_file`, which maps the file itself);
    // - wasmtime still checks the artifact's header, version and engine compatibility and
    //   returns an error (the entry is then deleted and recompiled) rather than trusting
    //   an incompatible one.
    // Producing a valid MAC needs the master key (it unwraps the data key the MAC key is
    // derived from): writing the cache directory is not enough to run code as the operator.
    unsafe { Component::deserialize(engine, artifact) }
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

    fn key() -> CacheKey {
        CacheKey::random().expect("rng")
    }

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        Engine::new(&c).expect("engine")
    }

    #[test]
    fn accepts_own_entry_on_second_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path().join("c"), &e, key());
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
        let cache = ComponentCache::new(dir.path(), &e, key());
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
    fn rejects_entry_wasmtime_refuses_even_with_a_valid_mac() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e, key());
        let path = cache.entry_path(EMPTY_COMPONENT);
        let junk = b"not an artifact".to_vec();
        std::fs::write(&path, &junk).expect("write");
        let mac = cache
            .key
            .mac(&entry_name(&path), &junk)
            .finalize()
            .into_bytes();
        std::fs::write(mac_path(&path), hex::encode(mac)).expect("w");
        let got = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert!(
            matches!(&got.status, CacheStatus::Recompiled(why) if why.contains("wasmtime")),
            "{:?}",
            got.status
        );
    }

    #[test]
    fn rejects_missing_mac() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e, key());
        cache.load(&e, EMPTY_COMPONENT).expect("load");
        std::fs::remove_file(mac_path(&cache.entry_path(EMPTY_COMPONENT))).expect("rm");
        assert!(matches!(
            cache.load(&e, EMPTY_COMPONENT).expect("load").status,
            CacheStatus::Recompiled(_)
        ));
    }

    /// Someone who can write the directory but has no key: a planted artifact with a
    /// plain SHA-256 beside it (the old format) or with a MAC under another key is never
    /// deserialized; it is deleted and recompiled.
    #[test]
    fn rejects_an_entry_planted_without_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e, key());
        let path = cache.entry_path(EMPTY_COMPONENT);
        // A genuine artifact, written by a cache with another key (another store).
        let other = ComponentCache::new(dir.path(), &e, key());
        other.load(&e, EMPTY_COMPONENT).expect("load");
        let got = cache.load(&e, EMPTY_COMPONENT).expect("load");
        assert!(
            matches!(&got.status, CacheStatus::Recompiled(why) if why.contains("MAC does not verify")),
            "{:?}",
            got.status
        );
        // A plain SHA-256 where the MAC belongs.
        let artifact = std::fs::read(&path).expect("read");
        std::fs::write(mac_path(&path), hex::encode(Sha256::digest(&artifact))).expect("w");
        assert!(matches!(
            cache.load(&e, EMPTY_COMPONENT).expect("load").status,
            CacheStatus::Recompiled(_)
        ));
        assert_eq!(
            cache.load(&e, EMPTY_COMPONENT).expect("load").status,
            CacheStatus::Hit
        );
    }

    /// One valid entry's artifact and MAC copied under another entry's name do not load.
    #[test]
    fn rejects_an_entry_moved_under_another_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e, key());
        cache.load(&e, EMPTY_COMPONENT).expect("load");
        let from = cache.entry_path(EMPTY_COMPONENT);
        let other_bytes = b"\0asm\x0d\0\x01\0\0\x00";
        let to = cache.entry_path(other_bytes);
        std::fs::copy(&from, &to).expect("copy");
        std::fs::copy(mac_path(&from), mac_path(&to)).expect("copy");
        assert!(cache.try_read(&e, &to).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_cache_directory_others_can_write_or_another_user_owns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let c = dir.path().join("c");
        create_private_dir(&c).expect("mkdir");
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let cache = ComponentCache::new(&c, &e, key());
        let err = cache.load(&e, EMPTY_COMPONENT).err().expect("refused");
        let msg = err.to_string();
        assert!(msg.contains(&format!("chmod 700 {}", c.display())), "{msg}");
        assert!(std::fs::read_dir(&c).expect("ls").next().is_none());
        // A parent others can write to (no sticky bit) is refused too.
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let msg = cache
            .load(&e, EMPTY_COMPONENT)
            .err()
            .expect("refused")
            .to_string();
        assert!(msg.contains("chmod go-w"), "{msg}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert!(cache.load(&e, EMPTY_COMPONENT).is_ok());
        // Another user's directory (only root can give one away).
        if crate::store::effective_uid() == Some(0) {
            std::os::unix::fs::chown(&c, Some(4242), None).expect("chown");
            let msg = cache
                .load(&e, EMPTY_COMPONENT)
                .err()
                .expect("refused")
                .to_string();
            assert!(msg.contains("owned by user id 4242"), "{msg}");
        }
    }

    #[test]
    fn cache_key_debug_shows_no_bytes() {
        assert_eq!(format!("{:?}", key()), "CacheKey(..)");
    }

    #[test]
    fn different_engine_configuration_uses_a_different_entry() {
        let e1 = engine();
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        let e2 = Engine::new(&c).expect("engine");
        let dir = tempfile::tempdir().expect("tmp");
        let a = ComponentCache::new(dir.path(), &e1, key()).entry_path(EMPTY_COMPONENT);
        let b = ComponentCache::new(dir.path(), &e2, key()).entry_path(EMPTY_COMPONENT);
        assert_ne!(a, b);
        assert_eq!(engine_fingerprint(&e1), engine_fingerprint(&engine()));
    }

    #[test]
    fn rejects_invalid_component() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = engine();
        let cache = ComponentCache::new(dir.path(), &e, key());
        assert!(matches!(
            cache.load(&e, b"\0asm garbage"),
            Err(CacheError::Compile(_))
        ));
    }
}
