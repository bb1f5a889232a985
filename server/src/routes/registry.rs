//! `/v1/components` and `/v1/workflows`: code registered to run (admins only: it runs with
//! the store's credentials). The façade keeps registrations in the store, so every host
//! sharing it runs the same code, and compiles each component once into the cache.

use crate::api::ErrorBody;
use crate::api::{CheckView, ComponentUpload, ComponentView, ManifestUpload, WorkflowView};
use crate::error::{ApiError, chain};
use crate::extract::{Caller, body_bytes};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use latchkey_host::ComponentSpec;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentQuery {
    name: Option<String>,
    description: Option<String>,
    /// A JSON Schema of the component's input, as JSON text.
    input_schema: Option<String>,
}

/// `POST /v1/components?name=NAME` with the `.wasm` as the body (`application/wasm`).
#[utoipa::path(post, path = "/v1/components", params(("name" = Option<String>, Query, description = "the name runs and workflows refer to it by"), ("description" = Option<String>, Query, description = "what it does"), ("input_schema" = Option<String>, Query, description = "a JSON Schema of its input, as JSON text: valid, admitting an object, with no reference outside itself; runs whose input does not match are refused")), request_body(content = inline(ComponentUpload), content_type = "application/wasm"), responses((status = 201, body = ComponentView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 413, description = "over --max-component-mib", body = ErrorBody), (status = 415, description = "not application/wasm", body = ErrorBody)), security(("bearer" = [])))]
pub async fn register_component(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    query: Result<Query<ComponentQuery>, QueryRejection>,
    req: Request,
) -> Result<(StatusCode, Json<ComponentView>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let input_schema = q
        .input_schema
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("input_schema: not JSON: {e}")))?;
    let wasm = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/wasm"));
    if !wasm {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the component as Content-Type: application/wasm",
        ));
    }
    let bytes = body_bytes(req, &()).await?;
    let spec = ComponentSpec {
        name: q.name,
        description: q.description,
        input_schema,
    };
    // Checking and compiling a component is CPU-bound work: off the request workers.
    let st = state.clone();
    let info =
        tokio::task::spawn_blocking(move || st.latchkey.register_component(&by, &bytes, &spec))
            .await
            .map_err(ApiError::internal)?
            .map_err(refused_component)?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// A refused component, with the whole chain of why.
fn refused_component(e: latchkey_host::Error) -> ApiError {
    match e {
        latchkey_host::Error::Component(_)
        | latchkey_host::Error::NotAComponent
        | latchkey_host::Error::Load { .. } => {
            ApiError::bad_request(format!("the component was refused: {}", chain(&e)))
        }
        other => other.into(),
    }
}

/// `GET /v1/components`.
#[utoipa::path(get, path = "/v1/components", responses((status = 200, body = Vec<ComponentView>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_components(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<ComponentView>>, ApiError> {
    let st = state.clone();
    let list = tokio::task::spawn_blocking(move || st.latchkey.components(&by))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(list.into_iter().map(ComponentView::from).collect()))
}

/// `PUT /v1/workflows/{name}` with the manifest (TOML) as the body; its `name` must be
/// `{name}` and its components registered.
#[utoipa::path(put, path = "/v1/workflows/{name}", params(("name" = String, Path)), request_body(content = inline(ManifestUpload), content_type = "application/toml"), responses((status = 200, body = WorkflowView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn register_workflow(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(name): Path<String>,
    req: Request,
) -> Result<Json<WorkflowView>, ApiError> {
    let bytes = body_bytes(req, &()).await?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("the manifest is not UTF-8"))?;
    let st = state.clone();
    let registered =
        tokio::task::spawn_blocking(move || st.latchkey.register_workflow(&by, &name, &text))
            .await
            .map_err(ApiError::internal)??;
    Ok(Json(WorkflowView::from(&registered)))
}

/// `GET /v1/workflows`.
#[utoipa::path(get, path = "/v1/workflows", responses((status = 200, body = Vec<WorkflowView>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_workflows(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<WorkflowView>>, ApiError> {
    let st = state.clone();
    let list = tokio::task::spawn_blocking(move || st.latchkey.workflows(&by))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(list.iter().map(WorkflowView::from).collect()))
}

/// `POST /v1/workflows/{name}/check`: what a run by the caller would load and resolve
/// (tiers, scopes and versions: secret metadata, so members and admins only).
#[utoipa::path(post, path = "/v1/workflows/{name}/check", operation_id = "check_workflow", params(("name" = String, Path)), responses((status = 200, body = CheckView), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<CheckView>, ApiError> {
    let st = state.clone();
    let report = tokio::task::spawn_blocking(move || st.latchkey.check_registered(&by, &name))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(CheckView::of(&report, |e| chain(e))))
}

/// `GET /v1/scripts`: what the platform allows agent-written scripts (the MCP tool
/// `run_script`): whether they run, and the only keys they may ask for.
#[utoipa::path(get, path = "/v1/scripts", responses((status = 200, body = latchkey_host::ScriptPolicy), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn script_policy(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<latchkey_host::ScriptPolicy>, ApiError> {
    let st = state.clone();
    let policy = tokio::task::spawn_blocking(move || st.latchkey.script_policy(&by))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(policy))
}

/// `PUT /v1/scripts`: sets it (admins). Every host sharing the store follows it from its
/// next script.
#[utoipa::path(put, path = "/v1/scripts", request_body = latchkey_host::ScriptPolicy, responses((status = 200, description = "the policy as stored (keys normalised)", body = latchkey_host::ScriptPolicy), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_script_policy(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    crate::extract::JsonBody(policy): crate::extract::JsonBody<latchkey_host::ScriptPolicy>,
) -> Result<Json<latchkey_host::ScriptPolicy>, ApiError> {
    let st = state.clone();
    let policy = tokio::task::spawn_blocking(move || st.latchkey.set_script_policy(&by, policy))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(policy))
}
