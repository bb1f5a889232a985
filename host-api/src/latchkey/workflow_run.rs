//! Running a workflow: load every step first, then run them in order until one fails.

use super::{Error, Latchkey, Refusal};
use crate::resolve::new_run_id;
use crate::sandbox::{RunFailure, RunOutcome, Step};
use crate::workflow::Workflow;
use std::time::{Duration, Instant};

/// One run of a workflow: who runs it, with what input, under which run id.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// Identifies the run in the audit trail (see [`RunRequest::new`]).
    pub run_id: String,
    /// The invoking user (the user tiers resolve against this name).
    pub user: &'a str,
    /// The first step's input (JSON).
    pub input: &'a str,
}

impl<'a> RunRequest<'a> {
    /// A run by `user` with `input`, under a fresh run id.
    pub fn new(user: &'a str, input: &'a str) -> Self {
        RunRequest {
            run_id: new_run_id(),
            user,
            input,
        }
    }
}

/// How one step of a workflow run ended.
#[derive(Debug)]
pub struct StepReport {
    /// 0-based position in the workflow.
    pub index: usize,
    /// The step's name.
    pub name: String,
    /// Wall-clock time, instantiation included.
    pub elapsed: Duration,
    /// The outcome.
    pub result: Result<RunOutcome, RunFailure>,
    /// For a failed step, the credentials refused to it and why (from the audit trail).
    pub refusals: Vec<Refusal>,
}

/// A finished workflow run.
#[derive(Debug)]
pub struct WorkflowRun {
    /// The run id.
    pub run_id: String,
    /// The steps that ran, in order; only the last may have failed.
    pub steps: Vec<StepReport>,
    /// Steps not run because an earlier one failed.
    pub not_run: Vec<String>,
}

impl WorkflowRun {
    /// The last step's output, if every step succeeded.
    pub fn output(&self) -> Option<&str> {
        if self.failed().is_some() {
            return None;
        }
        self.steps
            .last()
            .and_then(|s| s.result.as_ref().ok())
            .map(|o| o.output.as_str())
    }

    /// The step that failed, if one did.
    pub fn failed(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.result.is_err())
    }
}

/// Reads and loads every step's component.
pub(crate) fn load_steps(lk: &Latchkey, wf: &Workflow) -> Result<Vec<Step>, Error> {
    wf.steps
        .iter()
        .map(|spec| {
            lk.load_file(&spec.component).map_err(|e| Error::Step {
                step: spec.policy.name.clone(),
                source: Box::new(e),
            })
        })
        .collect()
}

/// Runs `steps` (loaded from `wf`, in its order) for `req`.
pub(crate) async fn run(
    lk: &Latchkey,
    wf: &Workflow,
    steps: &[Step],
    req: &RunRequest<'_>,
    mut on_step: impl FnMut(&StepReport),
) -> WorkflowRun {
    let mut reports: Vec<StepReport> = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let input = match reports.last() {
            Some(StepReport { result: Ok(o), .. }) => o.output.as_str(),
            _ => req.input,
        };
        let ctx = wf.context(index, req.user, &req.run_id);
        let started = Instant::now();
        let result = lk.run_step_as_chosen(step, &ctx, input).await;
        let refusals = match &result {
            Ok(_) => Vec::new(),
            Err(failure) => failure.refusals.clone(),
        };
        let report = StepReport {
            index,
            name: ctx.step.name,
            elapsed: started.elapsed(),
            result,
            refusals,
        };
        on_step(&report);
        let failed = report.result.is_err();
        reports.push(report);
        if failed {
            break;
        }
    }
    let not_run = wf.steps[reports.len()..]
        .iter()
        .map(|s| s.policy.name.clone())
        .collect();
    WorkflowRun {
        run_id: req.run_id.clone(),
        steps: reports,
        not_run,
    }
}
