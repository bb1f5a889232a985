//! `/v1/secrets`: write-only secret management. Values go in (plain or sealed to the
//! server's key); only metadata comes out.

use crate::api::ErrorBody;
use crate::api::{
    BindingBody, DamagedSecret, ListedSecret, PutSecret, RotateSecret, SecretView, ValueBody,
};
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use latchkey_host::{Binding, BindingSpec, Grant, HostPattern, InjectLocation, TokenEndpoint};
use latchkey_host::{CredentialKey, SecretValue};
use latchkey_host::{CredentialKind, Scope, SecretSpec};
use serde::Deserialize;
use std::sync::Arc;

/// `?scope=`: `platform`, `workspace:W` (`workspace` alone is `workspace:default`),
/// `workflow:W/F`, `user:U`, `user:U@W/F`, `builder:B@W/F`. Default `workspace:default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    scope: Option<String>,
}

impl ScopeQuery {
    fn scope(&self) -> Result<Scope, ApiError> {
        let text = match self.scope.as_deref() {
            None | Some("workspace") => "workspace:default",
            Some(s) => s,
        };
        Scope::parse(text).map_err(|e| ApiError::bad_request(format!("scope: {e}")))
    }
}

/// The scope query, with a precise error.
pub fn scope_of(q: Result<Query<ScopeQuery>, QueryRejection>) -> Result<Scope, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    q.scope()
}

fn key_of(p: Result<Path<String>, PathRejection>) -> Result<CredentialKey, ApiError> {
    let Path(k) = p.map_err(|e| ApiError::bad_request(e.body_text()))?;
    CredentialKey::new(&k).map_err(|e| ApiError::bad_request(format!("key: {e}")))
}

/// The key and scope a request addresses, once `by` may do `action`: the role is
/// checked first, so a refused caller learns nothing about what exists.
fn addressed(
    state: &AppState,
    by: &latchkey_host::Principal,
    action: latchkey_host::Action,
    key: Result<Path<String>, PathRejection>,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<(CredentialKey, Scope), ApiError> {
    state.latchkey.authorize(by, action)?;
    Ok((key_of(key)?, scope_of(scope)?))
}

/// The value of a request: exactly one of `value` and `sealed_value`.
fn value_of(state: &AppState, body: ValueBody) -> Result<SecretValue, ApiError> {
    match (body.value, body.sealed_value) {
        (Some(plain), None) => {
            let bytes = zeroize::Zeroizing::new(plain.into_bytes());
            SecretValue::new(bytes.to_vec())
                .map_err(|e| ApiError::bad_request(format!("value: {e}")))
        }
        (None, Some(sealed)) => {
            let sealed = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(sealed.trim())
                    .map_err(|_| ApiError::bad_request("sealed_value is not base64"))?,
            );
            state
                .latchkey
                .open_sealed(&sealed)
                .map_err(|e| ApiError::bad_request(format!("sealed_value: {e}")))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either value or sealed_value, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "missing the value: give value or sealed_value",
        )),
    }
}

/// Builds a binding exactly as `latchkey secret set` does.
pub fn binding_of(b: &BindingBody) -> Result<Binding, ApiError> {
    let hosts = b
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("binding.hosts: {e}")))?;
    let locations = b
        .locations
        .iter()
        .map(|l| InjectLocation::parse(l))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(format!("binding.locations: {e}")))?;
    BindingSpec {
        hosts,
        locations,
        allow_http: b.allow_http,
        methods: b.methods.clone(),
        path_prefixes: b.path_prefixes.clone(),
        allow_internal: b.allow_internal,
        signer: b.signer.clone(),
    }
    .build()
    .map_err(|e| ApiError::bad_request(format!("binding: {e}")))
}

/// The token endpoint of an `oauth2` secret, checked.
fn token_endpoint_of(o: &crate::api::OAuthBody) -> Result<TokenEndpoint, ApiError> {
    let grant = match o.grant.as_deref() {
        None => Grant::default(),
        Some(g) => Grant::parse(g).ok_or_else(|| {
            ApiError::bad_request(format!(
                "oauth.grant {g:?}: use refresh-token or client-credentials"
            ))
        })?,
    };
    TokenEndpoint::new(&o.url, o.scope.clone(), grant)
        .map_err(|e| ApiError::bad_request(format!("oauth: {e}")))
}

/// `PUT /v1/secrets/{key}?scope=`: create, or replace value and binding.
#[utoipa::path(put, path = "/v1/secrets/{key}", operation_id = "put_secret", params(("key" = String, Path, description = "credential key, A-Z 0-9 _"), ("scope" = Option<String>, Query, description = "platform, workspace:W, workflow:W/F, user:U, user:U@W/F, builder:B@W/F (default workspace:default)")), request_body = PutSecret, responses((status = 409, description = "changed by someone else since it was read (another admin, another host): nothing was written", body = ErrorBody), (status = 201, description = "created", body = SecretView), (status = 200, description = "replaced", body = SecretView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody)), security(("bearer" = [])))]
pub async fn put(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    key: Result<Path<String>, PathRejection>,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
    JsonBody(body): JsonBody<PutSecret>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let (key, scope) = addressed(
        &state,
        &by,
        latchkey_host::Action::ManageSecrets,
        key,
        scope,
    )?;
    let binding = binding_of(&body.binding)?;
    let kind = match body.kind.as_deref() {
        None => CredentialKind::Static,
        Some(k) => CredentialKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind {k:?}: use one of {}",
                CredentialKind::NAMES.join(", ")
            ))
        })?,
    };
    let oauth = body.oauth.as_ref().map(token_endpoint_of).transpose()?;
    let value = value_of(&state, body.value)?;
    let spec = SecretSpec {
        integration: body.integration,
        binding,
        allow_weak_value: body.allow_weak_value,
        quota: body.quota.unwrap_or_default(),
        kind,
        oauth,
    };
    let meta = state.latchkey.set_secret(&by, &scope, &key, value, spec)?;
    let status = if meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SecretView {
            meta,
            last_used: None,
        }),
    ))
}

/// `POST /v1/secrets/{key}/rotate?scope=`.
#[utoipa::path(post, path = "/v1/secrets/{key}/rotate", operation_id = "rotate_secret", params(("key" = String, Path, description = "credential key, A-Z 0-9 _"), ("scope" = Option<String>, Query, description = "platform, workspace:W, workflow:W/F, user:U, user:U@W/F, builder:B@W/F (default workspace:default)")), request_body = RotateSecret, responses((status = 409, description = "changed by someone else since it was read (another admin, another host): nothing was written", body = ErrorBody), (status = 200, body = SecretView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    key: Result<Path<String>, PathRejection>,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
    JsonBody(body): JsonBody<RotateSecret>,
) -> Result<Json<SecretView>, ApiError> {
    let (key, scope) = addressed(
        &state,
        &by,
        latchkey_host::Action::ManageSecrets,
        key,
        scope,
    )?;
    let value = value_of(&state, body.value)?;
    let meta = state.latchkey.rotate_secret_with_quota(
        &by,
        &scope,
        &key,
        value,
        body.allow_weak_value,
        body.quota,
    )?;
    Ok(Json(SecretView {
        meta,
        last_used: None,
    }))
}

/// `DELETE /v1/secrets/{key}?scope=`.
#[utoipa::path(delete, path = "/v1/secrets/{key}", operation_id = "delete_secret", params(("key" = String, Path, description = "credential key, A-Z 0-9 _"), ("scope" = Option<String>, Query, description = "platform, workspace:W, workflow:W/F, user:U, user:U@W/F, builder:B@W/F (default workspace:default)")), responses((status = 200, body = SecretView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    key: Result<Path<String>, PathRejection>,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<SecretView>, ApiError> {
    let (key, scope) = addressed(
        &state,
        &by,
        latchkey_host::Action::ManageSecrets,
        key,
        scope,
    )?;
    let meta = state.latchkey.delete_secret(&by, &scope, &key)?;
    Ok(Json(SecretView {
        meta,
        last_used: None,
    }))
}

/// `GET /v1/secrets/{key}?scope=`: metadata and last use.
#[utoipa::path(get, path = "/v1/secrets/{key}", operation_id = "describe_secret", params(("key" = String, Path, description = "credential key, A-Z 0-9 _"), ("scope" = Option<String>, Query, description = "platform, workspace:W, workflow:W/F, user:U, user:U@W/F, builder:B@W/F (default workspace:default)")), responses((status = 200, body = SecretView), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn describe(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    key: Result<Path<String>, PathRejection>,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<SecretView>, ApiError> {
    let (key, scope) = addressed(&state, &by, latchkey_host::Action::ReadMetadata, key, scope)?;
    let meta = state
        .latchkey
        .describe_secret(&by, &scope, &key)?
        .ok_or_else(|| ApiError::not_found(format!("no secret {key} in scope {scope}")))?;
    let last_used = state.latchkey.last_use(&by, &scope, &key)?;
    Ok(Json(SecretView { meta, last_used }))
}

/// `GET /v1/secrets?scope=`: every secret's metadata and last use (optionally one scope).
#[utoipa::path(get, path = "/v1/secrets", operation_id = "list_secrets", params(("scope" = Option<String>, Query, description = "platform, workspace:W, workflow:W/F, user:U, user:U@W/F, builder:B@W/F (default workspace:default)")), responses((status = 200, body = Vec<ListedSecret>), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    scope: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Vec<ListedSecret>>, ApiError> {
    let Query(q) = scope.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let scope = match q.scope {
        None => None,
        Some(_) => Some(q.scope()?),
    };
    Ok(Json(listed(&state.latchkey, &by, scope.as_ref())?))
}

/// The secrets of `scope` (all if `None`) `by` may list, each with its last use: the
/// body of `GET /v1/secrets` and of the MCP resource `latchkey://secrets`.
pub(crate) fn listed(
    latchkey: &latchkey_host::Latchkey,
    by: &latchkey_host::Principal,
    scope: Option<&Scope>,
) -> Result<Vec<ListedSecret>, latchkey_host::Error> {
    let entries = latchkey.list_secrets(by, scope)?;
    let mut last_uses = latchkey.last_uses(by)?;
    Ok(entries
        .into_iter()
        .map(|e| match e {
            Ok(meta) => ListedSecret::Ok(Box::new(SecretView {
                last_used: last_uses.remove(&(meta.scope.to_string(), meta.key.to_string())),
                meta,
            })),
            Err(e) => ListedSecret::Damaged(DamagedSecret {
                error: e.to_string(),
            }),
        })
        .collect())
}
