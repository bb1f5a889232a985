//! `latchkey run --server` and `latchkey-client run`: the same run, started as the token's
//! principal on a server, reported the way a local run is.

use crate::EXIT_STEP_FAILED;
use crate::remote::Remote;
use crate::report;
use anyhow::{Context, Result, bail};
use clap::Args;
use latchkey_server::api::{RunStatus, RunView, StartRun, StepView};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A run's input JSON.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Input JSON for the step.
    #[arg(long, default_value = "{}", conflicts_with = "input_file")]
    pub input: String,
    /// Read the input JSON from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
}

impl InputArgs {
    /// The input's text, checked to be JSON.
    pub fn read(&self) -> Result<String> {
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
}

/// Where a single step's keys come from (a workflow manifest declares its own).
#[derive(Args, Debug, Clone, Default)]
pub struct SingleStepArgs {
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
}

impl SingleStepArgs {
    /// Flags a manifest declares itself are refused with one, rather than ignored.
    pub fn refuse_for_manifest(&self, manifest: &Path) -> Result<()> {
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
                manifest.display()
            );
        }
        Ok(())
    }
}

/// Runs `target` on the server with `input` and `single`'s choices, waits for its end and
/// prints it as a local run is printed.
pub fn run_on_server(
    r: &Remote,
    target: &Path,
    input: &InputArgs,
    single: &SingleStepArgs,
    report: bool,
    as_json: bool,
) -> Result<ExitCode> {
    let mut start = start_for(target)?;
    if start.workflow.is_some() {
        single.refuse_for_manifest(target)?;
    } else {
        start.workspace = single.workspace.clone();
        start.workflow_name = single.workflow.clone();
        start.builder = single.builder.clone();
        start.integrations = single.integrations.clone();
        start.allow_keys = single.allow_keys.clone();
    }
    start.input = serde_json::from_str(&input.read()?)?;
    run(r, start, report, as_json)
}

/// What `target` names on the server: a `.toml` file names the registered workflow of its
/// manifest's `name`; an existing `.wasm` file, the component with its digest; anything
/// else, a registered component's name or digest.
fn start_for(target: &Path) -> Result<StartRun> {
    let shown = target.display();
    if target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        let wf = latchkey_host::Workflow::load(target)?;
        return Ok(StartRun {
            workflow: Some(wf.name),
            ..StartRun::default()
        });
    }
    let component = if target.is_file() {
        let bytes = std::fs::read(target).with_context(|| format!("reading {shown}"))?;
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    } else {
        target.to_string_lossy().into_owned()
    };
    Ok(StartRun {
        component: Some(component),
        ..StartRun::default()
    })
}

/// Starts `start` and waits for its end; prints like a local run.
fn run(r: &Remote, mut start: StartRun, report: bool, as_json: bool) -> Result<ExitCode> {
    start.wait = true;
    let workflow = start.workflow.is_some();
    let run: RunView = r
        .call(
            "starting the run",
            reqwest::Method::POST,
            "/v1/runs",
            Some(&start),
        )
        .map_err(|e| {
            if e.to_string().contains("no registered component") {
                e.context("register it first with `latchkey component add FILE.wasm --server …`")
            } else {
                e
            }
        })?;
    if as_json {
        crate::json::document(&run)?;
        return Ok(if run.status == RunStatus::Succeeded {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_STEP_FAILED)
        });
    }
    let total = run.steps.len() + run.not_run.len();
    for (i, step) in run.steps.iter().enumerate() {
        print_step(step, i + 1, total, report || workflow);
    }
    if run.status != RunStatus::Succeeded {
        if !run.not_run.is_empty() {
            eprintln!("not run: {}", report::shown(&run.not_run.join(", ")));
        }
        let said = report::shown(run.error.as_deref().unwrap_or("the run failed"));
        eprintln!("error: {said}");
        let failed = run
            .steps
            .iter()
            .filter(|s| s.status != RunStatus::Succeeded);
        report::print_refusals_after(
            &said,
            failed
                .flat_map(|s| &s.refusals)
                .map(|r| (r.key.as_str(), r.reason.as_str())),
        );
        report::print_run_id(&run.id);
        return Ok(ExitCode::from(EXIT_STEP_FAILED));
    }
    let Some(output) = run.output else {
        bail!("the server reported success without an output");
    };
    let text = match output {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    println!("{}", report::shown_lines(&text));
    Ok(ExitCode::SUCCESS)
}

fn print_step(s: &StepView, n: usize, total: usize, detail: bool) {
    let name = report::shown(&s.name);
    for l in &s.logs {
        eprintln!(
            "[{name} {}] {}",
            report::shown(&l.level),
            report::shown(&l.message)
        );
    }
    if detail {
        let outcome = if s.status == RunStatus::Succeeded {
            format!("ok in {:.1} ms, {} fetch(es)", s.duration_ms, s.fetches)
        } else {
            format!("FAILED after {:.1} ms", s.duration_ms)
        };
        eprintln!("step {n}/{total} {name}: {outcome}");
        for c in &s.credentials {
            eprintln!(
                "    credential {} from tier {} ({})",
                report::shown(&c.key),
                report::shown(&c.tier),
                report::shown(&c.scope)
            );
        }
    }
    // A failed step's refusals follow the run's error line, which already says most of them.
    if s.status != RunStatus::Succeeded {
        return;
    }
    for r in &s.refusals {
        eprintln!(
            "    refused {}: {}",
            report::shown(&r.key),
            report::shown(&r.reason)
        );
    }
}
