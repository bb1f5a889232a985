//! `latchkey run --server`: the same run, started as the token's principal on a server,
//! reported the way a local run is.

use crate::common::EXIT_STEP_FAILED;
use crate::remote::Remote;
use crate::report;
use anyhow::{Context, Result, bail};
use latchkey_server::api::{RunStatus, RunView, StartRun, StepView};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::ExitCode;

/// What `target` names on the server: a `.toml` file names the registered workflow of its
/// manifest's `name`; an existing `.wasm` file, the component with its digest; anything
/// else, a registered component's name or digest.
pub fn start_for(target: &Path) -> Result<StartRun> {
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
pub fn run(r: &Remote, mut start: StartRun, report: bool, as_json: bool) -> Result<ExitCode> {
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
