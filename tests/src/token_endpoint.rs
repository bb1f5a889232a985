//! A loopback fake OAuth2 provider: a token endpoint and the API its access tokens open.
//!
//! | Route | Behaviour |
//! |---|---|
//! | `POST /token` | RFC 6749 token endpoint: HTTP Basic client authentication, `grant_type` `refresh_token` or `client_credentials`. Issues a fresh access token with `expires_in` of [`FakeProvider::set_expires_in`] seconds and, when rotation is on, a fresh refresh token; a refresh token used once is burned (`400 invalid_grant` afterwards). [`FakeProvider::fail_with`] makes it fail. Waits [`FakeProvider::set_delay`] before answering, so that concurrent callers overlap; waits [`FakeProvider::set_answer_delay`] after issuing (the refresh token already rotated) and before answering, as an endpoint whose answer is slow to arrive. |
//! | `GET /api/me` | `200 {"ok":true}` for `Authorization: Bearer <a live access token>`, else `401` |
//! | `GET /api/ok` | `200 ok`, whatever is sent (a fixed answer for benchmarks) |
//! | `GET /api/leak` | an upstream that knows every secret of the client: the current access token, refresh token and client secret raw, base64 and percent-encoded, in the body and in response headers |
//!
//! It runs on a thread of its own with its own tokio runtime, so sync and async tests use
//! it alike; dropping it stops the server.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the token endpoint fails when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `500` with a JSON body whose `error_description` holds the client secret.
    ServerError,
    /// `200` with a body that is not JSON (and holds the refresh token).
    NotJson,
    /// `400 {"error":"invalid_grant"}` whatever is sent.
    InvalidGrant,
    /// `200` with a 1 MiB JSON body (an access token far over any limit), no length given.
    Huge,
}

/// One request the token endpoint received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The form fields.
    pub form: HashMap<String, String>,
    /// The `authorization` header.
    pub authorization: Option<String>,
}

struct Inner {
    refresh_token: String,
    burned: Vec<String>,
    access: Vec<(String, Instant)>,
    expires_in: u64,
    rotate: bool,
    failure: Option<Failure>,
    delay: Duration,
    answer_delay: Duration,
    requests: Vec<TokenRequest>,
    serial: u64,
}

struct Shared {
    client_id: String,
    client_secret: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake provider.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeProvider {
    /// Starts on 127.0.0.1:0 for the client `client_id`/`client_secret`, accepting
    /// `refresh_token` first. Rotation on, tokens valid for an hour, no delay.
    pub fn start(client_id: &str, client_secret: &str, refresh_token: &str) -> FakeProvider {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            inner: Mutex::new(Inner {
                refresh_token: refresh_token.to_owned(),
                burned: Vec::new(),
                access: Vec::new(),
                expires_in: 3600,
                rotate: true,
                failure: None,
                delay: Duration::ZERO,
                answer_delay: Duration::ZERO,
                requests: Vec::new(),
                serial: 0,
            }),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/token", post(token))
            .route("/api/me", get(me))
            .route("/api/ok", get(|| async { "ok" }))
            .route("/api/leak", get(leak))
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FakeProvider {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `expires_in` of the tokens issued from now on, in seconds.
    pub fn set_expires_in(&self, seconds: u64) {
        self.shared.lock().expires_in = seconds;
    }

    /// Whether each refresh issues a new refresh token (and burns the one used).
    pub fn set_rotation(&self, on: bool) {
        self.shared.lock().rotate = on;
    }

    /// How long the token endpoint waits before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// How long the token endpoint waits between issuing tokens (rotating the refresh
    /// token: the one sent is burned) and answering.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.shared.lock().answer_delay = delay;
    }

    /// Makes the token endpoint fail (`None`: work again).
    pub fn fail_with(&self, failure: Option<Failure>) {
        self.shared.lock().failure = failure;
    }

    /// The requests the token endpoint received, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.lock().requests.clone()
    }

    /// The refresh token the endpoint accepts now.
    pub fn refresh_token(&self) -> String {
        self.shared.lock().refresh_token.clone()
    }

    /// Every access token issued, oldest first.
    pub fn access_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .access
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

fn random_token(prefix: &str, serial: u64) -> String {
    let mut bytes = [0u8; 12];
    for (i, b) in bytes.iter_mut().enumerate() {
        // Not secret: distinct per token and unguessable enough for a fake.
        *b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            .wrapping_mul(2654435761)
            .wrapping_add(i as u32 * 40503)
            >> 8) as u8;
    }
    // `/` and `+` make the percent-encoded form differ from the raw one.
    format!("{prefix}/{serial}+{}", hex_of(&bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delay = {
        let mut inner = shared.lock();
        inner.requests.push(TokenRequest {
            form: form.clone(),
            authorization: authorization.clone(),
        });
        inner.delay
    };
    tokio::time::sleep(delay).await;
    let (response, answer_delay) = issue(&shared, &form, authorization.as_deref());
    // Issued: whatever happens to the connection now, the old refresh token is burned.
    tokio::time::sleep(answer_delay).await;
    response
}

/// The answer to a token request, and how long to wait before giving it.
fn issue(
    shared: &Shared,
    form: &HashMap<String, String>,
    authorization: Option<&str>,
) -> (Response, Duration) {
    let mut inner = shared.lock();
    let now = |r: Response| (r, Duration::ZERO);
    match inner.failure {
        Some(Failure::ServerError) => {
            let d = format!("database down; client secret {}", shared.client_secret);
            return now(oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &d,
            ));
        }
        Some(Failure::NotJson) => {
            let body = format!("<html>refresh_token={}</html>", inner.refresh_token);
            return now((StatusCode::OK, body).into_response());
        }
        Some(Failure::InvalidGrant) => {
            return now(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "revoked",
            ));
        }
        Some(Failure::Huge) => {
            let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(1 << 20));
            let stream = futures_util::stream::iter(
                body.into_bytes()
                    .chunks(16 * 1024)
                    .map(|c| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            );
            return now((StatusCode::OK, axum::body::Body::from_stream(stream)).into_response());
        }
        None => {}
    }
    // RFC 6749 §2.3.1: Basic, each part form-urlencoded.
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_encode(&shared.client_id),
            form_encode(&shared.client_secret)
        ))
    );
    if authorization != Some(expected.as_str()) {
        return now(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "bad client",
        ));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let given = form.get("refresh_token").cloned().unwrap_or_default();
            if inner.burned.contains(&given) {
                return now(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    &format!("refresh token {given} was already used"),
                ));
            }
            if given != inner.refresh_token {
                return now(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown token",
                ));
            }
        }
        Some("client_credentials") => {}
        _ => {
            return now(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "",
            ));
        }
    }
    inner.serial += 1;
    let serial = inner.serial;
    let access = random_token("at", serial);
    let expires_in = inner.expires_in;
    inner.access.push((
        access.clone(),
        Instant::now() + Duration::from_secs(expires_in),
    ));
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if inner.rotate && form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let next = random_token("rt", serial);
        let old = std::mem::replace(&mut inner.refresh_token, next.clone());
        inner.burned.push(old);
        body["refresh_token"] = json!(next);
    }
    let response = (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    (response, inner.answer_delay)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn live_bearer(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let now = Instant::now();
    shared
        .lock()
        .access
        .iter()
        .any(|(t, until)| t == token && *until > now)
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if live_bearer(&shared, &headers) {
        (StatusCode::OK, json!({"ok": true}).to_string()).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, json!({"ok": false}).to_string()).into_response()
    }
}

async fn leak(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let (refresh, access) = {
        let inner = shared.lock();
        (
            inner.refresh_token.clone(),
            inner
                .access
                .last()
                .map(|(t, _)| t.clone())
                .unwrap_or_default(),
        )
    };
    let mut lines = Vec::new();
    for (label, v) in [
        ("sent", sent.as_str()),
        ("access", access.as_str()),
        ("refresh", refresh.as_str()),
        ("secret", shared.client_secret.as_str()),
    ] {
        lines.push(format!("{label} raw {v}"));
        lines.push(format!("{label} base64 {}", STANDARD.encode(v)));
        lines.push(format!("{label} percent {}", percent_all(v)));
    }
    let mut resp = (StatusCode::OK, lines.join("\n")).into_response();
    for (name, v) in [
        ("x-leak-refresh", refresh.as_str()),
        ("x-leak-secret", shared.client_secret.as_str()),
        ("x-leak-access", sent.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// Every byte outside `A-Za-z0-9-._~` as `%XX`.
fn percent_all(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
