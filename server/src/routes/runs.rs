//! `/v1/runs`: start a run of a registered component or workflow as the caller, watch it,
//! read its report and audit records. The façade decides everything (who may choose what,
//! who sees which run) and keeps the runs in the store: any host sharing it answers for
//! any run.

use crate::api::ErrorBody;
use crate::api::{AuditRecords, RunView, StartRun};
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use latchkey_host::{RunChoices, RunSpec, RunTarget};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `POST /v1/runs`: starts a run as the caller. With `wait`, answers when it has ended.
#[utoipa::path(post, path = "/v1/runs", operation_id = "start_run", request_body = StartRun, responses((status = 202, description = "started", body = RunView), (status = 200, description = "ended (wait: true)", body = RunView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody), (status = 503, description = "draining", body = ErrorBody)), security(("bearer" = [])))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    JsonBody(req): JsonBody<StartRun>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down; start the run on another host",
        ));
    }
    let target = match (req.component, req.workflow) {
        (Some(c), None) => RunTarget::Component(c),
        (None, Some(w)) => RunTarget::Workflow(w),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of component and workflow",
            ));
        }
    };
    let spec = RunSpec {
        target,
        input: req.input.to_string(),
        choices: RunChoices {
            workspace: req.workspace,
            workflow: req.workflow_name,
            builder: req.builder,
            integrations: req.integrations,
            allow_keys: req.allow_keys,
        },
    };
    if !req.wait {
        let started = state.latchkey.start_run(&by, spec).await?;
        return Ok((StatusCode::ACCEPTED, Json(RunView::from(&started.record))));
    }
    let ended = state.latchkey.run(&by, spec).await?;
    Ok((StatusCode::OK, Json(RunView::from(&ended))))
}

/// `GET /v1/runs/{id}`.
#[utoipa::path(get, path = "/v1/runs/{id}", operation_id = "get_run", params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(RunView::from(&state.latchkey.run_record(&by, &id)?)))
}

/// `?before=RUN&limit=N` of `GET /v1/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs started before this run (the last id of the previous page).
    before: Option<String>,
    /// At most this many (1 to 100, default 100).
    limit: Option<usize>,
}

/// `GET /v1/runs`: the caller's runs (an admin's: everyone's), newest first, a page at a
/// time: the next page is `?before=` the last id of this one.
#[utoipa::path(get, path = "/v1/runs", operation_id = "list_runs", params(RunsQuery), responses((status = 200, body = Vec<RunView>), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit: between 1 and 100"));
    }
    let st = state.clone();
    let runs =
        tokio::task::spawn_blocking(move || st.latchkey.runs(&by, q.before.as_deref(), limit))
            .await
            .map_err(ApiError::internal)??;
    Ok(Json(runs.iter().map(RunView::from).collect()))
}

/// `GET /v1/runs/{id}/audit`: the run's audit records.
#[utoipa::path(get, path = "/v1/runs/{id}/audit", operation_id = "run_audit", params(("id" = String, Path)), responses((status = 200, body = AuditRecords), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<AuditRecords>, ApiError> {
    let page = state.latchkey.run_audit(&by, &id)?;
    Ok(Json(AuditRecords {
        records: page.records,
        unreadable: page.unreadable,
    }))
}
