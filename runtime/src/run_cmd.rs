//! `latchkey run`: run a step (or, for a `.toml`, a workflow) and print its output.

use crate::cli::{RunArgs, StoreArgs};
use crate::{EXIT_STEP_FAILED, keys, report};
use anyhow::{Context, Result, bail};
use latchkey_host::policy::AddressPolicy;
use latchkey_host::resolve::RunContext;
use latchkey_host::sandbox::{Limits, Runtime, RuntimeConfig};
use latchkey_host::secret::CredentialKey;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn limits(args: &RunArgs) -> Result<Limits> {
    let l = &args.limits;
    if !(l.deadline.is_finite() && l.deadline > 0.0 && l.deadline <= 86_400.0) {
        bail!("--deadline must be between 0 and 86400 seconds");
    }
    if l.memory_mib == 0 || l.memory_mib > 4096 {
        bail!("--memory-mib must be between 1 and 4096");
    }
    let deadline = Duration::from_secs_f64(l.deadline);
    let defaults = Limits::default();
    Ok(Limits {
        memory_bytes: l.memory_mib << 20,
        deadline,
        max_fetches: l.max_fetches,
        max_response_body: l.max_response_kib << 10,
        max_request_body: l.max_request_kib << 10,
        request_timeout: defaults.request_timeout.min(deadline),
        ..defaults
    })
}

pub(crate) fn read_input(args: &RunArgs) -> Result<String> {
    let text = match &args.input_file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the input from stdin")?;
            s
        }
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the input file {}", p.display()))?,
        None => args.input.clone(),
    };
    serde_json::from_str::<serde_json::Value>(&text).context("the input is not valid JSON")?;
    Ok(text)
}

/// Whether `path` names a workflow manifest rather than a component.
pub(crate) fn is_manifest(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

/// A multi-thread tokio runtime (2 workers) for the sandbox and its HTTP client.
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(store_args: &StoreArgs, args: RunArgs) -> Result<ExitCode> {
    if is_manifest(&args.step) {
        return crate::workflow_cmd::run(store_args, args);
    }
    let limits = limits(&args)?;
    let input = read_input(&args)?;
    let bytes = std::fs::read(&args.step)
        .with_context(|| format!("reading the step {}", args.step.display()))?;
    let workflow = match &args.workflow {
        Some(w) => w.clone(),
        None => args
            .step
            .file_stem()
            .map(|s| s.to_string_lossy().replace(['/', '@', ':'], "_"))
            .unwrap_or_else(|| "workflow".to_owned()),
    };
    let user = args.user.clone().unwrap_or_else(crate::os_user);
    let workspace = args.workspace.as_deref().unwrap_or("default");
    let mut ctx = RunContext::single_step(workspace, &workflow, &user);
    ctx.builder = args.builder.clone();
    if !args.integrations.is_empty() {
        ctx.step.integrations = args.integrations.iter().cloned().collect();
    }
    if !args.allow_keys.is_empty() {
        let keys = args
            .allow_keys
            .iter()
            .map(|k| CredentialKey::new(k))
            .collect::<Result<_, _>>()?;
        ctx.step.allowlist = Some(keys);
    }

    let store = Arc::new(keys::open_store(store_args)?);
    let config = RuntimeConfig {
        limits,
        address_policy: AddressPolicy {
            allow_private: args.allow_private_network,
        },
        pool_instances: crate::compile_cmd::RUN_POOL_INSTANCES,
    };
    let tokio = async_runtime()?;
    let _guard = tokio.enter();
    let runtime = Runtime::new(config, store.clone()).context("starting the runtime")?;
    let step =
        crate::compile_cmd::load_step(&runtime, &bytes, &args.step, &args.cache, store_args)?;
    let result = tokio.block_on(runtime.run(&step, &ctx, &input));
    match result {
        Ok(outcome) => {
            report::print_logs(&ctx.step.name, &outcome.logs);
            if args.report {
                eprintln!(
                    "step {}: ok in {:.1} ms, {} fetch(es), run {}",
                    ctx.step.name,
                    outcome.duration.as_secs_f64() * 1000.0,
                    outcome.fetches,
                    ctx.run_id
                );
                report::print_credentials(&outcome.credentials);
            }
            println!("{}", outcome.output);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            report::print_logs(&ctx.step.name, &failure.logs);
            let e = failure.error;
            eprintln!(
                "error: {} ({}): {e}",
                report::failure_kind(&e),
                args.step.display()
            );
            report::print_denials(&store, &ctx.run_id, &ctx.step.name);
            eprintln!(
                "run id {} (see `latchkey audit --run {}`)",
                ctx.run_id, ctx.run_id
            );
            Ok(ExitCode::from(EXIT_STEP_FAILED))
        }
    }
}
