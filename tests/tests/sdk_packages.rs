//! The JavaScript and Python SDKs as packages, used the way a step author outside the
//! repository uses them: `npm pack` of `guest-sdk/js` installed in an empty npm project, and
//! the wheel of `guest-sdk/python` installed in a fresh venv. Each then type-checks (npm) and
//! builds the Slack example, and the component runs against a fake Slack.
//!
//! Packing works on a copy of the repository's layout (the SDK's folder without its
//! `node_modules`, and `wit/`), so that its hooks, which write into the package's folder, never
//! touch the clone that the other suites build from. Installs are offline: npm prefers its
//! cache, filled by `tests/setup/40-js.sh`, and pip reads the wheels of
//! `tests/setup/41-python.sh` only.
#![allow(clippy::unwrap_used)]

use latchkey_tests::guest_suite;
use latchkey_tests::steps::root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `command`, panicking with its output unless it succeeds.
fn ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies `from` (a file or a folder, symlinks followed) to `to`.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    ok(Command::new("cp").arg("-RL").arg(from).arg(to));
}

/// `npm pack` of the JavaScript SDK, in a copy of the repository's layout under `scratch`:
/// the tarball and the paths it holds.
fn pack_js_sdk(scratch: &Path) -> (PathBuf, Vec<String>) {
    let sdk = root().join("guest-sdk/js");
    let copy_root = scratch.join("clone");
    let package = copy_root.join("guest-sdk/js");
    for entry in std::fs::read_dir(&sdk).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // What a clone has: no installed dependencies, no leftover copy of the WIT.
        if name != "node_modules" && name != "wit" {
            copy(&entry.path(), &package.join(&name));
        }
    }
    copy(&root().join("wit"), &copy_root.join("wit"));
    let out = ok(Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(scratch)
        .current_dir(&package));
    let packed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = packed[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !package.join("wit").exists(),
        "postpack left its copy of the WIT in the package's folder"
    );
    (scratch.join(packed[0]["filename"].as_str().unwrap()), files)
}

#[test]
fn npm_pack_ships_the_wit_world_and_the_readme() {
    let scratch = tempfile::tempdir().unwrap();
    let (tarball, files) = pack_js_sdk(scratch.path());
    for want in [
        "README.md",
        "bin/latchkey-build.js",
        "src/index.js",
        "src/index.d.ts",
        "wit/world.wit",
        "wit/credentials.wit",
        "wit/http.wit",
        "wit/log.wit",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in {files:?}");
    }
    assert!(
        !files.iter().any(|f| f.starts_with("scripts/")),
        "{files:?}"
    );
    // The WIT it ships is the one the SDK imports: 0.2.0, which has signatures.
    let unpacked = scratch.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    ok(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked));
    let http = std::fs::read_to_string(unpacked.join("package/wit/http.wit")).unwrap();
    assert!(
        http.starts_with("package latchkey:workflow@0.2.0;"),
        "{http}"
    );
    assert!(http.contains("signature(signature)"), "{http}");
    let sdk = std::fs::read_to_string(unpacked.join("package/src/index.js")).unwrap();
    assert!(sdk.contains("'latchkey:workflow/http@0.2.0'"));
}

#[test]
fn latchkey_build_without_its_dependencies_says_how_to_install_them() {
    let scratch = tempfile::tempdir().unwrap();
    let (tarball, _) = pack_js_sdk(scratch.path());
    ok(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(scratch.path()));
    let out = Command::new("node")
        .arg(scratch.path().join("package/bin/latchkey-build.js"))
        .arg(root().join("examples/ts/slack-post/step.ts"))
        .arg("-o")
        .arg(scratch.path().join("step.wasm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("latchkey-build: "), "{stderr}");
    assert!(stderr.contains("is not installed"), "{stderr}");
    assert!(
        stderr.contains("`npm ci`") && stderr.contains("`npm install`"),
        "{stderr}"
    );
    // A sentence, not Node's stack.
    assert!(!stderr.contains("ERR_MODULE_NOT_FOUND"), "{stderr}");
    assert!(!stderr.contains("    at "), "{stderr}");
    assert!(!scratch.path().join("step.wasm").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_packed_js_sdk_in_an_empty_npm_project_checks_types_and_builds_a_step_that_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let (tarball, _) = pack_js_sdk(scratch.path());
    let project = scratch.path().join("my-step");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "my-step", "version": "1.0.0", "private": true, "type": "module"}"#,
    )
    .unwrap();
    ok(Command::new("npm")
        .args(["install", "--prefer-offline", "--no-audit", "--no-fund"])
        .arg(&tarball)
        .current_dir(&project));
    let example = root().join("examples/ts/slack-post");
    copy(
        &example.join("tsconfig.json"),
        &project.join("tsconfig.json"),
    );
    let step = std::fs::read_to_string(example.join("step.ts")).unwrap();

    // `npx tsc` with the example's tsconfig checks the step against the SDK's types (tsc
    // comes with the SDK's toolchain: componentize-js depends on it): a wrong type is caught...
    let tsc = || {
        Command::new("npx")
            .args(["--no", "tsc"])
            .current_dir(&project)
            .output()
            .unwrap()
    };
    let wrong = step.replace("credential('SLACK_TOKEN')", "credential(42)");
    assert_ne!(wrong, step);
    std::fs::write(project.join("step.ts"), wrong).unwrap();
    let out = tsc();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("step.ts") && said.contains("TS2345"),
        "{said}"
    );
    // ...and the example passes.
    std::fs::write(project.join("step.ts"), &step).unwrap();
    let out = tsc();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    ok(Command::new("npx")
        .args(["--no", "latchkey-build", "step.ts", "-o", "step.wasm"])
        .current_dir(&project));
    guest_suite::the_slack_example_posts_with_the_bound_token(&project.join("step.wasm")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_wheel_in_a_fresh_venv_builds_a_step_that_runs() {
    let wheels = root().join("target/test-tools/py-wheels");
    assert!(
        wheels.is_dir(),
        "no wheels in {}: run `bash tests/setup/41-python.sh`",
        wheels.display()
    );
    let scratch = tempfile::tempdir().unwrap();
    // The SDK's folder as a clone has it (the WIT symlink followed).
    let sdk = scratch.path().join("guest-sdk-python");
    copy(&root().join("guest-sdk/python"), &sdk);
    let venv = scratch.path().join("venv");
    ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let pip = |args: &[&str]| {
        let mut c = Command::new(venv.join("bin/pip"));
        c.args(args)
            .args(["--quiet", "--disable-pip-version-check", "--no-index"])
            .arg("--find-links")
            .arg(&wheels);
        c
    };
    let dist = scratch.path().join("dist");
    ok(pip(&["wheel", "--no-deps"])
        .arg(format!("--wheel-dir={}", dist.display()))
        .arg(&sdk));
    let wheel = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("latchkey_sdk-0.2.0-"), "{name}");
    let listing = ok(Command::new("python3")
        .args(["-m", "zipfile", "-l"])
        .arg(&wheel));
    let listing = String::from_utf8_lossy(&listing.stdout);
    for want in ["latchkey_sdk/wit/world.wit", "latchkey_sdk/wit/http.wit"] {
        assert!(
            listing.contains(want),
            "{want} not in the wheel:\n{listing}"
        );
    }
    // Installing the wheel brings the pinned componentize-py with it.
    ok(pip(&["install"]).arg(&wheel));

    let project = scratch.path().join("my-step");
    copy(
        &root().join("examples/python/slack-post/app.py"),
        &project.join("app.py"),
    );
    ok(Command::new(venv.join("bin/python"))
        .args(["-m", "latchkey_sdk", "build", "app.py", "-o", "app.wasm"])
        .env_remove("PYTHONPATH")
        .current_dir(&project));
    guest_suite::the_slack_example_posts_with_the_bound_token(&project.join("app.wasm")).await;
}
