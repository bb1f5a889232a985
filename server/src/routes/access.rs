//! Who is calling, tokens, members, the transit key and the audit trail.

use crate::api::ErrorBody;
use crate::api::{AuditRecords, CreateToken, CreatedToken, MemberRemoved, PublicKey, WhoAmI};
use crate::error::ApiError;
use crate::extract::{Caller, JsonBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use latchkey_host::AuditQuery;
use latchkey_host::TokenMeta;
use serde::Deserialize;
use std::sync::Arc;

/// `GET /v1/whoami`.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody)), security(("bearer" = [])))]
pub async fn whoami(Caller(by): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: by.name().to_owned(),
        role: by.role(),
    })
}

/// `GET /v1/public-key`: what clients seal values to. Public; no token needed.
#[utoipa::path(get, path = "/v1/public-key", responses((status = 200, description = "the key values may be sealed to", body = PublicKey)))]
pub async fn public_key(State(state): State<Arc<AppState>>) -> Json<PublicKey> {
    Json(PublicKey {
        algorithm: "x25519-sealed-box".to_owned(),
        public_key: base64::engine::general_purpose::STANDARD
            .encode(state.latchkey.transit_public_key()),
    })
}

/// `POST /v1/tokens`: a token for a principal, shown once.
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateToken, responses((status = 201, description = "the token, shown once", body = CreatedToken), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 413, description = "body over the limit", body = ErrorBody), (status = 415, description = "not application/json", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if body.expires_in_secs == Some(0) {
        return Err(ApiError::bad_request(
            "expires_in_secs must be at least 1 (leave it out for a token that lasts until revoked)",
        ));
    }
    let expires_in = body.expires_in_secs.map(std::time::Duration::from_secs);
    let (meta, token) = state
        .latchkey
        .create_expiring_token(&by, &body.name, body.role, expires_in)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.expose().to_owned(),
            meta,
        }),
    ))
}

/// `GET /v1/tokens`.
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, description = "token records, never tokens", body = Vec<TokenMeta>), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
) -> Result<Json<Vec<TokenMeta>>, ApiError> {
    Ok(Json(state.latchkey.list_tokens(&by)?))
}

/// `DELETE /v1/tokens/{id}`.
#[utoipa::path(delete, path = "/v1/tokens/{id}", params(("id" = String, Path)), responses((status = 200, description = "the token's record, now revoked", body = TokenMeta), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenMeta>, ApiError> {
    Ok(Json(state.latchkey.revoke_token(&by, &id)?))
}

/// `DELETE /v1/members/{user}`: revokes their tokens, deletes their secrets (every secret
/// they created, every secret in their own scopes); a name no user could have is a 400.
#[utoipa::path(delete, path = "/v1/members/{user}", params(("user" = String, Path)), responses((status = 200, body = MemberRemoved), (status = 400, description = "not a valid user name", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    Path(user): Path<String>,
) -> Result<Json<MemberRemoved>, ApiError> {
    let deleted = state.latchkey.remove_member(&by, &user)?;
    Ok(Json(MemberRemoved { user, deleted }))
}

/// `GET /v1/audit` filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    run: Option<String>,
    key: Option<String>,
    principal: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    /// At most this many records, the newest (default 1000, at most 10000).
    limit: Option<usize>,
}

/// `GET /v1/audit?key=&run=&principal=&since_ms=&until_ms=&limit=`.
#[utoipa::path(get, path = "/v1/audit", operation_id = "query_audit", params(("run" = Option<String>, Query), ("key" = Option<String>, Query), ("principal" = Option<String>, Query), ("since_ms" = Option<u64>, Query), ("until_ms" = Option<u64>, Query), ("limit" = Option<usize>, Query, description = "newest N, default 1000, at most 10000")), responses((status = 200, body = AuditRecords), (status = 400, description = "bad input, named in the message", body = ErrorBody), (status = 401, description = "no, malformed or revoked token", body = ErrorBody), (status = 429, description = "over the principal's rate", body = ErrorBody), (status = 403, description = "the role does not allow it", body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Caller(by): Caller,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Json<AuditRecords>, ApiError> {
    let Query(f) =
        filter.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let limit = f.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let query = AuditQuery {
        run: f.run,
        key: f.key,
        principal: f.principal,
        since_ms: f.since_ms,
        until_ms: f.until_ms,
    };
    let st = state.clone();
    let page = tokio::task::spawn_blocking(move || st.latchkey.audit_newest(&by, &query, limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(AuditRecords {
        records: page.records,
        unreadable: page.unreadable,
    }))
}
