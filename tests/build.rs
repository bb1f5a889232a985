//! Builds the guest components the tests run: the example workflows (`examples/`) and the
//! probe and hostile guests (`tests/guests/`), for wasm32-wasip2 in release mode. Nothing
//! built is committed; the tests find the `.wasm` files through `LATCHKEY_GUEST_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if p.is_dir() {
            watch(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    for dir in ["examples", "tests/guests", "guest-sdk", "wit"] {
        watch(&root.join(dir));
    }
    println!("cargo:rerun-if-changed=build.rs");

    // <target>/<profile>/build/latchkey-tests-*/out → <target>/guests, shared by every
    // profile and stable across rebuilds of this script.
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.ancestors().nth(4).expect("target dir").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for manifest in ["examples/Cargo.toml", "tests/guests/Cargo.toml"] {
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            // Flags meant for the host build (and clippy's wrapper) must not reach the guests.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("running cargo to build the guests");
        if !status.success() {
            panic!(
                "building the guests in {manifest} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
            );
        }
    }
    println!(
        "cargo:rustc-env=LATCHKEY_GUEST_DIR={}",
        target_dir.join("wasm32-wasip2").join("release").display()
    );
}
