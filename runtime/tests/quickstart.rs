//! The README's quickstart, followed verbatim: the commands are read from README.md's fenced
//! `sh` blocks under "Two commands" and "Using it" (so a change to the README changes what
//! runs here, and a command that stops working fails here), and each is run as written by
//! bash, in a network namespace that has nothing but a loopback interface (`unshare -rn`):
//! whatever a command does, it can reach only servers on this machine.
//!
//! `bash tests/run.sh` is the suite this test belongs to and is not run again. The demo builds
//! with `cargo build --workspace --bins`, which resolves some dependencies' features
//! differently from `cargo test --workspace`: its first run in a target directory compiles
//! wasmtime and cranelift a second time (about 15 minutes on two busy cores); later runs
//! reuse that build. The "Using
//! it" block stores a key bound to a real API and runs a step that posts to it; without a
//! network that one run must fail at the destination (the name does not resolve), not at a
//! flag, a file or the key's resolution.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The commands of the fenced `sh` blocks in section `heading` of `readme`: a line ending in
/// `\` continues on the next; blank lines are skipped.
fn commands(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
    let section = &readme[start + heading.len() + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, l) if !l.trim().is_empty() => match l.strip_suffix('\\') {
                Some(head) => pending.push_str(head),
                None => {
                    pending.push_str(l);
                    out.push(std::mem::take(&mut pending));
                }
            },
            _ => {}
        }
    }
    assert!(pending.is_empty(), "a command in {heading:?} ends in \\");
    out
}

/// Runs `command` with bash in `dir` and a fresh network namespace (loopback only), with
/// the built `latchkey` first on PATH and every `LATCHKEY_*` variable of the caller removed.
fn run(command: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_latchkey")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = format!("ip link set lo up && set -o pipefail && {command}");
    let mut cmd = Command::new("unshare");
    cmd.args(["-rn", "bash", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        // Everything cargo needs is already downloaded: it must not try the network.
        .env("CARGO_NET_OFFLINE", "true");
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// Fails with a clear message where user namespaces are not allowed, rather than running
/// anything with the machine's network.
fn require_unshare() {
    let ok = Command::new("unshare")
        .args(["-rn", "ip", "link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test runs the README's commands in a network namespace of their own: it needs \
         `unshare -rn` (util-linux, user namespaces enabled) and `ip` (iproute2)"
    );
}

#[test]
fn the_main_job_runs_as_the_readme_gives_it() {
    require_unshare();
    let commands = commands(&readme(), "## Two commands");
    assert_eq!(
        commands.last().map(String::as_str),
        Some("bash tests/run.sh"),
        "the second command is no longer the test suite: decide here whether to run it"
    );
    let main_job = &commands[..commands.len() - 1];
    assert!(!main_job.is_empty(), "no main-job command in README.md");
    for command in main_job {
        let out = run(command, &root(), &[]);
        let all = text(&out);
        assert!(out.status.success(), "`{command}` failed: {all}");
        assert!(all.contains("== done"), "`{command}` did not finish: {all}");
    }
}

#[test]
fn using_it_works_as_the_readme_gives_it() {
    require_unshare();
    let commands = commands(&readme(), "## Using it");
    assert!(
        commands.iter().any(|c| c.starts_with("latchkey init")),
        "{commands:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    // A directory that looks like the clone (the commands name the examples by their path in
    // it, and the examples name the SDK by a relative path) but keeps `latchkey init`'s
    // `.latchkey/` out of it.
    for entry in std::fs::read_dir(root()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != ".latchkey" {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let value = "xoxb-quickstart-7c2e9f4a1b6d3058";
    let mut hosts: Vec<String> = Vec::new();
    for command in &commands {
        let out = run(command, dir.path(), &[("SLACK_TOKEN", value)]);
        let all = text(&out);
        assert!(!all.contains(value), "`{command}` printed the value: {all}");
        if let Some(rest) = command.split("--allow-host ").nth(1) {
            hosts.push(rest.split_whitespace().next().unwrap().to_owned());
        }
        if command.starts_with("latchkey run ") {
            // The step posts to the API the key is bound to, which this namespace cannot
            // reach: the run fails there, having loaded the step and resolved the key.
            assert!(
                !out.status.success(),
                "`{command}` reached the network: {all}"
            );
            assert_ne!(
                out.status.code(),
                Some(2),
                "`{command}` is not a valid command line: {all}"
            );
            // The error names the destination it could not reach.
            assert!(
                hosts.iter().any(|h| all.contains(h.as_str())),
                "`{command}` did not fail at its destination ({hosts:?}): {all}"
            );
            continue;
        }
        assert!(out.status.success(), "`{command}` failed: {all}");
        if command.starts_with("latchkey secret list") || command.starts_with("latchkey audit") {
            // The key stored above, and (in the audit trail) resolved for the run.
            assert!(all.contains("SLACK_TOKEN"), "`{command}`: {all}");
        }
    }
    assert!(!hosts.is_empty(), "no command stored a key: {commands:?}");
}
