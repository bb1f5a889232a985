//! `latchkey check workflow.toml`: what a run would load and resolve, printed per step.

use crate::common::{CacheArgs, StoreArgs, invoking_user, operator, os_user, runtime_config};
use crate::json::{self, JsonArgs};
use crate::remote::{Remote, encode};
use anyhow::Result;
use clap::Args;
use latchkey_host::Limits;
use latchkey_host::Options;
use latchkey_host::{CheckReport, KeyCheck, StepCheck, Workflow};
use latchkey_server::api::CheckView;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CheckCommand {
    /// The workflow manifest (`workflow.toml`).
    pub manifest: PathBuf,
    /// Invoking user to check for (resolution tiers 1 and 2). Default: the OS user.
    #[arg(long, env = "LATCHKEY_USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub json: JsonArgs,
}

impl CheckCommand {
    pub fn execute(self, store: &StoreArgs, server: Option<&Remote>) -> Result<ExitCode> {
        if let Some(r) = server {
            return self.check_remote(r);
        }
        let wf = Workflow::load(&self.manifest)?;
        let user = invoking_user(self.user.as_ref())?;
        let latchkey = store.open(Options {
            runtime: runtime_config(Limits::default()),
            cache_dir: CacheArgs::default().dir(store),
            ..Options::default()
        })?;
        let tokio = crate::common::async_runtime()?;
        let _guard = tokio.enter();
        if self.json.json {
            let report = latchkey.check(&operator(&os_user())?, &wf, &user)?;
            let view = view(&report);
            json::document(&view)?;
            return Ok(exit_code(view.problems));
        }
        let order: Vec<&str> = wf.order.iter().map(|t| t.name()).collect();
        println!(
            "workflow {} in workspace {}, builder {}, user {user}; order: {}",
            wf.name,
            wf.workspace,
            wf.builder.as_deref().unwrap_or("(none)"),
            order.join(" > ")
        );
        let report = latchkey.check(&operator(&os_user())?, &wf, &user)?;
        let total = report.steps.len();
        for (i, step) in report.steps.iter().enumerate() {
            print_step(i + 1, total, step);
        }
        let problems = report.problems();
        if problems > 0 {
            eprintln!(
                "error: {problems} problem(s) in {}; the workflow would fail",
                self.manifest.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("ok: every component loads and every declared key resolves");
        Ok(ExitCode::SUCCESS)
    }
}

/// 0, or 1 when the workflow would fail.
fn exit_code(problems: usize) -> ExitCode {
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The local check in the form `POST /v1/workflows/{name}/check` answers.
fn view(report: &CheckReport) -> CheckView {
    CheckView::of(report, |e| crate::report::chain(e))
}

fn print_step(n: usize, total: usize, step: &StepCheck) {
    println!(
        "step {n}/{total} {} ({}), integrations: {}",
        step.name,
        step.component.display(),
        step.integrations.join(", ")
    );
    match &step.load {
        Ok(()) => println!("  component: ok"),
        Err(e) => println!("  component: ERROR: {}", crate::report::chain(e)),
    }
    let Some(keys) = &step.keys else {
        println!(
            "  keys: not declared (no allowlist), nothing to check; add `allow` to declare them"
        );
        return;
    };
    if keys.is_empty() {
        println!("  keys: none");
    }
    for k in keys {
        print_key(k);
    }
}

fn print_key(k: &KeyCheck) {
    let pinned = k
        .pinned
        .as_ref()
        .map(|tiers| {
            let names: Vec<&str> = tiers.iter().map(|t| t.name()).collect();
            format!(", pinned to {}", names.join(" > "))
        })
        .unwrap_or_default();
    match &k.resolution {
        Ok(r) => println!(
            "  {}: ok, tier {} (scope {}, integration {}, version {}{pinned})",
            k.key, r.tier, r.meta.scope, r.meta.integration, r.meta.version
        ),
        Err(e) => println!("  {}: MISSING: {e}", k.key),
    }
}

impl CheckCommand {
    /// The registered workflow of the manifest's name, checked on the server for the token's
    /// principal.
    fn check_remote(self, r: &Remote) -> Result<ExitCode> {
        if self.user.is_some() {
            anyhow::bail!(
                "--user does not apply with --server: the check is for the token's principal"
            );
        }
        let wf = Workflow::load(&self.manifest)?;
        let report: latchkey_server::api::CheckView = r.call(
            &format!("checking workflow {}", wf.name),
            reqwest::Method::POST,
            &format!("/v1/workflows/{}/check", encode(&wf.name)),
            None::<&()>,
        )?;
        if self.json.json {
            json::document(&report)?;
            return Ok(exit_code(report.problems));
        }
        println!("workflow {} on the server, user {}", wf.name, report.user);
        let total = report.steps.len();
        for (i, s) in report.steps.iter().enumerate() {
            println!("step {}/{total} {}", i + 1, s.name);
            if s.component == "ok" {
                println!("  component: ok");
            } else {
                println!("  component: ERROR: {}", s.component);
            }
            match &s.keys {
                None => println!(
                    "  keys: not declared (no allowlist), nothing to check; add `allow` to declare them"
                ),
                Some(keys) if keys.is_empty() => println!("  keys: none"),
                Some(keys) => {
                    for k in keys {
                        match &k.resolution {
                            Ok(at) => println!("  {}: ok, {at}", k.key),
                            Err(e) => println!("  {}: MISSING: {e}", k.key),
                        }
                    }
                }
            }
        }
        if report.problems > 0 {
            eprintln!(
                "error: {} problem(s) in {}; the workflow would fail",
                report.problems,
                self.manifest.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("ok: every component loads and every declared key resolves");
        Ok(ExitCode::SUCCESS)
    }
}
