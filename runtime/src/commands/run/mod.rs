//! `latchkey run`: run a step (or, for a `.toml`, a workflow) and print its output.

mod view;
mod workflow;

use crate::common::{
    CacheArgs, DurabilityArgs, EXIT_STEP_FAILED, NetworkArgs, StoreArgs, async_runtime,
    invoking_user, operator, os_user,
};
use crate::limits::{self, LimitArgs};
use crate::report;
use anyhow::{Result, bail};
use clap::Args;
use latchkey_cli::remote_run::{self, InputArgs, SingleStepArgs};
use latchkey_host::RuntimeConfig;
use latchkey_host::{Latchkey, Options, RunChoices};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunCommand {
    /// A workflow manifest (`*.toml`), or one step: a WebAssembly component built for
    /// wasm32-wasip2 with latchkey-sdk.
    pub step: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Invoking user (resolution tiers 1 and 2). Default: the OS user.
    #[arg(long, env = "LATCHKEY_USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub single: SingleStepArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub durability: DurabilityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print a report (duration, fetches, credentials used by name and tier) on stderr.
    /// Always on for a manifest.
    #[arg(long)]
    pub report: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print the run on stdout as one JSON document, as `GET /v1/runs/{id}` answers it
    /// (status, output, and each step's logs, credentials and refusals); the exit code is
    /// the same as without it.
    #[arg(long)]
    pub json: bool,
}

impl RunCommand {
    pub fn execute(
        self,
        store: &StoreArgs,
        server: Option<&crate::remote::Remote>,
    ) -> Result<ExitCode> {
        if let Some(r) = server {
            return self.run_remote(r);
        }
        if is_manifest(&self.step) {
            self.single.refuse_for_manifest(&self.step)?;
            let wf = latchkey_host::Workflow::load(&self.step)?;
            let user = invoking_user(self.user.as_ref())?;
            let (latchkey, input) = self.prepare(store)?;
            return workflow::run(&latchkey, &wf, &user, &input, self.json);
        }
        self.run_step(store)
    }

    /// The run on a server: limits, grants and the cache are the server's; the single-step
    /// flags travel with the request.
    fn run_remote(self, r: &crate::remote::Remote) -> Result<ExitCode> {
        if self.network.allow_private_network
            || !self.network.allow_internal.is_empty()
            || self.cache.no_cache
            || self.cache.cache_dir.is_some()
            || self.durability.strict_durability
            || self.limits != LimitArgs::default()
        {
            bail!(
                "limits, network grants, durability and the cache are set by the server (`latchkey serve` flags), not by --server clients"
            );
        }
        if self.user.is_some() {
            bail!("--user does not apply with --server: runs resolve as the token's principal");
        }
        remote_run::run_on_server(
            r,
            &self.step,
            &self.input,
            &self.single,
            self.report,
            self.json,
        )
    }

    /// Validates the flags and the input, then opens the store.
    fn prepare(&self, store: &StoreArgs) -> Result<(Latchkey, String)> {
        let options = Options {
            runtime: RuntimeConfig {
                address_policy: self.network.address_policy()?,
                durability: self.durability.durability(),
                ..crate::common::runtime_config(limits::limits(&self.limits)?)
            },
            cache_dir: self.cache.dir(store),
            ..Options::default()
        };
        let input = self.input.read()?;
        let latchkey = store.open(options)?;
        // The first run of a step compiles it (seconds for a JavaScript or Python step):
        // said before the wait, not left silent.
        latchkey.notify_compiling(|path| {
            eprintln!(
                "compiling {}: not in the compile cache yet (later runs load it from there)",
                report::shown(&path.display().to_string())
            );
        });
        Ok((latchkey, input))
    }

    /// Where a single step's keys come from, as the flags choose it.
    fn choices(&self) -> RunChoices {
        let single = self.single.clone();
        RunChoices {
            workspace: single.workspace,
            workflow: single.workflow,
            builder: single.builder,
            integrations: single.integrations,
            allow_keys: single.allow_keys,
        }
    }

    /// The step's name: the file name without extension (the workflow's too, unless
    /// `--workflow` names it).
    fn step_name(&self) -> String {
        self.step
            .file_stem()
            .map(|s| s.to_string_lossy().replace(['/', '@', ':'], "_"))
            .unwrap_or_else(|| "workflow".to_owned())
    }

    fn run_step(&self, store: &StoreArgs) -> Result<ExitCode> {
        let (latchkey, input) = self.prepare(store)?;
        let by = operator(&os_user())?;
        let user = self.user.clone().unwrap_or_else(os_user);
        let ctx = latchkey.step_context(&by, &user, &self.step_name(), &self.choices())?;
        let tokio = async_runtime()?;
        let _guard = tokio.enter();
        let step = latchkey.load_file(&self.step)?;
        let started_at_ms = crate::common::unix_millis();
        let started = std::time::Instant::now();
        let result = tokio.block_on(async {
            let result = latchkey.run_step(&by, &step, &ctx, &input).await;
            // A refresh the run's deadline cut off goes on: let it store its tokens.
            latchkey.settle_refreshes().await;
            result
        });
        if self.json {
            let refusals = result.as_ref().err().map_or(&[][..], |f| &f.refusals);
            let failed = result.is_err();
            crate::json::document(&view::run(view::Finished {
                id: &ctx.run_id,
                kind: "component",
                target: &self.step.to_string_lossy(),
                user: &ctx.user,
                started_at_ms,
                steps: vec![view::step(
                    &ctx.step.name,
                    started.elapsed(),
                    &result,
                    refusals,
                )],
                not_run: Vec::new(),
                output: result.as_ref().ok().map(|o| o.output.as_str()),
            }))?;
            return Ok(if failed {
                ExitCode::from(EXIT_STEP_FAILED)
            } else {
                ExitCode::SUCCESS
            });
        }
        match result {
            Ok(outcome) => {
                report::print_logs(&ctx.step.name, &outcome.logs);
                if self.report {
                    eprintln!(
                        "step {}: ok in {:.1} ms, {} fetch(es), run {}",
                        ctx.step.name,
                        outcome.duration.as_secs_f64() * 1000.0,
                        outcome.fetches,
                        ctx.run_id
                    );
                    report::print_credentials(&outcome.credentials);
                }
                println!("{}", report::shown_lines(&outcome.output));
                Ok(ExitCode::SUCCESS)
            }
            Err(failure) => {
                report::print_logs(&ctx.step.name, &failure.logs);
                let e = failure.error;
                let message = e.to_string();
                let said = report::shown(&message);
                eprintln!(
                    "error: {} ({}): {said}",
                    report::failure_kind(&e),
                    self.step.display(),
                );
                report::print_refusals_after(&said, report::refusal_pairs(&failure.refusals));
                report::print_run_id(&ctx.run_id);
                Ok(ExitCode::from(EXIT_STEP_FAILED))
            }
        }
    }
}

/// Whether `path` names a workflow manifest rather than a component.
fn is_manifest(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}
