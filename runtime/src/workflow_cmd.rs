//! `latchkey run workflow.toml` and `latchkey check workflow.toml`.

use crate::cli::{CheckArgs, RunArgs, StoreArgs};
use crate::compile_cmd::CacheArgs;
use crate::manifest::Workflow;
use crate::report::{failure_kind, print_credentials, print_denials, print_logs, shown};
use crate::run_cmd::{async_runtime, read_input, runtime_config};
use crate::{EXIT_STEP_FAILED, keys};
use anyhow::{Context, Result, bail};
use latchkey_host::resolve::{self, new_run_id};
use latchkey_host::sandbox::{Runtime, RuntimeConfig, Step};
use latchkey_host::store::{Scope, SecretStore};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// The invoking user: `--user`, else the OS user; checked like a scope name.
fn user(arg: Option<&String>) -> Result<String> {
    let user = arg.cloned().unwrap_or_else(crate::os_user);
    Scope::User { user: user.clone() }
        .validated()
        .context("--user")?;
    Ok(user)
}

fn load_workflow(path: &std::path::Path) -> Result<Workflow> {
    Ok(Workflow::load(path)?)
}

/// Reads a step's component and loads it through the compiled-component cache.
fn load_step(
    runtime: &Runtime,
    wf: &Workflow,
    index: usize,
    cache: &CacheArgs,
    store_args: &StoreArgs,
    secrets: &SecretStore,
) -> Result<Step> {
    let spec = &wf.steps[index];
    let bytes = std::fs::read(&spec.component).with_context(|| {
        format!(
            "reading the component of step {} ({})",
            spec.policy.name,
            spec.component.display()
        )
    })?;
    crate::compile_cmd::load_step(runtime, &bytes, &spec.component, cache, store_args, secrets)
        .with_context(|| format!("loading the component of step {}", spec.policy.name))
}

/// `latchkey run workflow.toml`.
pub fn run(store_args: &StoreArgs, args: RunArgs) -> Result<ExitCode> {
    let single_only = [
        ("--workspace", args.workspace.is_some()),
        ("--workflow", args.workflow.is_some()),
        ("--builder", args.builder.is_some()),
        ("--integration", !args.integrations.is_empty()),
        ("--allow-key", !args.allow_keys.is_empty()),
    ];
    if let Some((flag, _)) = single_only.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} applies to a single .wasm step; a workflow manifest declares it itself (edit {})",
            args.step.display()
        );
    }
    let wf = load_workflow(&args.step)?;
    let config = runtime_config(&args)?;
    let input = read_input(&args)?;
    let user = user(args.user.as_ref())?;

    let store = Arc::new(keys::open_store(store_args)?);
    let tokio = async_runtime()?;
    let _guard = tokio.enter();
    let runtime = Runtime::new(config, store.clone()).context("starting the runtime")?;
    // Compile every step first: a broken last step must not let the first make calls.
    let steps = (0..wf.steps.len())
        .map(|i| load_step(&runtime, &wf, i, &args.cache, store_args, &store))
        .collect::<Result<Vec<_>>>()?;

    let run_id = new_run_id();
    let total = wf.steps.len();
    eprintln!(
        "run {run_id}: workflow {} in workspace {}, {total} step(s), user {user}",
        wf.name, wf.workspace
    );
    let mut data = input;
    for (i, step) in steps.iter().enumerate() {
        let ctx = wf.context(i, &user, &run_id);
        let name = &ctx.step.name;
        let started = Instant::now();
        let result = tokio.block_on(runtime.run(step, &ctx, &data));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(outcome) => {
                print_logs(name, &outcome.logs);
                eprintln!(
                    "step {}/{total} {name}: ok in {ms:.1} ms, {} fetch(es)",
                    i + 1,
                    outcome.fetches
                );
                print_credentials(&outcome.credentials);
                data = outcome.output;
            }
            Err(failure) => {
                print_logs(name, &failure.logs);
                let e = failure.error;
                let kind = failure_kind(&e);
                eprintln!("step {}/{total} {name}: FAILED after {ms:.1} ms", i + 1);
                print_credentials(&failure.credentials);
                print_denials(&store, &run_id, name);
                let skipped: Vec<&str> = wf.steps[i + 1..]
                    .iter()
                    .map(|s| s.policy.name.as_str())
                    .collect();
                if !skipped.is_empty() {
                    eprintln!("not run: {}", skipped.join(", "));
                }
                eprintln!(
                    "error: step {name} failed ({kind}): {}",
                    shown(&e.to_string())
                );
                eprintln!("run id {run_id} (see `latchkey audit --run {run_id}`)");
                return Ok(ExitCode::from(EXIT_STEP_FAILED));
            }
        }
    }
    eprintln!("run {run_id}: {total} step(s) ok");
    println!("{}", shown(&data));
    Ok(ExitCode::SUCCESS)
}

/// `latchkey check workflow.toml`.
pub fn check(store_args: &StoreArgs, args: CheckArgs) -> Result<ExitCode> {
    let wf = load_workflow(&args.manifest)?;
    let user = user(args.user.as_ref())?;
    let store = Arc::new(keys::open_store(store_args)?);
    let tokio = async_runtime()?;
    let _guard = tokio.enter();
    let runtime =
        Runtime::new(RuntimeConfig::default(), store.clone()).context("starting the runtime")?;

    let order: Vec<&str> = wf.order.iter().map(|t| t.name()).collect();
    println!(
        "workflow {} in workspace {}, builder {}, user {user}; order: {}",
        wf.name,
        wf.workspace,
        wf.builder.as_deref().unwrap_or("(none)"),
        order.join(" > ")
    );
    let mut problems = 0usize;
    let total = wf.steps.len();
    for (i, spec) in wf.steps.iter().enumerate() {
        let integrations: Vec<&str> = spec
            .policy
            .integrations
            .iter()
            .map(String::as_str)
            .collect();
        println!(
            "step {}/{total} {} ({}), integrations: {}",
            i + 1,
            spec.policy.name,
            spec.component.display(),
            integrations.join(", ")
        );
        match load_step(&runtime, &wf, i, &CacheArgs::default(), store_args, &store) {
            Ok(_) => println!("  component: ok"),
            Err(e) => {
                problems += 1;
                println!("  component: ERROR: {e:#}");
            }
        }
        let ctx = wf.context(i, &user, "check");
        let Some(keys) = spec.declared_keys(wf.allow.as_ref()) else {
            println!(
                "  keys: not declared (no allowlist), nothing to check; add `allow` to declare them"
            );
            continue;
        };
        if keys.is_empty() {
            println!("  keys: none");
        }
        for key in keys {
            let pinned = spec
                .policy
                .pins
                .get(&key)
                .map(|tiers| {
                    let names: Vec<&str> = tiers.iter().map(|t| t.name()).collect();
                    format!(", pinned to {}", names.join(" > "))
                })
                .unwrap_or_default();
            match resolve::resolve(&store, &ctx, &key) {
                Ok(r) => println!(
                    "  {key}: ok, tier {} (scope {}, integration {}, version {}{pinned})",
                    r.tier, r.meta.scope, r.meta.integration, r.meta.version
                ),
                Err(e) => {
                    problems += 1;
                    println!("  {key}: MISSING: {e}");
                }
            }
        }
    }
    if problems > 0 {
        eprintln!(
            "error: {problems} problem(s) in {}; the workflow would fail",
            args.manifest.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("ok: every component loads and every declared key resolves");
    Ok(ExitCode::SUCCESS)
}
