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

/// Seconds from a flag: finite, above 0 and at most a day.
fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        bail!("{flag} must be more than 0 and at most 86400 seconds (got {secs})");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A count or size from a flag: at least 1 (0 would make every step fail, which is not
/// what anyone asking for a limit means) and at most `max`.
fn bounded<T: Into<u64> + Copy + std::fmt::Display>(flag: &str, v: T, max: u64) -> Result<T> {
    let n: u64 = v.into();
    if n == 0 || n > max {
        bail!("{flag} must be between 1 and {max} (got {v})");
    }
    Ok(v)
}

fn usize_flag(flag: &str, v: usize, max: u64) -> Result<usize> {
    bounded(flag, v as u64, max).map(|_| v)
}

/// The run's limits from the command line: the one place flags become [`Limits`].
pub(crate) fn limits(args: &RunArgs) -> Result<Limits> {
    let l = &args.limits;
    let deadline = seconds("--deadline", l.deadline)?;
    let request_timeout = seconds("--request-timeout", l.request_timeout)?;
    let memory_mib = usize_flag("--memory-mib", l.memory_mib, 4096)?;
    let kib = |flag, v| usize_flag(flag, v, 1 << 20).map(|v| v << 10);
    Ok(Limits {
        memory_bytes: memory_mib << 20,
        deadline,
        // A fetch cannot outlive the run it belongs to.
        request_timeout: request_timeout.min(deadline),
        max_fetches: bounded("--max-fetches", l.max_fetches, 1 << 20)?,
        max_response_body: kib("--max-response-kib", l.max_response_kib)?,
        max_request_body: kib("--max-request-kib", l.max_request_kib)?,
        max_request_headers: usize_flag("--max-request-headers", l.max_request_headers, 1 << 16)?,
        max_response_headers: usize_flag(
            "--max-response-headers",
            l.max_response_headers,
            1 << 16,
        )?,
        max_log_bytes: kib("--max-log-kib", l.max_log_kib)?,
        max_credential_gets: bounded("--max-credential-gets", l.max_credential_gets, 1 << 20)?,
        max_header_value_bytes: kib("--max-header-value-kib", l.max_header_value_kib)?,
        max_value_parts: usize_flag("--max-value-parts", l.max_value_parts, 1 << 16)?,
        max_query_params: usize_flag("--max-query-params", l.max_query_params, 1 << 16)?,
        max_injected_credentials: usize_flag(
            "--max-injected-credentials",
            l.max_injected_credentials,
            1 << 10,
        )?,
        max_secret_parts: usize_flag("--max-secret-parts", l.max_secret_parts, 1 << 10)?,
        ..Limits::default()
    })
}

/// The operator's network grants: `--allow-internal CIDR...`, and `--allow-private-network`
/// as loopback only.
fn address_policy(args: &RunArgs) -> Result<AddressPolicy> {
    let mut grants = args
        .allow_internal
        .iter()
        .map(|c| {
            c.trim().parse().map_err(|e| {
                anyhow::anyhow!("--allow-internal {c:?}: {e} (expected a CIDR such as 10.0.0.0/8)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if args.allow_private_network {
        grants.extend(AddressPolicy::loopback().grants());
    }
    Ok(AddressPolicy::with_grants(grants)?)
}

/// The runtime configuration for `latchkey run`, single step or manifest alike: limits,
/// network grants and the engine settings `latchkey compile` also uses (so its cache
/// entries match).
pub(crate) fn runtime_config(args: &RunArgs) -> Result<RuntimeConfig> {
    Ok(RuntimeConfig {
        address_policy: address_policy(args)?,
        ..crate::compile_cmd::run_config(limits(args)?)
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
    let config = runtime_config(&args)?;
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
    let tokio = async_runtime()?;
    let _guard = tokio.enter();
    let runtime = Runtime::new(config, store.clone()).context("starting the runtime")?;
    let step = crate::compile_cmd::load_step(
        &runtime,
        &bytes,
        &args.step,
        &args.cache,
        store_args,
        &store,
    )?;
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
            println!("{}", report::shown(&outcome.output));
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            report::print_logs(&ctx.step.name, &failure.logs);
            let e = failure.error;
            eprintln!(
                "error: {} ({}): {}",
                report::failure_kind(&e),
                args.step.display(),
                report::shown(&e.to_string())
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
