//! `latchkey compile` and the compiled-component cache `latchkey run` uses.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

mod harness;

use harness::{Cli, text};

fn latchkey(cli: &Cli, args: &[&str]) -> Output {
    cli.run(args, None)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn compile_warms_the_cache_beside_the_store_and_run_uses_it() {
    let cli = Cli::new();
    let dir = &cli.dir;
    let noop = latchkey_tests::guest("noop");
    let noop = noop.to_str().unwrap();

    let out = latchkey(&cli, &["compile", noop]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("compiled"), "{}", text(&out));
    let cache = dir.path().join("cache");
    let files = entries(&cache);
    assert_eq!(files.len(), 2, "{files:?}"); // <hash>.cwasm and <hash>.sha256
    let out = latchkey(&cli, &["compile", noop]);
    assert!(text(&out).contains("already cached"), "{}", text(&out));

    let out = latchkey(&cli, &["run", noop, "--input", r#"{"x":1}"#]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"x":1}"#);
    assert_eq!(entries(&cache), files);

    // A damaged entry is not trusted: the run recompiles, and the entry is rewritten.
    let artifact = files
        .iter()
        .find(|p| p.extension().unwrap() == "cwasm")
        .unwrap();
    let mut bytes = std::fs::read(artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(artifact, &bytes).unwrap();
    let out = latchkey(&cli, &["run", noop, "--input", r#"{"x":2}"#]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("checksum mismatch"), "{}", text(&out));
    assert_ne!(std::fs::read(artifact).unwrap(), bytes);
    let out = latchkey(&cli, &["compile", noop]);
    assert!(text(&out).contains("already cached"), "{}", text(&out));
}

#[test]
fn no_cache_and_cache_dir() {
    let cli = Cli::new();
    let dir = &cli.dir;
    let noop = latchkey_tests::guest("noop");
    let noop = noop.to_str().unwrap();
    let out = latchkey(&cli, &["run", noop, "--no-cache"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(entries(&dir.path().join("cache")).is_empty());
    let elsewhere = dir.path().join("elsewhere");
    let out = latchkey(
        &cli,
        &["run", noop, "--cache-dir", elsewhere.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(entries(&elsewhere).len(), 2);
    assert!(entries(&dir.path().join("cache")).is_empty());
}
