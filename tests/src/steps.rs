//! Steps written in JavaScript/TypeScript and Python, built by the SDKs' own one-command
//! builds (`latchkey-build`, `python -m latchkey_sdk build`), as an author would.
//!
//! Building and compiling such a component is slow (seconds to build, tens of seconds to
//! compile in a debug build), so each is done once: a built component is kept under
//! `target/guests/js/` or `target/guests/python/` by a hash of everything that goes into it
//! (the step, the SDK, its lockfile, the WIT), and a compiled one goes through the component cache, once per test
//! process, whatever the number of tests and runtimes that load it.

use latchkey_host::cache::{CacheKey, ComponentCache};
use latchkey_host::sandbox::{LoadError, Runtime, Step};
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/guests/`, beside the Rust guests.
fn guests_dir() -> PathBuf {
    PathBuf::from(crate::GUEST_DIR)
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn hash_files(h: &mut DefaultHasher, paths: &[PathBuf]) {
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            hash_files(h, &entries);
        } else if let Ok(bytes) = std::fs::read(p) {
            h.write(p.to_string_lossy().as_bytes());
            h.write(&bytes);
        }
    }
}

/// Serialises builds within a process (tests run in parallel; one build at a time is
/// enough work for the machine).
static BUILD: Mutex<()> = Mutex::new(());

/// The component built from `tests/guests/js/<name>.ts`; see [`js_file`].
pub fn js_step(name: &str) -> PathBuf {
    js_file(&root().join(format!("tests/guests/js/{name}.ts")))
}

/// The component built from the JavaScript or TypeScript step `source` with
/// `latchkey-build`. Panics, naming the setup script, if the SDK's toolchain is not installed.
pub fn js_file(source: &Path) -> PathBuf {
    let root = root();
    let sdk = root.join("guest-sdk/js");
    let source = source.to_path_buf();
    assert!(
        sdk.join("node_modules/@bytecodealliance/componentize-js")
            .is_dir()
            && sdk.join("node_modules/esbuild").is_dir(),
        "the JavaScript toolchain is not installed in guest-sdk/js/node_modules: run `bash tests/setup/40-js.sh`"
    );
    let mut h = DefaultHasher::new();
    hash_files(
        &mut h,
        &[
            source.clone(),
            sdk.join("src"),
            sdk.join("bin"),
            sdk.join("package-lock.json"),
            root.join("wit"),
        ],
    );
    let out_dir = guests_dir().join("js");
    let stem = source.file_stem().unwrap().to_string_lossy();
    let out = out_dir.join(format!("{stem}-{:016x}.wasm", h.finish()));
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let partial = out.with_extension(format!("{}.partial.wasm", std::process::id()));
    let output = Command::new("node")
        .arg(sdk.join("bin/latchkey-build.js"))
        .arg(&source)
        .arg("-o")
        .arg(&partial)
        .output()
        .expect("running node (is Node.js installed? `bash tests/setup/40-js.sh`)");
    assert!(
        output.status.success(),
        "latchkey-build {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &out).unwrap();
    out
}

/// The component built from `tests/guests/python/<name>.py`; see [`py_file`].
pub fn py_step(name: &str) -> PathBuf {
    py_file(&root().join(format!("tests/guests/python/{name}.py")))
}

/// The component built from the Python step `source` with `python -m latchkey_sdk build`
/// (componentize-py from the venv of `tests/setup/41-python.sh`). Panics, naming the setup
/// script, if the toolchain is not installed.
pub fn py_file(source: &Path) -> PathBuf {
    let root = root();
    let sdk = root.join("guest-sdk/python");
    let python = root.join("target/test-tools/py-venv/bin/python");
    assert!(
        root.join("target/test-tools/py-venv/bin/componentize-py")
            .exists(),
        "the Python toolchain is not installed in target/test-tools/py-venv: run `bash tests/setup/41-python.sh`"
    );
    let mut h = DefaultHasher::new();
    hash_files(
        &mut h,
        &[
            source.to_path_buf(),
            sdk.join("latchkey_sdk"),
            sdk.join("pyproject.toml"),
            root.join("wit"),
        ],
    );
    let out_dir = guests_dir().join("python");
    let stem = source.file_stem().unwrap().to_string_lossy();
    let out = out_dir.join(format!("{stem}-{:016x}.wasm", h.finish()));
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let partial = out.with_extension(format!("{}.partial.wasm", std::process::id()));
    let output = Command::new(&python)
        .args(["-m", "latchkey_sdk", "build"])
        .arg(source)
        .arg("-o")
        .arg(&partial)
        .env("PYTHONPATH", &sdk)
        .output()
        .expect("running the Python toolchain (`bash tests/setup/41-python.sh`)");
    assert!(
        output.status.success(),
        "python -m latchkey_sdk build {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &out).unwrap();
    out
}

/// The compiled-component cache of this test process: a random key, so entries are good
/// for this process only, in a directory shared by every runtime of the process.
fn cache_for(rt: &Runtime) -> ComponentCache {
    static KEY: OnceLock<CacheKey> = OnceLock::new();
    let key = KEY.get_or_init(|| CacheKey::random().unwrap()).clone();
    ComponentCache::new(guests_dir().join("compiled"), rt.engine(), key)
}

/// Loads the component at `path` into `rt`, compiling it at most once per process.
pub fn load_once(rt: &Runtime, path: &Path) -> Result<Step, LoadError> {
    static LOAD: Mutex<()> = Mutex::new(());
    let bytes = std::fs::read(path).unwrap();
    // The first load compiles and stores; the others wait for it, then hit the cache.
    let _one_at_a_time = LOAD.lock().unwrap_or_else(|e| e.into_inner());
    rt.load_cached(&bytes, &cache_for(rt)).map(|(step, _)| step)
}
