//! Loopback fake upstream servers for the integration tests and the demo.
//!
//! [`Upstream`] is a small axum server bound to `127.0.0.1:0` that imitates the
//! third-party APIs the example guests call and adds a few adversarial routes
//! for the host's limits. Every request it receives is recorded (see
//! [`Recorded`]) before it is answered, so a test can check what actually went
//! over the wire, e.g. that the injected credential arrived and that nothing
//! else did.
//!
//! | Route | Behaviour |
//! |---|---|
//! | `POST /api/chat.postMessage` | Slack. `Authorization: Bearer <t>`; always 200 with `{"ok": ..}` |
//! | `GET /repos/{owner}/{repo}/issues` | GitHub. `Authorization: token <t>`; paginated with a `Link` header |
//! | `POST /v3/{domain}/messages` | Mailgun. Basic auth `api:<password>`; form body |
//! | `ANY /echo`, `ANY /echo/{*rest}` | JSON description of the request |
//! | `ANY /echo/encoded` | as `/echo`, plus encoded forms of every header value and echoed auth headers |
//! | `ANY /redirect?to=URL&status=302` | redirect (default `to` is `/echo`) |
//! | `ANY /status/{code}` | that status with a small text body |
//! | `ANY /slow?ms=N` | waits N ms (default 1000), then `done` |
//! | `ANY /drip?chunks=N&ms=M&size=S` | N chunks (default 5) of S bytes (default 8) M ms apart (default 100) |
//! | `ANY /endless` | chunked body of `a` that stops only after [`ENDLESS_LIMIT`] bytes |
//! | `ANY /big?bytes=N` | exactly N bytes of `a` (default 1024) with a `content-length` |
//! | `ANY /gzip-bomb?inflated=N` | `content-encoding: gzip` body inflating to N zero bytes (default [`GZIP_BOMB_INFLATED_LEN`]) |
//! | `ANY /headers?count=N` | N distinct `x-fixture-{i}` response headers (default 10) |
//! | `ANY /reflect/{encoder}` | the credential of the request (the `authorization` header after its scheme, else `x-api-key`) run through a real encoder: `tests/encoders/reflect.py` (`py-*`) or `reflect.js` (`node-*`) |
//! | `ANY /coded` | the `authorization` header in an unreadable coding, with `content-encoding: identity` and then `content-encoding: gzip` |
//! | `ANY /header-name` | a response header whose name carries the `x-api-key` header's value |
//! | `ANY /split-headers` | the carried credential's first half in `x-token-head`, the rest in `x-token-tail` |
//! | `ANY /remember` | `{"previous": ..}`: the credential the previous request to `/remember` carried (`null` for the first), then remembers this one |
//! | anything else | 404 JSON |
//!
//! Also here: [`ClosingListener`] (accepts connections and drops them at once)
//! and [`refused_addr`] (an address nobody listens on).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The `ts` of every message the fake Slack accepts.
pub const SLACK_TS: &str = "1700000000.000100";
/// Number of issues the fake GitHub serves until [`Upstream::set_issue_count`] changes it.
pub const DEFAULT_ISSUE_COUNT: usize = 7;
/// Page size of the fake GitHub when the request has no `per_page`.
pub const DEFAULT_PER_PAGE: usize = 3;
/// Number of bytes after which `/endless` finally ends (10 GiB).
pub const ENDLESS_LIMIT: u64 = 10 << 30;
/// Inflated size of the default `/gzip-bomb` body (1 GiB of zero bytes).
pub const GZIP_BOMB_INFLATED_LEN: u64 = 1 << 30;
/// Largest request body the server reads; a longer one gets a 413 and is recorded with an empty body.
pub const MAX_REQUEST_BODY: usize = 64 << 20;

/// Largest `inflated` accepted by `/gzip-bomb` (the compressed body is about 1/1000 of it).
const MAX_BOMB_INFLATED_LEN: u64 = 16 << 30;
/// Longest wait `/slow` and `/drip` agree to (per wait).
const MAX_WAIT_MS: u64 = 600_000;
/// Most headers `/headers` sends.
const MAX_HEADER_COUNT: usize = 10_000;
/// Most chunks `/drip` sends.
const MAX_DRIP_CHUNKS: u64 = 1_000_000;
/// Size of the chunks streamed by `/big` and `/endless`.
const FILL_LEN: usize = 64 << 10;
/// Source of every streamed body byte.
static FILL: [u8; FILL_LEN] = [b'a'; FILL_LEN];

/// One request as the fake upstream received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Request method, e.g. `"POST"`.
    pub method: String,
    /// Path without the query, still percent-encoded, e.g. `"/api/chat.postMessage"`.
    pub path: String,
    /// Raw query string without the `?`, if the request had one.
    pub query: Option<String>,
    /// Headers with lowercased names, in the order the server's header map holds them
    /// (arrival order, except that repeated values of one name are grouped together).
    /// Values that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The request body (empty when it was larger than [`MAX_REQUEST_BODY`]).
    pub body: Vec<u8>,
}

impl Recorded {
    /// First value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// First value of the query parameter `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        find_param(self.query.as_deref()?, name)
    }

    /// First value of the field `name` of a form-urlencoded body, percent-decoded.
    pub fn form_param(&self, name: &str) -> Option<String> {
        find_param(&String::from_utf8_lossy(&self.body), name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether `needle` occurs anywhere in the request: path, query, a header name or
    /// value, or the body. Handy for "the secret never reached this server" checks.
    pub fn contains(&self, needle: &str) -> bool {
        let bytes = needle.as_bytes();
        if bytes.is_empty() {
            return true;
        }
        self.path.contains(needle)
            || self.query.as_deref().is_some_and(|q| q.contains(needle))
            || self
                .headers
                .iter()
                .any(|(n, v)| n.contains(needle) || v.contains(needle))
            || self.body.windows(bytes.len()).any(|w| w == bytes)
    }
}

/// Credentials and sizes the fakes check against; changed through [`Upstream`].
#[derive(Debug)]
struct Config {
    slack_bearer: Option<String>,
    github_token: Option<String>,
    mailgun_password: Option<String>,
    issue_count: usize,
}

/// State shared by the handle and the server task.
#[derive(Debug)]
struct Shared {
    base_url: String,
    requests: Mutex<Vec<Recorded>>,
    config: Mutex<Config>,
    mailgun_sequence: AtomicU64,
    /// The credential the last request to `/remember` carried.
    remembered: Mutex<Option<String>>,
}

/// Locks `mutex`, ignoring poisoning (a panicking test must not hide the recording).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the server runs and how it is stopped.
#[derive(Debug)]
enum Runner {
    /// A task on the caller's runtime ([`Upstream::start`]).
    Task(JoinHandle<()>),
    /// A thread with its own runtime ([`Upstream::start_blocking`]).
    Thread {
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// Already stopped.
    Stopped,
}

/// A fake upstream HTTP/1.1 server on `127.0.0.1` with an ephemeral port.
///
/// Dropping it stops the server. For a server from [`Upstream::start`] the stop is
/// asynchronous (the task is aborted and goes away at the runtime's next turn, and
/// connections already accepted may linger until their client leaves); use
/// [`Upstream::shutdown`] to wait for the listener to be closed. A server from
/// [`Upstream::start_blocking`] is fully gone, connections included, when drop returns.
#[derive(Debug)]
pub struct Upstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runner: Runner,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves on a task of the current tokio runtime.
    ///
    /// Must be called from within a tokio runtime (any flavour).
    pub async fn start() -> anyhow::Result<Upstream> {
        let (listener, shared, addr) = bind().await?;
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // An accept error ends the fixture; the test then sees refused connections.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Upstream {
            shared,
            addr,
            runner: Runner::Task(task),
        })
    }

    /// Binds `127.0.0.1:0` and serves from a background thread running its own
    /// multi-thread tokio runtime; for synchronous tests and the demo binary.
    ///
    /// Works inside or outside a runtime. Returns once the port is bound.
    pub fn start_blocking() -> anyhow::Result<Upstream> {
        type Ready = anyhow::Result<(Arc<Shared>, SocketAddr)>;
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Ready>(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("latchkey-upstream".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("latchkey-upstream-rt")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ =
                            ready_tx
                                .send(Err(anyhow::Error::from(err)
                                    .context("building the upstream runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (listener, shared, addr) = match bind().await {
                        Ok(bound) => bound,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let app = router(Arc::clone(&shared));
                    if ready_tx.send(Ok((shared, addr))).is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = axum::serve(listener, app).into_future() => {}
                        _ = stop_rx => {}
                    }
                });
                // Cancels the connection tasks (an `/endless` download, say) as well.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("spawning the upstream thread")?;
        match ready_rx.recv() {
            Ok(Ok((shared, addr))) => Ok(Upstream {
                shared,
                addr,
                runner: Runner::Thread {
                    stop: Some(stop_tx),
                    thread: Some(thread),
                },
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("the upstream thread ended before binding its port")
            }
        }
    }

    /// Stops the server and waits until its listening socket is closed.
    pub async fn shutdown(mut self) {
        match std::mem::replace(&mut self.runner, Runner::Stopped) {
            Runner::Task(task) => {
                task.abort();
                let _ = task.await;
            }
            runner @ Runner::Thread { .. } => {
                self.runner = runner;
                // Drop joins the thread.
            }
            Runner::Stopped => {}
        }
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// [`Upstream::base_url`] followed by `path_and_query` (which should start with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.shared.base_url)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received so far whose path is exactly `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Sets the token the fake Slack accepts (`Authorization: Bearer <token>`).
    /// With `None` (the default) any non-empty bearer token is accepted.
    pub fn expect_bearer(&self, token: Option<&str>) {
        lock(&self.shared.config).slack_bearer = token.map(str::to_owned);
    }

    /// Sets the token the fake GitHub accepts (`Authorization: token <token>`).
    /// With `None` (the default) any non-empty token is accepted.
    pub fn expect_token(&self, token: Option<&str>) {
        lock(&self.shared.config).github_token = token.map(str::to_owned);
    }

    /// Sets the password the fake Mailgun accepts for user `api` (basic auth).
    /// With `None` (the default) any password is accepted, but the user must be `api`.
    pub fn expect_basic(&self, password: Option<&str>) {
        lock(&self.shared.config).mailgun_password = password.map(str::to_owned);
    }

    /// Sets how many issues the fake GitHub serves (default [`DEFAULT_ISSUE_COUNT`]).
    pub fn set_issue_count(&self, count: usize) {
        lock(&self.shared.config).issue_count = count;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task(task) => task.abort(),
            Runner::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            Runner::Stopped => {}
        }
    }
}

/// Binds the listener and creates the shared state.
async fn bind() -> anyhow::Result<(TcpListener, Arc<Shared>, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding 127.0.0.1:0 for the fake upstream")?;
    let addr = listener
        .local_addr()
        .context("reading the fake upstream's address")?;
    let shared = Arc::new(Shared {
        base_url: format!("http://{addr}"),
        requests: Mutex::new(Vec::new()),
        config: Mutex::new(Config {
            slack_bearer: None,
            github_token: None,
            mailgun_password: None,
            issue_count: DEFAULT_ISSUE_COUNT,
        }),
        mailgun_sequence: AtomicU64::new(0),
        remembered: Mutex::new(None),
    });
    Ok((listener, shared, addr))
}

/// The route table (see the module documentation).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/chat.postMessage", post(slack_post_message))
        .route("/repos/{owner}/{repo}/issues", get(github_issues))
        .route("/v3/{domain}/messages", post(mailgun_messages))
        .route("/echo", any(echo))
        .route("/echo/encoded", any(echo_encoded))
        .route("/echo/{*rest}", any(echo))
        .route("/redirect", any(redirect))
        .route("/status/{code}", any(status))
        .route("/slow", any(slow))
        .route("/drip", any(drip))
        .route("/endless", any(endless))
        .route("/big", any(big))
        .route("/gzip-bomb", any(gzip_bomb_route))
        .route("/headers", any(many_headers))
        .route("/reflect/{encoder}", any(reflect))
        .route("/coded", any(coded))
        .route("/header-name", any(header_name))
        .route("/split-headers", any(split_headers))
        .route("/remember", any(remember))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            record_request,
        ))
        .with_state(shared)
}

/// Middleware: buffers the body, records the request and hands the handler a
/// copy of the record as an extension.
async fn record_request(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let (body, too_large) = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    let recorded = Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    lock(&shared.requests).push(recorded.clone());
    if too_large {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body unreadable or larger than {MAX_REQUEST_BODY} bytes\n"),
        );
    }
    parts.extensions.insert(recorded);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// A JSON response with `status`.
fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// A `text/plain` response with `status`.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A 400 with a JSON `message`.
fn bad_request(message: impl Into<String>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "message": message.into() }),
    )
}

/// Why a handler gave up; answered as a JSON `message` with the status.
#[derive(Debug)]
struct Reject(StatusCode, String);

impl Reject {
    /// A 400.
    fn bad(message: impl Into<String>) -> Reject {
        Reject(StatusCode::BAD_REQUEST, message.into())
    }

    /// A 500, for builder errors that cannot happen with the values used here.
    fn internal(err: impl std::fmt::Display) -> Reject {
        Reject(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        json_response(self.0, &json!({ "message": self.1 }))
    }
}

/// Query parameter `name` parsed as `T`, `default` when absent, 400 when malformed.
fn param<T: FromStr>(request: &Recorded, name: &str, default: T) -> Result<T, Reject> {
    match request.query_param(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| Reject::bad(format!("query parameter {name:?} is invalid: {raw:?}"))),
    }
}

/// The credentials of an `Authorization: <scheme> <credentials>` header, if the
/// scheme matches (case-insensitive).
fn credentials<'a>(request: &'a Recorded, scheme: &str) -> Option<&'a str> {
    let value = request.header("authorization")?.trim();
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Whether the request declares a form-urlencoded body.
fn is_form(request: &Recorded) -> bool {
    request.header("content-type").is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// Slack's error shape: HTTP 200 with `ok: false`.
fn slack_error(error: &str) -> Response {
    json_response(StatusCode::OK, &json!({ "ok": false, "error": error }))
}

/// `POST /api/chat.postMessage`.
async fn slack_post_message(
    State(shared): State<Arc<Shared>>,
    Extension(request): Extension<Recorded>,
) -> Response {
    let token = match credentials(&request, "Bearer") {
        None | Some("") => return slack_error("not_authed"),
        Some(token) => token,
    };
    let expected = lock(&shared.config).slack_bearer.clone();
    if expected.is_some_and(|expected| expected != token) {
        return slack_error("invalid_auth");
    }
    let (channel, message) = if is_form(&request) {
        (request.form_param("channel"), request.form_param("text"))
    } else {
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Object(fields)) => {
                let field =
                    |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
                (field("channel"), field("text"))
            }
            _ => return slack_error("invalid_json"),
        }
    };
    let Some(channel) = channel.filter(|c| !c.is_empty()) else {
        return slack_error("channel_not_found");
    };
    let Some(message) = message.filter(|t| !t.is_empty()) else {
        return slack_error("no_text");
    };
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "channel": channel,
            "ts": SLACK_TS,
            "message": { "text": message },
        }),
    )
}

/// `GET /repos/{owner}/{repo}/issues`.
async fn github_issues(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    Extension(request): Extension<Recorded>,
) -> Result<Response, Reject> {
    let (expected, total) = {
        let config = lock(&shared.config);
        (config.github_token.clone(), config.issue_count)
    };
    let authorized = match credentials(&request, "token") {
        None | Some("") => false,
        Some(token) => expected.is_none_or(|expected| expected == token),
    };
    if !authorized {
        return Ok(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
            }),
        ));
    }
    let per_page = param(&request, "per_page", DEFAULT_PER_PAGE)?.clamp(1, 100);
    let page = param(&request, "page", 1usize)?.max(1);
    let state = request
        .query_param("state")
        .unwrap_or_else(|| "open".to_owned());
    let last_page = total.div_ceil(per_page).max(1);
    let first = page.saturating_sub(1).saturating_mul(per_page).min(total);
    let end = page.saturating_mul(per_page).min(total);
    let issues: Vec<Value> = (first..end)
        .map(|i| {
            let number = i + 1;
            json!({ "number": number, "title": format!("Issue #{number}"), "state": "open" })
        })
        .collect();
    let mut response = json_response(StatusCode::OK, &Value::Array(issues));
    if last_page > 1 {
        let link = |n: usize, rel: &str| {
            format!(
                "<{}/repos/{}/{}/issues?state={}&per_page={per_page}&page={n}>; rel=\"{rel}\"",
                shared.base_url,
                percent_encode(&owner),
                percent_encode(&repo),
                percent_encode(&state),
            )
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(link((page - 1).min(last_page), "prev"));
        }
        if page < last_page {
            links.push(link(page + 1, "next"));
            links.push(link(last_page, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
        }
        let value = HeaderValue::from_str(&links.join(", ")).map_err(Reject::internal)?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// `POST /v3/{domain}/messages`.
async fn mailgun_messages(
    State(shared): State<Arc<Shared>>,
    Path(domain): Path<String>,
    Extension(request): Extension<Recorded>,
) -> Response {
    let expected = lock(&shared.config).mailgun_password.clone();
    let authorized = credentials(&request, "Basic")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| match pair.split_once(':') {
            Some(("api", password)) => expected.is_none_or(|expected| expected == password),
            _ => false,
        });
    if !authorized {
        let mut response = text(StatusCode::UNAUTHORIZED, "Forbidden");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"MG API\""),
        );
        return response;
    }
    let present = |name: &str| request.form_param(name).is_some_and(|v| !v.is_empty());
    for field in ["from", "to", "subject"] {
        if !present(field) {
            return bad_request(format!("'{field}' parameter is missing"));
        }
    }
    if !present("text") && !present("html") {
        return bad_request("Need at least one of 'text' or 'html' parameters specified");
    }
    let sequence = shared.mailgun_sequence.fetch_add(1, Ordering::SeqCst) + 1;
    json_response(
        StatusCode::OK,
        &json!({
            "id": format!("<20240101.{sequence}@{domain}>"),
            "message": "Queued. Thank you.",
        }),
    )
}

/// The JSON description of a request that `/echo` returns.
fn echo_value(request: &Recorded) -> Map<String, Value> {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let mut object = Map::new();
    object.insert("method".to_owned(), json!(request.method));
    object.insert("path".to_owned(), json!(request.path));
    object.insert("query".to_owned(), json!(request.query));
    object.insert("headers".to_owned(), Value::Object(headers));
    object.insert("body".to_owned(), json!(request.body_text()));
    object
}

/// `ANY /echo` and `/echo/{*rest}`.
async fn echo(Extension(request): Extension<Recorded>) -> Response {
    json_response(StatusCode::OK, &Value::Object(echo_value(&request)))
}

/// The forms of `value` that `/echo/encoded` reflects, as `(label, text)` pairs:
/// `plain`, `base64`, `base64_nopad`, `base64url`, `base64url_nopad`, `hex`,
/// `hex_upper` and `percent` (every byte outside `A-Za-z0-9-._~` as `%XX`).
///
/// Tests can use it to assert that none of these forms of a secret reached a guest.
pub fn encoded_forms(value: &str) -> Vec<(&'static str, String)> {
    let bytes = value.as_bytes();
    vec![
        ("plain", value.to_owned()),
        ("base64", STANDARD.encode(bytes)),
        ("base64_nopad", STANDARD_NO_PAD.encode(bytes)),
        ("base64url", URL_SAFE.encode(bytes)),
        ("base64url_nopad", URL_SAFE_NO_PAD.encode(bytes)),
        ("hex", hex(bytes, false)),
        ("hex_upper", hex(bytes, true)),
        ("percent", percent_encode(value)),
    ]
}

/// One entry of the `encoded` array of `/echo/encoded`.
fn encoded_entry(header_name: &str, part: &str, value: &str) -> Value {
    let mut entry = Map::new();
    entry.insert("header".to_owned(), json!(header_name));
    entry.insert("part".to_owned(), json!(part));
    for (label, form) in encoded_forms(value) {
        entry.insert(label.to_owned(), Value::String(form));
    }
    Value::Object(entry)
}

/// `ANY /echo/encoded`: `/echo` plus an `encoded` array with, for every request
/// header, the encoded forms of its whole value (`part: "value"`), of the credentials
/// after a scheme such as `Bearer` (`part: "credential"`), and of decoded basic-auth
/// credentials (`part: "basic_decoded"`). Also reflects the authorization header in
/// the `x-echo-auth` and `set-cookie: s=...` response headers.
async fn echo_encoded(Extension(request): Extension<Recorded>) -> Response {
    let mut object = echo_value(&request);
    let mut encoded = Vec::new();
    for (name, value) in &request.headers {
        encoded.push(encoded_entry(name, "value", value));
        if let Some((scheme, credential)) = value.trim().split_once(' ') {
            let credential = credential.trim();
            if !credential.is_empty() {
                encoded.push(encoded_entry(name, "credential", credential));
                if scheme.eq_ignore_ascii_case("basic")
                    && let Some(decoded) = STANDARD
                        .decode(credential)
                        .ok()
                        .and_then(|raw| String::from_utf8(raw).ok())
                {
                    encoded.push(encoded_entry(name, "basic_decoded", &decoded));
                }
            }
        }
    }
    object.insert("encoded".to_owned(), Value::Array(encoded));
    let mut response = json_response(StatusCode::OK, &Value::Object(object));
    if let Some(auth) = request.header("authorization") {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(auth) {
            headers.insert(HeaderName::from_static("x-echo-auth"), value);
        }
        if let Ok(value) = HeaderValue::from_str(&format!("s={auth}")) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `ANY /redirect?to=URL&status=302`.
async fn redirect(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let to = request
        .query_param("to")
        .unwrap_or_else(|| "/echo".to_owned());
    let code: u16 = param(&request, "status", 302)?;
    if ![301, 302, 303, 307, 308].contains(&code) {
        return Err(Reject::bad(format!("{code} is not a redirect status")));
    }
    let location = HeaderValue::from_str(&to).map_err(|_| Reject::bad("invalid `to`"))?;
    Response::builder()
        .status(code)
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("redirecting to {to}\n")))
        .map_err(Reject::internal)
}

/// `ANY /status/{code}`.
async fn status(Path(code): Path<u16>) -> Response {
    let Ok(status) = StatusCode::from_u16(code) else {
        return bad_request(format!("{code} is not a status code"));
    };
    if status.is_informational() {
        return bad_request(format!("{code} is informational"));
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return status.into_response();
    }
    text(
        status,
        format!("{code} {}\n", status.canonical_reason().unwrap_or("")),
    )
}

/// `ANY /slow?ms=N`.
async fn slow(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let ms: u64 = param(&request, "ms", 1000)?;
    tokio::time::sleep(Duration::from_millis(ms.min(MAX_WAIT_MS))).await;
    Ok(text(StatusCode::OK, "done"))
}

/// A body of `total` bytes of `a` in chunks of at most `chunk_len` bytes, waiting
/// `pause` between chunks.
fn fill_body(total: u64, chunk_len: usize, pause: Duration) -> Body {
    let chunk_len = chunk_len.clamp(1, FILL_LEN);
    let stream = futures_util::stream::unfold((total, true), move |(left, first)| async move {
        if left == 0 {
            return None;
        }
        if !first && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let len = usize::try_from(left).map_or(chunk_len, |left| left.min(chunk_len));
        let chunk = Bytes::from_static(&FILL[..len]);
        Some((Ok::<_, Infallible>(chunk), (left - len as u64, false)))
    });
    Body::from_stream(stream)
}

/// `ANY /drip?chunks=N&ms=M&size=S`: chunked, no content-length.
async fn drip(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let chunks: u64 = param(&request, "chunks", 5)?;
    let ms: u64 = param(&request, "ms", 100)?;
    let size: usize = param(&request, "size", 8)?;
    let size = size.clamp(1, FILL_LEN);
    let total = chunks.min(MAX_DRIP_CHUNKS) * size as u64;
    let pause = Duration::from_millis(ms.min(MAX_WAIT_MS));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        fill_body(total, size, pause),
    )
        .into_response())
}

/// `ANY /endless`: chunked, no content-length, [`ENDLESS_LIMIT`] bytes.
async fn endless() -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        fill_body(ENDLESS_LIMIT, FILL_LEN, Duration::ZERO),
    )
        .into_response()
}

/// `ANY /big?bytes=N`: exactly N bytes with a content-length.
async fn big(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let bytes: u64 = param(&request, "bytes", 1024)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, bytes)
        .body(fill_body(bytes, FILL_LEN, Duration::ZERO))
        .map_err(Reject::internal)
}

/// `ANY /gzip-bomb?inflated=N`.
async fn gzip_bomb_route(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let inflated: u64 = param(&request, "inflated", GZIP_BOMB_INFLATED_LEN)?;
    if inflated > MAX_BOMB_INFLATED_LEN {
        return Err(Reject::bad(format!(
            "inflated is capped at {MAX_BOMB_INFLATED_LEN}"
        )));
    }
    let body = if inflated == GZIP_BOMB_INFLATED_LEN {
        gzip_bomb()
    } else {
        Bytes::from(build_gzip_bomb(inflated))
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        body,
    )
        .into_response())
}

/// `ANY /headers?count=N`: headers `x-fixture-0: value-0` ... `x-fixture-{N-1}`.
async fn many_headers(Extension(request): Extension<Recorded>) -> Result<Response, Reject> {
    let count: usize = param(&request, "count", 10)?;
    if count > MAX_HEADER_COUNT {
        return Err(Reject::bad(format!(
            "count is capped at {MAX_HEADER_COUNT}"
        )));
    }
    let mut response = text(StatusCode::OK, "ok");
    let headers = response.headers_mut();
    for i in 0..count {
        let name = HeaderName::try_from(format!("x-fixture-{i}")).map_err(Reject::internal)?;
        let value = HeaderValue::try_from(format!("value-{i}")).map_err(Reject::internal)?;
        headers.insert(name, value);
    }
    Ok(response)
}

/// Fallback: 404 JSON.
async fn not_found(Extension(request): Extension<Recorded>) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "message": "Not Found", "method": request.method, "path": request.path }),
    )
}

/// The `/gzip-bomb` body: gzip of [`GZIP_BOMB_INFLATED_LEN`] zero bytes (about 1 MiB),
/// built on first use and cached.
pub fn gzip_bomb() -> Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| Bytes::from(build_gzip_bomb(GZIP_BOMB_INFLATED_LEN)))
        .clone()
}

/// A valid gzip member that inflates to `inflated_len` zero bytes, at deflate's
/// maximum ratio (about 1032:1).
///
/// Built directly rather than by compressing: one dynamic-Huffman block whose
/// literal/length code is {0: `10`, 256: `11`, 285 (length 258): `0`} and whose
/// only distance code (distance 1) is `0`, so the body is one literal followed by
/// 2-bit matches, i.e. almost entirely zero bytes. Cost: one allocation of the output.
pub fn build_gzip_bomb(inflated_len: u64) -> Vec<u8> {
    // Huffman codes as (code, length), written most significant bit first.
    const CL_ONE: (u32, u32) = (0b10, 2);
    const CL_TWO: (u32, u32) = (0b11, 2);
    const CL_ZEROS: (u32, u32) = (0b0, 1); // code-length symbol 18: 11..=138 zeros
    const LITERAL_ZERO: (u32, u32) = (0b10, 2);
    const END_OF_BLOCK: (u32, u32) = (0b11, 2);

    let mut w = BitWriter {
        out: Vec::with_capacity(usize::try_from(inflated_len / 1024).unwrap_or(0) + 64),
        acc: 0,
        used: 0,
    };
    // gzip header: magic, deflate, no flags, no mtime, max compression, unix.
    w.out
        .extend_from_slice(&[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x02, 0x03]);
    w.bits(1, 1); // BFINAL
    w.bits(2, 2); // BTYPE = dynamic Huffman
    w.bits(286 - 257, 5); // HLIT: literal/length codes 0..=285
    w.bits(0, 5); // HDIST: one distance code
    w.bits(18 - 4, 4); // HCLEN: 18 code-length code lengths
    // Code-length code lengths in the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
    // symbol 18 gets 1 bit, symbols 2 and 1 get 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        w.bits(len, 3);
    }
    // Literal/length code lengths: 0 -> 2, 1..=255 -> 0, 256 -> 2, 257..=284 -> 0, 285 -> 1.
    w.code(CL_TWO);
    w.code(CL_ZEROS);
    w.bits(138 - 11, 7);
    w.code(CL_ZEROS);
    w.bits(117 - 11, 7);
    w.code(CL_TWO);
    w.code(CL_ZEROS);
    w.bits(28 - 11, 7);
    w.code(CL_ONE);
    // Distance code lengths: 0 (distance 1) -> 1.
    w.code(CL_ONE);
    // Data: one literal zero, then length-258 matches at distance 1, then the rest as literals.
    if inflated_len > 0 {
        let matches = (inflated_len - 1) / 258;
        let literals = 1 + (inflated_len - 1) % 258;
        w.code(LITERAL_ZERO);
        w.zero_bits(matches * 2);
        for _ in 1..literals {
            w.code(LITERAL_ZERO);
        }
    }
    w.code(END_OF_BLOCK);
    let mut out = w.finish();
    out.extend_from_slice(&crc32_of_zeros(inflated_len).to_le_bytes());
    out.extend_from_slice(&((inflated_len & 0xffff_ffff) as u32).to_le_bytes());
    out
}

/// Packs bits least significant first, as deflate does.
struct BitWriter {
    out: Vec<u8>,
    acc: u8,
    used: u32,
}

impl BitWriter {
    fn bit(&mut self, bit: u32) {
        if bit & 1 == 1 {
            self.acc |= 1 << self.used;
        }
        self.used += 1;
        if self.used == 8 {
            self.out.push(self.acc);
            self.acc = 0;
            self.used = 0;
        }
    }

    /// `count` bits of `value`, least significant first (header fields, extra bits).
    fn bits(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.bit(value >> i);
        }
    }

    /// A Huffman code, most significant bit first.
    fn code(&mut self, (code, len): (u32, u32)) {
        for i in (0..len).rev() {
            self.bit(code >> i);
        }
    }

    fn zero_bits(&mut self, mut count: u64) {
        while count > 0 && self.used != 0 {
            self.bit(0);
            count -= 1;
        }
        let bytes = usize::try_from(count / 8).unwrap_or(usize::MAX);
        self.out.resize(self.out.len().saturating_add(bytes), 0);
        for _ in 0..count % 8 {
            self.bit(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.out.push(self.acc);
        }
        self.out
    }
}

/// CRC-32 (IEEE, as in gzip) of `len` zero bytes, in O(log len) time.
fn crc32_of_zeros(len: u64) -> u32 {
    /// Applies the GF(2) matrix `matrix` to `vector`.
    fn times(matrix: &[u32; 32], mut vector: u32) -> u32 {
        let mut sum = 0;
        let mut i = 0;
        while vector != 0 {
            if vector & 1 == 1 {
                sum ^= matrix[i];
            }
            vector >>= 1;
            i += 1;
        }
        sum
    }
    fn square(matrix: &[u32; 32]) -> [u32; 32] {
        let mut out = [0; 32];
        for (slot, column) in out.iter_mut().zip(matrix) {
            *slot = times(matrix, *column);
        }
        out
    }
    // The operator that feeds one zero bit into the (reflected) CRC register.
    let mut op = [0u32; 32];
    op[0] = 0xedb8_8320;
    for (i, column) in op.iter_mut().enumerate().skip(1) {
        *column = 1 << (i - 1);
    }
    // One zero byte.
    for _ in 0..3 {
        op = square(&op);
    }
    let mut register = 0xffff_ffff_u32;
    let mut n = len;
    while n > 0 {
        if n & 1 == 1 {
            register = times(&op, register);
        }
        op = square(&op);
        n >>= 1;
    }
    !register
}

/// Lowercase or uppercase hex of `bytes`.
fn hex(bytes: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = if upper {
            write!(out, "{byte:02X}")
        } else {
            write!(out, "{byte:02x}")
        };
    }
    out
}

/// Percent-encodes every byte outside the URL unreserved set.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn percent_decode(value: &str) -> String {
    fn hex_digit(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                match (
                    bytes.get(i + 1).copied().and_then(hex_digit),
                    bytes.get(i + 2).copied().and_then(hex_digit),
                ) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// First value of `name` in urlencoded `input`.
fn find_param(input: &str, name: &str) -> Option<String> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// A listener on `127.0.0.1:0` that accepts every connection and immediately
/// closes it without reading or writing: the client sees a reset or an empty
/// response. Runs on its own thread, so it works with or without a runtime.
#[derive(Debug)]
pub struct ClosingListener {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClosingListener {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub fn start() -> io::Result<ClosingListener> {
        let listener = StdTcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let accepted = Arc::clone(&accepted);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("latchkey-closing-listener".to_owned())
                .spawn(move || {
                    for connection in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = connection {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    }
                })?
        };
        Ok(ClosingListener {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of connections accepted (and closed) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ClosingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = StdTcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An address on `127.0.0.1` where nothing listens, so connecting is refused.
///
/// It is a port that was just bound and released; another process could take it
/// in between, which is unlikely enough for tests.
pub fn refused_addr() -> io::Result<SocketAddr> {
    let listener = StdTcpListener::bind(("127.0.0.1", 0))?;
    listener.local_addr()
}

/// The credential a request carries: the `authorization` header after its scheme, or the
/// `x-api-key` header.
fn carried_credential(request: &Recorded) -> String {
    if let Some(auth) = request.header("authorization") {
        return auth
            .split_once(' ')
            .map_or(auth, |(_, c)| c)
            .trim()
            .to_owned();
    }
    request.header("x-api-key").unwrap_or_default().to_owned()
}

/// `ANY /reflect/{encoder}`: the carried credential through a real encoder (python3 or
/// node, see `tests/encoders/`). A missing interpreter is a 500, so a test fails loudly.
async fn reflect(Path(encoder): Path<String>, Extension(request): Extension<Recorded>) -> Response {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("encoders");
    let (program, script) = if encoder.starts_with("node-") {
        ("node", dir.join("reflect.js"))
    } else {
        ("python3", dir.join("reflect.py"))
    };
    let value = carried_credential(&request);
    let run = async {
        let mut child = tokio::process::Command::new(program)
            .arg(&script)
            .arg(&encoder)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt as _;
            stdin.write_all(value.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    match run.await {
        Ok(out) if out.status.success() => (StatusCode::OK, out.stdout).into_response(),
        Ok(out) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "{program} {encoder} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not run {program}: {e}"),
        )
            .into_response(),
    }
}

/// `ANY /coded`: the authorization header in a content coding the host cannot read (a
/// gzip magic followed by the bytes XORed with 0x55, standing in for compression),
/// announced by a harmless first `content-encoding: identity` and a second
/// `content-encoding: gzip`.
async fn coded(Extension(request): Extension<Recorded>) -> Response {
    let mut body = vec![0x1f, 0x8b];
    body.extend(
        request
            .header("authorization")
            .unwrap_or_default()
            .bytes()
            .map(|b| b ^ 0x55),
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.append(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    response
}

/// `ANY /header-name`: a response header named `x-echo-<x-api-key value>` (the HTTP stack
/// lowercases names).
async fn header_name(Extension(request): Extension<Recorded>) -> Response {
    let value = request.header("x-api-key").unwrap_or_default();
    let mut response = (StatusCode::OK, "ok").into_response();
    if let Ok(name) = HeaderName::from_bytes(format!("x-echo-{value}").as_bytes()) {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static("1"));
    }
    response
}

/// `ANY /split-headers`: the carried credential cut in two, its first half in
/// `x-token-head` and the rest in `x-token-tail` (an API that pages a long token over
/// headers, or a hostile one that hides it from a scan of each header alone).
async fn split_headers(Extension(request): Extension<Recorded>) -> Response {
    let value = carried_credential(&request);
    let mut cut = value.len() / 2;
    while !value.is_char_boundary(cut) {
        cut += 1;
    }
    let (head, tail) = value.split_at(cut);
    let mut response = (StatusCode::OK, "ok").into_response();
    for (name, part) in [("x-token-head", head), ("x-token-tail", tail)] {
        if let Ok(v) = HeaderValue::from_str(part) {
            response
                .headers_mut()
                .append(HeaderName::from_static(name), v);
        }
    }
    response
}

/// `ANY /remember`: `{"previous": C}`, where `C` is the credential the previous request to
/// this route carried (`null` the first time), then remembers this request's: an upstream
/// that echoes the value it was sent before a rotation.
async fn remember(
    State(shared): State<Arc<Shared>>,
    Extension(request): Extension<Recorded>,
) -> Response {
    let value = carried_credential(&request);
    let previous = lock(&shared.remembered).replace(value);
    json_response(StatusCode::OK, &json!({ "previous": previous }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::ensure;
    use std::io::{Read as _, Write as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A response as read by the raw test client.
    #[derive(Debug)]
    struct Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        chunked: bool,
    }

    impl Raw {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> anyhow::Result<Value> {
            serde_json::from_slice(&self.body).context("response body is not JSON")
        }
    }

    fn request_bytes(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    fn parse(raw: &[u8]) -> anyhow::Result<Raw> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers")?;
        let head = std::str::from_utf8(&raw[..split])?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().context("no status line")?;
        let status = status_line
            .split(' ')
            .nth(1)
            .context("no status")?
            .parse()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        if chunked {
            let mut decoded = Vec::new();
            let mut rest = &body[..];
            loop {
                let line_end = rest
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .context("bad chunk")?;
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..line_end])?.trim(), 16)?;
                rest = &rest[line_end + 2..];
                if size == 0 {
                    break;
                }
                decoded.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
            }
            body = decoded;
        }
        Ok(Raw {
            status,
            headers,
            body,
            chunked,
        })
    }

    async fn send(
        up: &Upstream,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Raw> {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(up.addr()).await?;
            stream
                .write_all(&request_bytes(up.addr(), method, target, headers, body))
                .await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            parse(&raw)
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .context("request timed out")?
    }

    async fn get(up: &Upstream, target: &str) -> anyhow::Result<Raw> {
        send(up, "GET", target, &[], b"").await
    }

    #[tokio::test]
    async fn slack_checks_the_bearer_token() -> anyhow::Result<()> {
        let up = Upstream::start().await?;
        up.expect_bearer(Some("xoxb-good"));
        let json_ct = ("Content-Type", "application/json");
        let body = br#"{"channel":"C123","text":"hello"}"#;

        let ok = send(
            &up,
            "POST",
            "/api/chat.postMessage",
            &[("Authorization", "Bearer xoxb-good"), json_ct],
            body,
        )
        .await?;
        ensure!(ok.status == 200);
        let v = ok.json()?;
        ensure!(
            v["ok"] == true && v["channel"] == "C123" && v["ts"] == SLACK_TS,
            "{v}"
        );
        ensure!(v["message"]["text"] == "hello", "{v}");

        let bad = send(
            &up,
            "POST",
            "/api/chat.postMessage",
            &[("Authorization", "Bearer xoxb-bad"), json_ct],
            body,
        )
        .await?;
        ensure!(bad.status == 200 && bad.json()? == json!({"ok": false, "error": "invalid_auth"}));

        let missing = send(&up, "POST", "/api/chat.postMessage", &[json_ct], body).await?;
        ensure!(missing.json()? == json!({"ok": false, "error": "not_authed"}));

        let garbled = send(
            &up,
            "POST",
            "/api/chat.postMessage",
            &[("Authorization", "Bearer xoxb-good"), json_ct],
            b"{nope",
        )
        .await?;
        ensure!(garbled.json()? == json!({"ok": false, "error": "invalid_json"}));

        let form = send(
            &up,
            "POST",
            "/api/chat.postMessage",
            &[
                ("Authorization", "Bearer xoxb-good"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"channel=C9&text=hi+there%21",
        )
        .await?;
        ensure!(form.json()?["message"]["text"] == "hi there!");

        up.expect_bearer(None);
        let any = send(
            &up,
            "POST",
            "/api/chat.postMessage",
            &[("Authorization", "Bearer whatever"), json_ct],
            body,
        )
        .await?;
        ensure!(any.json()?["ok"] == true);

        let requests = up.requests_to("/api/chat.postMessage");
        ensure!(requests.len() == 6);
        ensure!(requests[0].header("AUTHORIZATION") == Some("Bearer xoxb-good"));
        ensure!(requests[0].body == body.to_vec());
        ensure!(requests[0].contains("xoxb-good") && !requests[2].contains("xoxb"));
        Ok(())
    }

    #[tokio::test]
    async fn github_paginates_with_absolute_links() -> anyhow::Result<()> {
        let up = Upstream::start().await?;
        up.expect_token(Some("ghp_secret"));
        let auth = [("Authorization", "token ghp_secret")];

        let first = send(&up, "GET", "/repos/o/r/issues", &auth, b"").await?;
        ensure!(first.status == 200);
        let numbers: Vec<u64> = first
            .json()?
            .as_array()
            .context("not an array")?
            .iter()
            .filter_map(|i| i["number"].as_u64())
            .collect();
        ensure!(numbers == [1, 2, 3], "{numbers:?}");
        let base = up.base_url();
        let link = first.header("link").context("no Link")?;
        ensure!(
            link == format!(
                "<{base}/repos/o/r/issues?state=open&per_page=3&page=2>; rel=\"next\", \
                 <{base}/repos/o/r/issues?state=open&per_page=3&page=3>; rel=\"last\""
            ),
            "{link}"
        );

        // Follow the links like a client would.
        let mut next = Some(format!(
            "{base}/repos/o/r/issues?state=open&per_page=3&page=2"
        ));
        let mut seen = numbers.len();
        while let Some(url) = next.take() {
            let target = url.strip_prefix(&base).context("link not on this server")?;
            let page = send(&up, "GET", target, &auth, b"").await?;
            seen += page.json()?.as_array().map_or(0, Vec::len);
            next = page.header("link").and_then(|l| {
                l.split(", ")
                    .find(|p| p.ends_with("rel=\"next\""))
                    .and_then(|p| p.split_once('>'))
                    .map(|(u, _)| u.trim_start_matches('<').to_owned())
            });
        }
        ensure!(seen == DEFAULT_ISSUE_COUNT);

        let wrong = send(
            &up,
            "GET",
            "/repos/o/r/issues",
            &[("Authorization", "token nope")],
            b"",
        )
        .await?;
        ensure!(wrong.status == 401 && wrong.json()?["message"] == "Bad credentials");
        let bearer = send(
            &up,
            "GET",
            "/repos/o/r/issues",
            &[("Authorization", "Bearer ghp_secret")],
            b"",
        )
        .await?;
        ensure!(bearer.status == 401);

        up.set_issue_count(2);
        let single = send(&up, "GET", "/repos/o/r/issues", &auth, b"").await?;
        ensure!(
            single.header("link").is_none() && single.json()?.as_array().map(Vec::len) == Some(2)
        );
        Ok(())
    }

    #[tokio::test]
    async fn mailgun_requires_basic_auth_and_fields() -> anyhow::Result<()> {
        let up = Upstream::start().await?;
        up.expect_basic(Some("key-123"));
        let good = format!("Basic {}", STANDARD.encode("api:key-123"));
        let bad = format!("Basic {}", STANDARD.encode("api:key-999"));
        let form = ("Content-Type", "application/x-www-form-urlencoded");
        let body = b"from=a%40example.com&to=b%40example.com&subject=Hi&text=Hello+world";

        let ok = send(
            &up,
            "POST",
            "/v3/mg.example.com/messages",
            &[("Authorization", &good), form],
            body,
        )
        .await?;
        ensure!(ok.status == 200);
        ensure!(
            ok.json()?
                == json!({"id": "<20240101.1@mg.example.com>", "message": "Queued. Thank you."})
        );
        let recorded = up.last_request().context("nothing recorded")?;
        ensure!(recorded.form_param("to").as_deref() == Some("b@example.com"));
        ensure!(recorded.form_param("text").as_deref() == Some("Hello world"));

        let denied = send(
            &up,
            "POST",
            "/v3/mg.example.com/messages",
            &[("Authorization", &bad), form],
            body,
        )
        .await?;
        ensure!(denied.status == 401 && denied.body == b"Forbidden");
        let anonymous = send(&up, "POST", "/v3/mg.example.com/messages", &[form], body).await?;
        ensure!(anonymous.status == 401);

        let missing = send(
            &up,
            "POST",
            "/v3/mg.example.com/messages",
            &[("Authorization", &good), form],
            b"from=a&to=b&text=x",
        )
        .await?;
        ensure!(
            missing.status == 400 && missing.json()?["message"] == "'subject' parameter is missing"
        );
        Ok(())
    }

    #[tokio::test]
    async fn echo_reflects_the_request() -> anyhow::Result<()> {
        let up = Upstream::start().await?;
        let echoed = send(
            &up,
            "PUT",
            "/echo/some/path?a=1&b=x%20y",
            &[("X-Secret", "s3cr3t")],
            b"payload",
        )
        .await?;
        ensure!(echoed.status == 200);
        let v = echoed.json()?;
        ensure!(
            v["method"] == "PUT" && v["path"] == "/echo/some/path",
            "{v}"
        );
        ensure!(v["query"] == "a=1&b=x%20y" && v["body"] == "payload", "{v}");
        ensure!(v["headers"]["x-secret"] == "s3cr3t", "{v}");
        let recorded = up.last_request().context("nothing recorded")?;
        ensure!(recorded.query_param("b").as_deref() == Some("x y"));
        ensure!(recorded.query_param("c").is_none());

        let token = "xoxb-1234-abcd";
        let auth = format!("Bearer {token}");
        let encoded = send(
            &up,
            "GET",
            "/echo/encoded",
            &[("Authorization", &auth)],
            b"",
        )
        .await?;
        ensure!(encoded.header("x-echo-auth") == Some(auth.as_str()));
        ensure!(encoded.header("set-cookie") == Some(format!("s={auth}").as_str()));
        let text = String::from_utf8(encoded.body.clone())?;
        for (label, form) in encoded_forms(token) {
            ensure!(text.contains(&form), "{label} form {form} missing");
        }
        ensure!(
            text.contains("eG94Yi0xMjM0LWFiY2Q") && text.contains("786f78622d313233342d61626364")
        );
        Ok(())
    }

    #[tokio::test]
    async fn records_everything_including_misses() -> anyhow::Result<()> {
        let up = Upstream::start().await?;
        ensure!(up.base_url() == format!("http://127.0.0.1:{}", up.port()));
        ensure!(up.url("/x") == format!("{}/x", up.base_url()));
        let missing = get(&up, "/nope?q=1").await?;
        ensure!(missing.status == 404 && missing.json()?["path"] == "/nope");
        let wrong_method = get(&up, "/api/chat.postMessage").await?;
        ensure!(wrong_method.status == 405);
        ensure!(up.request_count() == 2);
        let first = &up.requests()[0];
        ensure!(
            first.method == "GET" && first.path == "/nope" && first.query.as_deref() == Some("q=1")
        );
        ensure!(first.header("host") == Some(up.addr().to_string().as_str()));
        ensure!(
            first
                .headers
                .iter()
                .all(|(n, _)| *n == n.to_ascii_lowercase())
        );
        up.clear();
        ensure!(up.request_count() == 0 && up.last_request().is_none());
        Ok(())
    }

    #[tokio::test]
    async fn adversarial_routes() -> anyhow::Result<()> {
        let up = Upstream::start().await?;

        let redirect = get(&up, "/redirect?to=http%3A%2F%2Fexample.invalid%2Fx").await?;
        ensure!(
            redirect.status == 302
                && redirect.header("location") == Some("http://example.invalid/x")
        );
        let default = get(&up, "/redirect?status=307").await?;
        ensure!(default.status == 307 && default.header("location") == Some("/echo"));

        ensure!(get(&up, "/status/503").await?.status == 503);
        ensure!(get(&up, "/status/204").await?.body.is_empty());
        ensure!(get(&up, "/status/42").await?.status == 400);

        let slow_started = std::time::Instant::now();
        let slow = get(&up, "/slow?ms=150").await?;
        ensure!(slow.body == b"done" && slow_started.elapsed() >= Duration::from_millis(150));

        let drip = get(&up, "/drip?chunks=4&ms=20&size=3").await?;
        ensure!(drip.chunked && drip.body == b"aaaaaaaaaaaa", "{drip:?}");

        let big = get(&up, "/big?bytes=200000").await?;
        ensure!(!big.chunked && big.header("content-length") == Some("200000"));
        ensure!(big.body.len() == 200_000 && big.body.iter().all(|b| *b == b'a'));
        ensure!(get(&up, "/big?bytes=0").await?.body.is_empty());

        let headers = get(&up, "/headers?count=50").await?;
        ensure!(
            (0..50).all(|i| headers.header(&format!("x-fixture-{i}"))
                == Some(format!("value-{i}").as_str()))
        );

        let bomb = get(&up, "/gzip-bomb").await?;
        ensure!(bomb.header("content-encoding") == Some("gzip"));
        ensure!(bomb.body == gzip_bomb().to_vec() && bomb.body.len() < 2 << 20);

        // Read 1 MiB of /endless and hang up.
        let mut stream = tokio::net::TcpStream::connect(up.addr()).await?;
        stream
            .write_all(&request_bytes(up.addr(), "GET", "/endless", &[], b""))
            .await?;
        let mut buf = vec![0; 1 << 20];
        tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut buf)).await??;
        ensure!(buf.starts_with(b"HTTP/1.1 200"));
        Ok(())
    }

    #[test]
    fn gzip_bomb_is_well_formed() -> anyhow::Result<()> {
        fn naive_crc(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in data {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        ensure!(naive_crc(b"123456789") == 0xcbf4_3926);
        for len in [0usize, 1, 2, 257, 258, 259, 1000, 4096] {
            ensure!(
                crc32_of_zeros(len as u64) == naive_crc(&vec![0; len]),
                "crc of {len}"
            );
            let bomb = build_gzip_bomb(len as u64);
            let n = bomb.len();
            ensure!(bomb[..3] == [0x1f, 0x8b, 0x08]);
            ensure!(bomb[n - 4..] == (len as u32).to_le_bytes());
            ensure!(bomb[n - 8..n - 4] == naive_crc(&vec![0; len]).to_le_bytes());
        }
        let bomb = gzip_bomb();
        ensure!(
            bomb.len() > 1 << 19 && bomb.len() < 2 << 20,
            "{}",
            bomb.len()
        );
        Ok(())
    }

    #[test]
    fn blocking_server_and_socket_fixtures() -> anyhow::Result<()> {
        let up = Upstream::start_blocking()?;
        let addr = up.addr();
        let mut stream = StdTcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(&request_bytes(addr, "POST", "/echo", &[], b"hi"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let response = parse(&raw)?;
        ensure!(response.status == 200 && response.json()?["body"] == "hi");
        ensure!(up.request_count() == 1);
        drop(up);
        ensure!(
            StdTcpStream::connect(addr).is_err(),
            "still listening after drop"
        );

        let closing = ClosingListener::start()?;
        let mut stream = StdTcpStream::connect(closing.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let mut buf = Vec::new();
        // Either a clean EOF or a reset; never a response.
        ensure!(
            stream
                .read_to_end(&mut buf)
                .map_or(true, |_| buf.is_empty())
        );
        ensure!(closing.accepted() == 1);
        drop(closing);

        ensure!(StdTcpStream::connect(refused_addr()?).is_err());
        Ok(())
    }
}
