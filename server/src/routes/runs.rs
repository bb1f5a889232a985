//! `/v1/runs`: start a run of a registered component or workflow as the caller, watch it,
//! read its report and audit records. Runs are concurrent; each credential resolves at
//! each call, so a rotation is seen by the next call of every running step.

use crate::api::ErrorBody;
use crate::api::{
    AuditRecords, CredentialView, LogView, RefusalView, RunStatus, RunView, StartRun, StepView,
};
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::{AppState, RunEntry};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_host::resolve::{RunContext, new_run_id};
use latchkey_host::sandbox::{RunCounts, RunFailure, RunOutcome};
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{NameKind, check_name, unix_millis};
use latchkey_host::workflow::{RunRequest, StepReport};
use latchkey_host::{Action, AuditQuery, Principal, Role};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a run executes.
enum Target {
    Step {
        component: Arc<crate::state::Component>,
        ctx: Box<RunContext>,
    },
    Workflow(Arc<crate::state::RegisteredWorkflow>),
}

/// The run context of a single step for `user`, from the request.
fn step_context(req: &StartRun, name: &str, user: &str) -> Result<RunContext, ApiError> {
    let workspace = req.workspace.as_deref().unwrap_or("default");
    let workflow = req.workflow_name.as_deref().unwrap_or(name);
    check_name(NameKind::Workspace, workspace)
        .and_then(|()| check_name(NameKind::Workflow, workflow))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut ctx = RunContext::single_step(workspace, workflow, user);
    if let Some(b) = &req.builder {
        check_name(NameKind::Builder, b).map_err(|e| ApiError::bad_request(e.to_string()))?;
        ctx.builder = Some(b.clone());
    }
    if !req.integrations.is_empty() {
        if let Some(bad) = req
            .integrations
            .iter()
            .find(|i| !latchkey_host::store::valid_integration(i))
        {
            return Err(ApiError::bad_request(format!(
                "integrations: invalid integration type {bad:?}"
            )));
        }
        ctx.step.integrations = req.integrations.iter().cloned().collect();
    }
    if !req.allow_keys.is_empty() {
        let keys = req
            .allow_keys
            .iter()
            .map(|k| CredentialKey::new(k))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::bad_request(format!("allow_keys: {e}")))?;
        ctx.step.allowlist = Some(keys);
    }
    Ok(ctx)
}

fn target(state: &AppState, req: &StartRun, by: &Principal) -> Result<(Target, String), ApiError> {
    let user = by.name();
    // The workspace, workflow and builder of a run decide whose scoped keys it may use
    // (the builder tier is a named user's keys): only an admin may choose them for an
    // ad-hoc run; others run in their own default place or run a registered workflow.
    let chooses = req.workspace.is_some() || req.workflow_name.is_some() || req.builder.is_some();
    if chooses && req.component.is_some() && by.role() != Role::Admin {
        return Err(ApiError::forbidden(format!(
            "{} has the {} role, which may not choose the workspace, workflow or builder of a run; run a registered workflow instead",
            by.name(),
            by.role()
        )));
    }
    let reg = state.registry.read().unwrap_or_else(|p| p.into_inner());
    match (&req.component, &req.workflow) {
        (Some(c), None) => {
            let component = reg
                .component(c)
                .ok_or_else(|| ApiError::not_found(format!("no registered component {c:?}")))?;
            let name = if c.starts_with("sha256:") {
                "step"
            } else {
                c.as_str()
            };
            let ctx = step_context(req, name, user)?;
            Ok((
                Target::Step {
                    component,
                    ctx: Box::new(ctx),
                },
                c.clone(),
            ))
        }
        (None, Some(w)) => {
            let single_only = req.workspace.is_some()
                || req.workflow_name.is_some()
                || req.builder.is_some()
                || !req.integrations.is_empty()
                || !req.allow_keys.is_empty();
            if single_only {
                return Err(ApiError::bad_request(
                    "workspace, workflow_name, builder, integrations and allow_keys apply to a component; a workflow's manifest declares them",
                ));
            }
            let wf = reg
                .workflows
                .get(w)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("no workflow {w:?}")))?;
            Ok((Target::Workflow(wf), w.clone()))
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of component and workflow",
        )),
    }
}

/// What a step did, whether or not it succeeded.
fn counts(result: &Result<RunOutcome, RunFailure>) -> RunCounts {
    match result {
        Ok(o) => o.counts,
        Err(f) => f.counts,
    }
}

fn step_view(
    name: &str,
    elapsed_ms: f64,
    result: &Result<RunOutcome, RunFailure>,
    refusals: Vec<RefusalView>,
) -> StepView {
    let (logs, credentials) = match result {
        Ok(o) => (&o.logs, &o.credentials),
        Err(f) => (&f.logs, &f.credentials),
    };
    StepView {
        name: name.to_owned(),
        status: if result.is_ok() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        },
        duration_ms: elapsed_ms,
        fetches: counts(result).fetches,
        credentials: credentials
            .iter()
            .map(|c| CredentialView {
                key: c.key.clone(),
                tier: c.tier.to_string(),
                scope: c.scope.clone(),
            })
            .collect(),
        refusals,
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

fn refusal_views(refusals: &[latchkey_host::Refusal]) -> Vec<RefusalView> {
    refusals
        .iter()
        .map(|r| RefusalView {
            key: r.key.clone(),
            reason: r.reason.clone(),
        })
        .collect()
}

/// Parses a step's output as JSON where it is, else keeps it as a string.
fn output_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// Runs `target` to its end and records the outcome in the run table.
async fn execute(state: Arc<AppState>, id: String, user: String, target: Target, input: String) {
    let permit = state.run_slots.acquire().await;
    if let Some(e) = state.runs().get_mut(&id) {
        e.view.status = RunStatus::Running;
    }
    state.metrics.run_started();
    let started = Instant::now();
    let (steps, output, error, not_run, done) = match target {
        Target::Step { component, ctx } => {
            let t = Instant::now();
            let result = state.latchkey.run_step(&component.step, &ctx, &input).await;
            let refusals = match &result {
                Ok(_) => Vec::new(),
                Err(failure) => failure.refusals.clone(),
            };
            let view = step_view(
                &ctx.step.name,
                t.elapsed().as_secs_f64() * 1000.0,
                &result,
                refusal_views(&refusals),
            );
            let output = result.as_ref().ok().map(|o| output_value(&o.output));
            let error = view.error.clone();
            (vec![view], output, error, Vec::new(), vec![counts(&result)])
        }
        Target::Workflow(w) => {
            let request = RunRequest {
                run_id: id.clone(),
                user: &user,
                input: &input,
            };
            let run = state
                .latchkey
                .run_workflow(&w.workflow, &w.steps, &request, |_: &StepReport| {})
                .await;
            let views: Vec<StepView> = run
                .steps
                .iter()
                .map(|s| {
                    step_view(
                        &s.name,
                        s.elapsed.as_secs_f64() * 1000.0,
                        &s.result,
                        refusal_views(&s.refusals),
                    )
                })
                .collect();
            let error = run.failed().and_then(|f| {
                f.result
                    .as_ref()
                    .err()
                    .map(|e| format!("step {} failed: {}", f.name, e.error))
            });
            let output = run.output().map(output_value);
            let done = run.steps.iter().map(|s| counts(&s.result)).collect();
            (views, output, error, run.not_run.clone(), done)
        }
    };
    let ok = error.is_none();
    let creds: u64 = steps.iter().map(|s| s.credentials.len() as u64).sum();
    state
        .metrics
        .run_ended(ok, started.elapsed().as_secs_f64(), &done, creds);
    if let Some(e) = state.runs().get_mut(&id) {
        e.view.status = if ok {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        e.view.finished_at_ms = Some(unix_millis());
        e.view.output = output;
        e.view.error = error;
        e.view.steps = steps;
        e.view.not_run = not_run;
    }
    drop(permit);
    state.active_runs.fetch_sub(1, Ordering::SeqCst);
    state.run_ended.notify_waiters();
}

/// `POST /v1/runs`: starts a run as the caller. With `wait`, answers when it has ended.
#[utoipa::path(post, path = "/v1/runs", request_body = StartRun, responses((status = 202, description = "started", body = RunView), (status = 200, description = "ended (wait: true)", body = RunView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody), (status = 503, description = "draining", body = ErrorBody)), security(("bearer" = [])))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<StartRun>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down; start the run on another host",
        ));
    }
    // Runs waiting for a slot hold their input: bound them too.
    let queue = state.limits.max_concurrent_runs.saturating_mul(4);
    if state.active() >= queue {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            format!("{queue} runs are already running or waiting; try again shortly"),
        ));
    }
    let user = by.name().to_owned();
    let (target, name) = target(&state, &req, &by)?;
    let id = match &target {
        Target::Step { ctx, .. } => ctx.run_id.clone(),
        Target::Workflow(_) => new_run_id(),
    };
    let view = RunView {
        id: id.clone(),
        kind: match &target {
            Target::Step { .. } => "component",
            Target::Workflow(_) => "workflow",
        }
        .to_owned(),
        target: name,
        user: user.clone(),
        status: RunStatus::Queued,
        started_at_ms: unix_millis(),
        finished_at_ms: None,
        output: None,
        error: None,
        steps: Vec::new(),
        not_run: Vec::new(),
    };
    let keep = state.limits.keep_runs;
    state.runs().insert(
        RunEntry {
            owner: user.clone(),
            view: view.clone(),
        },
        keep,
    );
    state.active_runs.fetch_add(1, Ordering::SeqCst);
    let input = req.input.to_string();
    let task = tokio::spawn(execute(state.clone(), id.clone(), user, target, input));
    if !req.wait {
        return Ok((StatusCode::ACCEPTED, Json(view)));
    }
    task.await.map_err(ApiError::internal)?;
    let done = visible(&state, &by, &id)?;
    Ok((StatusCode::OK, Json(done)))
}

/// A run the caller may see: their own, or any for an admin. Others are "not found", so
/// that run ids of other principals cannot be probed.
fn visible(state: &AppState, by: &Principal, id: &str) -> Result<RunView, ApiError> {
    let runs = state.runs();
    match runs.get(id) {
        Some(e) if e.owner == by.name() || by.role() == Role::Admin => Ok(e.view.clone()),
        _ => Err(ApiError::not_found(format!("no run {id}"))),
    }
}

/// `GET /v1/runs/{id}`.
#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    Ok(Json(visible(&state, &by, &id)?))
}

/// `GET /v1/runs`: the caller's newest 100 runs (an admin's: everyone's).
#[utoipa::path(get, path = "/v1/runs", responses((status = 200, body = Vec<RunView>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<RunView>>, ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    let runs = state.runs();
    Ok(Json(
        runs.newest()
            .filter(|e| e.owner == by.name() || by.role() == Role::Admin)
            .take(100)
            .map(|e| e.view.clone())
            .collect(),
    ))
}

/// `GET /v1/runs/{id}/audit`: the run's audit records.
#[utoipa::path(get, path = "/v1/runs/{id}/audit", params(("id" = String, Path)), responses((status = 200, body = AuditRecords), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<AuditRecords>, ApiError> {
    state.latchkey.authorize(&by, Action::ReadAudit)?;
    visible(&state, &by, &id)?;
    let page = state.latchkey.audit(
        &by,
        &AuditQuery {
            run: Some(id),
            ..AuditQuery::default()
        },
    )?;
    Ok(Json(AuditRecords {
        records: page.records,
        unreadable: page.unreadable,
    }))
}
