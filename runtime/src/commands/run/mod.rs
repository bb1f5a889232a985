//! `latchkey run`: run a step (or, for a `.toml`, a workflow) and print its output.

mod remote;
mod view;
mod workflow;

use crate::common::{
    CacheArgs, DurabilityArgs, EXIT_STEP_FAILED, NetworkArgs, StoreArgs, async_runtime,
    invoking_user, operator, os_user,
};
use crate::limits::{self, LimitArgs};
use crate::report;
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_host::RuntimeConfig;
use latchkey_host::{Latchkey, Options, RunChoices};
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunCommand {
    /// A workflow manifest (`*.toml`), or one step: a WebAssembly component built for
    /// wasm32-wasip2 with latchkey-sdk.
    pub step: PathBuf,
    /// Input JSON for the step.
    #[arg(long, default_value = "{}", conflicts_with = "input_file")]
    pub input: String,
    /// Read the input JSON from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Invoking user (resolution tiers 1 and 2). Default: the OS user.
    #[arg(long, env = "LATCHKEY_USER")]
    pub user: Option<String>,
    /// Workspace the step runs in (single step only; a manifest names its own). Default:
    /// `default`.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Workflow name (single step only; default: the file name without extension).
    #[arg(long)]
    pub workflow: Option<String>,
    /// The workflow's builder (resolution tier 5; single step only).
    #[arg(long)]
    pub builder: Option<String>,
    /// Integration types the step declares. Repeatable. Default: http. (Single step only.)
    #[arg(long = "integration", value_name = "TYPE")]
    pub integrations: Vec<String>,
    /// Only these credential keys may resolve (comma-separated or repeated; single step only).
    #[arg(long = "allow-key", value_name = "KEY", value_delimiter = ',')]
    pub allow_keys: Vec<String>,
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
            self.refuse_single_step_flags()?;
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
        let mut start = remote::start_for(&self.step)?;
        if start.workflow.is_some() {
            self.refuse_single_step_flags()?;
        } else {
            start.workspace = self.workspace.clone();
            start.workflow_name = self.workflow.clone();
            start.builder = self.builder.clone();
            start.integrations = self.integrations.clone();
            start.allow_keys = self.allow_keys.clone();
        }
        start.input = serde_json::from_str(&self.read_input()?)?;
        remote::run(r, start, self.report, self.json)
    }

    /// Flags a manifest declares itself are refused with one, rather than ignored.
    fn refuse_single_step_flags(&self) -> Result<()> {
        let single_only = [
            ("--workspace", self.workspace.is_some()),
            ("--workflow", self.workflow.is_some()),
            ("--builder", self.builder.is_some()),
            ("--integration", !self.integrations.is_empty()),
            ("--allow-key", !self.allow_keys.is_empty()),
        ];
        if let Some((flag, _)) = single_only.iter().find(|(_, given)| *given) {
            bail!(
                "{flag} applies to a single .wasm step; a workflow manifest declares it itself (edit {})",
                self.step.display()
            );
        }
        Ok(())
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
        let input = self.read_input()?;
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

    fn read_input(&self) -> Result<String> {
        let text = match &self.input_file {
            Some(p) if p.as_os_str() == "-" => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the input from stdin")?;
                s
            }
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading the input file {}", p.display()))?,
            None => self.input.clone(),
        };
        serde_json::from_str::<serde_json::Value>(&text).context("the input is not valid JSON")?;
        Ok(text)
    }

    /// Where a single step's keys come from, as the flags choose it.
    fn choices(&self) -> RunChoices {
        RunChoices {
            workspace: self.workspace.clone(),
            workflow: self.workflow.clone(),
            builder: self.builder.clone(),
            integrations: self.integrations.clone(),
            allow_keys: self.allow_keys.clone(),
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
