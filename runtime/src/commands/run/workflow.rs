//! `latchkey run workflow.toml`: every step loaded first, then run in order; progress on
//! stderr as each step ends, the last step's output on stdout.

use crate::common::{EXIT_STEP_FAILED, async_runtime};
use crate::report;
use anyhow::Result;
use latchkey_host::Latchkey;
use latchkey_host::{RunRequest, StepReport, Workflow};
use std::process::ExitCode;

pub fn run(
    latchkey: &Latchkey,
    wf: &Workflow,
    user: &str,
    input: &str,
    as_json: bool,
) -> Result<ExitCode> {
    let tokio = async_runtime()?;
    let _guard = tokio.enter();
    let steps = latchkey.load_workflow(wf)?;
    let request = RunRequest::new(user, input);
    let run_id = &request.run_id;
    let total = wf.steps.len();
    eprintln!(
        "run {run_id}: workflow {} in workspace {}, {total} step(s), user {user}",
        wf.name, wf.workspace
    );
    let started_at_ms = crate::common::unix_millis();
    let by = crate::common::operator(&crate::common::os_user())?;
    let run = tokio.block_on(async {
        let run = latchkey
            .run_workflow(&by, wf, &steps, &request, |s| print_step(s, total))
            .await;
        // A refresh the run's deadline cut off goes on: let it store its tokens.
        latchkey.settle_refreshes().await;
        run
    })?;
    if as_json {
        crate::json::document(&super::view::run(super::view::Finished {
            id: run_id,
            kind: "workflow",
            target: &wf.name,
            user,
            started_at_ms,
            steps: run
                .steps
                .iter()
                .map(|s| super::view::step(&s.name, s.elapsed, &s.result, &s.refusals))
                .collect(),
            not_run: run.not_run.clone(),
            output: run.output(),
        }))?;
        return Ok(if run.failed().is_some() {
            ExitCode::from(EXIT_STEP_FAILED)
        } else {
            ExitCode::SUCCESS
        });
    }
    if let Some(failed) = run.failed() {
        if !run.not_run.is_empty() {
            eprintln!("not run: {}", run.not_run.join(", "));
        }
        if let Err(f) = &failed.result {
            let message = f.error.to_string();
            let said = report::shown(&message);
            eprintln!(
                "error: step {} failed ({}): {said}",
                failed.name,
                report::failure_kind(&f.error),
            );
            report::print_refusals_after(&said, report::refusal_pairs(&failed.refusals));
        }
        report::print_run_id(run_id);
        return Ok(ExitCode::from(EXIT_STEP_FAILED));
    }
    eprintln!("run {run_id}: {total} step(s) ok");
    println!("{}", report::shown_lines(run.output().unwrap_or_default()));
    Ok(ExitCode::SUCCESS)
}

/// A step's logs, its outcome in one line, and the credentials it used.
fn print_step(s: &StepReport, total: usize) {
    let ms = s.elapsed.as_secs_f64() * 1000.0;
    let n = s.index + 1;
    match &s.result {
        Ok(outcome) => {
            report::print_logs(&s.name, &outcome.logs);
            eprintln!(
                "step {n}/{total} {}: ok in {ms:.1} ms, {} fetch(es)",
                s.name, outcome.fetches
            );
            report::print_credentials(&outcome.credentials);
        }
        Err(failure) => {
            report::print_logs(&s.name, &failure.logs);
            eprintln!("step {n}/{total} {}: FAILED after {ms:.1} ms", s.name);
            report::print_credentials(&failure.credentials);
            // Its refusals follow the run's error line, which already says most of them.
        }
    }
}
