//! `/v1/components` and `/v1/workflows`: code registered to run (admins only: it runs with
//! the store's credentials), kept under the server's data directory so that a restart
//! finds it again, and compiled once into the cache.

use crate::api::ErrorBody;
use crate::api::{
    CheckKeyView, CheckStepView, CheckView, ComponentView, WorkflowStepView, WorkflowView,
};
use crate::error::{ApiError, chain};
use crate::extract::{Caller, body_bytes};
use crate::state::{AppState, Component, RegisteredWorkflow, Registry};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use latchkey_host::Action;
use latchkey_host::workflow::Workflow;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// What survives a restart: names and workflow manifests (components are files).
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    names: BTreeMap<String, String>,
    workflows: BTreeMap<String, String>,
}

fn components_dir(data: &FsPath) -> PathBuf {
    data.join("components")
}

fn component_file(data: &FsPath, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    components_dir(data).join(format!("{hex}.wasm"))
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it, then synced).
fn write_atomic(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn save(state: &AppState, registry: &Registry) -> Result<(), ApiError> {
    let saved = Saved {
        names: registry.names.clone(),
        workflows: registry
            .workflows
            .iter()
            .map(|(n, w)| (n.clone(), w.text.clone()))
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&saved).map_err(ApiError::internal)?;
    write_atomic(&state.data_dir.join("registry.json"), &json).map_err(ApiError::internal)
}

/// Component names: 1 to 100 of `A-Z a-z 0-9 . _ -`, so that they never look like a digest
/// or a path.
fn check_component_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "name: use 1 to 100 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Loads (compiles through the cache, checks imports) a component off the async workers.
async fn load(
    state: &Arc<AppState>,
    bytes: Vec<u8>,
) -> Result<latchkey_host::sandbox::Step, ApiError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.latchkey.load(&bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(format!("the component was refused: {}", chain(&e))))
}

/// Reloads what was registered before a restart. A component or workflow that no longer
/// loads is skipped with a warning, not fatal.
pub async fn restore(state: &Arc<AppState>) -> std::io::Result<()> {
    std::fs::create_dir_all(components_dir(&state.data_dir))?;
    let saved: Saved = match std::fs::read(state.data_dir.join("registry.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => return Err(e),
    };
    for entry in std::fs::read_dir(components_dir(&state.data_dir))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let size = bytes.len();
        match load(state, bytes).await {
            Ok(step) => {
                let mut reg = state.registry.write().unwrap_or_else(|p| p.into_inner());
                reg.components.insert(
                    digest.clone(),
                    Arc::new(Component {
                        digest,
                        size,
                        step: Arc::new(step),
                    }),
                );
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e.message, "skipping a registered component")
            }
        }
    }
    state
        .registry
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .names = saved.names;
    for (name, text) in saved.workflows {
        match prepare_workflow(state, &text) {
            Ok(w) => {
                state
                    .registry
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .workflows
                    .insert(name, Arc::new(w));
            }
            Err(e) => {
                tracing::warn!(workflow = %name, error = %e.message, "skipping a registered workflow")
            }
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentQuery {
    name: Option<String>,
}

/// `POST /v1/components?name=NAME` with the `.wasm` as the body (`application/wasm`).
#[utoipa::path(post, path = "/v1/components", params(("name" = Option<String>, Query)), request_body(content = Vec<u8>, content_type = "application/wasm"), responses((status = 201, body = ComponentView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 413, description = "over --max-component-mib", body = ErrorBody), (status = 415, description = "not application/wasm", body = ErrorBody)), security(("bearer" = [])))]
pub async fn register_component(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    query: Result<Query<ComponentQuery>, QueryRejection>,
    req: Request,
) -> Result<(StatusCode, Json<ComponentView>), ApiError> {
    state.latchkey.authorize(&by, Action::ManageWorkflows)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    if let Some(n) = &q.name {
        check_component_name(n)?;
    }
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
    let bytes = body_bytes(req, &()).await?.to_vec();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let size = bytes.len();
    let file = component_file(&state.data_dir, &digest);
    let step = load(&state, bytes.clone()).await?;
    write_atomic(&file, &bytes).map_err(ApiError::internal)?;
    let mut reg = state.registry.write().unwrap_or_else(|p| p.into_inner());
    reg.components.insert(
        digest.clone(),
        Arc::new(Component {
            digest: digest.clone(),
            size,
            step: Arc::new(step),
        }),
    );
    if let Some(n) = &q.name {
        reg.names.insert(n.clone(), digest.clone());
    }
    save(&state, &reg)?;
    Ok((
        StatusCode::CREATED,
        Json(ComponentView {
            digest,
            name: q.name,
            size,
        }),
    ))
}

/// `GET /v1/components`.
#[utoipa::path(get, path = "/v1/components", responses((status = 200, body = Vec<ComponentView>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_components(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<ComponentView>>, ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    let reg = state.registry.read().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<ComponentView> = reg
        .components
        .values()
        .map(|c| ComponentView {
            digest: c.digest.clone(),
            name: reg
                .names
                .iter()
                .find(|(_, d)| **d == c.digest)
                .map(|(n, _)| n.clone()),
            size: c.size,
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
    Ok(Json(out))
}

/// Parses a manifest whose `component` fields name registered components, and points
/// them at the stored files.
fn prepare_workflow(state: &AppState, text: &str) -> Result<RegisteredWorkflow, ApiError> {
    let mut workflow = Workflow::parse(text, FsPath::new("workflow.toml"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut digests = Vec::new();
    {
        let reg = state.registry.read().unwrap_or_else(|p| p.into_inner());
        for step in &mut workflow.steps {
            let name = step.component.to_string_lossy().into_owned();
            let c = reg.component(&name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "step {}: no registered component {name:?} (register it with POST /v1/components?name=…)",
                    step.policy.name
                ))
            })?;
            step.component = component_file(&state.data_dir, &c.digest);
            digests.push(c.digest.clone());
        }
    }
    let steps = state
        .latchkey
        .load_workflow(&workflow)
        .map_err(|e| ApiError::bad_request(chain(&e)))?;
    Ok(RegisteredWorkflow {
        workflow,
        text: text.to_owned(),
        digests,
        steps,
    })
}

fn view(w: &RegisteredWorkflow) -> WorkflowView {
    WorkflowView {
        name: w.workflow.name.clone(),
        workspace: w.workflow.workspace.clone(),
        steps: w
            .workflow
            .steps
            .iter()
            .zip(&w.digests)
            .map(|(s, d)| WorkflowStepView {
                name: s.policy.name.clone(),
                component: d.clone(),
                keys: s
                    .declared_keys(w.workflow.allow.as_ref())
                    .map(|keys| keys.iter().map(|k| k.to_string()).collect()),
            })
            .collect(),
    }
}

/// `PUT /v1/workflows/{name}` with the manifest (TOML) as the body; its `name` must be
/// `{name}` and its components registered.
#[utoipa::path(put, path = "/v1/workflows/{name}", params(("name" = String, Path)), request_body(content = String, content_type = "application/toml"), responses((status = 200, body = WorkflowView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn register_workflow(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(name): Path<String>,
    req: Request,
) -> Result<Json<WorkflowView>, ApiError> {
    state.latchkey.authorize(&by, Action::ManageWorkflows)?;
    let bytes = body_bytes(req, &()).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the manifest is not UTF-8"))?
        .to_owned();
    let st = state.clone();
    let registered = tokio::task::spawn_blocking(move || prepare_workflow(&st, &text))
        .await
        .map_err(ApiError::internal)??;
    if registered.workflow.name != name {
        return Err(ApiError::bad_request(format!(
            "the manifest names the workflow {:?}, not {name:?}",
            registered.workflow.name
        )));
    }
    let out = view(&registered);
    let mut reg = state.registry.write().unwrap_or_else(|p| p.into_inner());
    reg.workflows.insert(name, Arc::new(registered));
    save(&state, &reg)?;
    Ok(Json(out))
}

/// `GET /v1/workflows`.
#[utoipa::path(get, path = "/v1/workflows", responses((status = 200, body = Vec<WorkflowView>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_workflows(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<WorkflowView>>, ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    let reg = state.registry.read().unwrap_or_else(|p| p.into_inner());
    Ok(Json(reg.workflows.values().map(|w| view(w)).collect()))
}

/// `POST /v1/workflows/{name}/check`: what a run by the caller would load and resolve.
#[utoipa::path(post, path = "/v1/workflows/{name}/check", params(("name" = String, Path)), responses((status = 200, body = CheckView), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(name): Path<String>,
) -> Result<Json<CheckView>, ApiError> {
    state.latchkey.authorize(&by, Action::Run)?;
    let w = state
        .registry
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .workflows
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no workflow {name:?}")))?;
    let st = state.clone();
    let user = by.name().to_owned();
    let report = tokio::task::spawn_blocking(move || st.latchkey.check(&by, &w.workflow, &user))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(CheckView {
        user: report.user.clone(),
        problems: report.problems(),
        steps: report
            .steps
            .iter()
            .map(|s| CheckStepView {
                name: s.name.clone(),
                component: match &s.load {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => chain(e),
                },
                keys: s.keys.as_ref().map(|keys| {
                    keys.iter()
                        .map(|k| CheckKeyView {
                            key: k.key.to_string(),
                            resolution: match &k.resolution {
                                Ok(r) => Ok(format!(
                                    "tier {} (scope {}, integration {}, version {})",
                                    r.tier, r.meta.scope, r.meta.integration, r.meta.version
                                )),
                                Err(e) => Err(e.to_string()),
                            },
                        })
                        .collect()
                }),
            })
            .collect(),
    }))
}
