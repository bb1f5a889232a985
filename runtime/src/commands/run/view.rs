//! `latchkey run --json`: a local run in the form `GET /v1/runs/{id}` answers it (RunView),
//! so that a script reads a local run and a run on a server the same way.
// The server builds the same views from the same library types in routes/runs.rs; once the
// library keeps a run record that both can convert, this module should use that conversion.

use latchkey_host::Refusal;
use latchkey_host::{RunFailure, RunOutcome};
use latchkey_server::api::{CredentialView, LogView, RefusalView, RunStatus, RunView, StepView};
use std::time::Duration;

/// One step's view, whether or not it succeeded.
pub fn step(
    name: &str,
    elapsed: Duration,
    result: &Result<RunOutcome, RunFailure>,
    refusals: &[Refusal],
) -> StepView {
    let (logs, credentials, fetches) = match result {
        Ok(o) => (&o.logs, &o.credentials, o.fetches),
        Err(f) => (&f.logs, &f.credentials, f.counts.fetches),
    };
    StepView {
        name: name.to_owned(),
        status: status(result.is_ok()),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        fetches,
        credentials: credentials
            .iter()
            .map(|c| CredentialView {
                key: c.key.clone(),
                tier: c.tier.to_string(),
                scope: c.scope.clone(),
            })
            .collect(),
        refusals: refusals
            .iter()
            .map(|r| RefusalView {
                key: r.key.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
        logs: logs
            .iter()
            .map(|l| LogView {
                level: l.level.to_owned(),
                message: l.message.clone(),
            })
            .collect(),
        error: result.as_ref().err().map(|f| f.error.to_string()),
    }
}

/// What a finished run is: its target, who ran it, and its steps.
pub struct Finished<'a> {
    pub id: &'a str,
    /// `component` or `workflow`.
    pub kind: &'a str,
    pub target: &'a str,
    pub user: &'a str,
    pub started_at_ms: u64,
    pub steps: Vec<StepView>,
    pub not_run: Vec<String>,
    /// The last step's output, on success.
    pub output: Option<&'a str>,
}

/// The run's view; failed when a step failed, with that step's error.
pub fn run(f: Finished<'_>) -> RunView {
    let workflow = f.kind == "workflow";
    let error = f.steps.iter().find_map(|s| {
        s.error.as_ref().map(|e| match workflow {
            true => format!("step {} failed: {e}", s.name),
            false => e.clone(),
        })
    });
    RunView {
        id: f.id.to_owned(),
        kind: f.kind.to_owned(),
        target: f.target.to_owned(),
        user: f.user.to_owned(),
        status: status(error.is_none()),
        started_at_ms: f.started_at_ms,
        finished_at_ms: Some(crate::common::unix_millis()),
        output: f
            .output
            .filter(|_| error.is_none())
            .map(|o| serde_json::from_str(o).unwrap_or_else(|_| o.into())),
        output_truncated: false,
        error,
        steps: f.steps,
        not_run: f.not_run,
    }
}

fn status(ok: bool) -> RunStatus {
    if ok {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    }
}
