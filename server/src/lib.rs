//! `latchkey serve`: a long-lived host over one [`Latchkey`]: the store opened once, one
//! engine, one HTTP client; runs and write-only credential management over HTTP, with the
//! acting principal and its role taken from a bearer token, never from a request field.
//!
//! - [`api`]: the `/v1` wire types, shared with clients.
//! - [`router`]: the routes; [`serve`]: listening (TLS off loopback), graceful shutdown.
//! - `console`: the web console at `/` (assets compiled in) and the hardening every
//!   response gets (Content-Security-Policy, no cross-origin state changes).
//! - `unparsed`: hyper's own answers to requests it cannot parse, given the same JSON
//!   error body and headers.

pub mod api;
mod console;
mod error;
mod extract;
mod legacy;
pub mod mcp;
mod metrics;
mod openapi;
mod routes;
mod state;
mod unparsed;

pub use error::ApiError;
pub use state::ServerLimits;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use latchkey_host::Latchkey;
use state::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Certificate chain and private key (PEM) for TLS; required off loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where an earlier version kept registered components and workflows
    /// (`registry.json`, `components/`): imported into the store once, at start.
    pub data_dir: PathBuf,
    /// Request and run limits.
    pub limits: ServerLimits,
    /// How long shutdown waits for runs in flight.
    pub drain: Duration,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The platform's runs could not be kept (the run pool did not start).
    #[error("starting the platform's run pool")]
    Platform(#[source] latchkey_host::Error),
    /// Plain HTTP on a non-loopback address.
    #[error(
        "refusing to serve plain HTTP on {0}: give --tls-cert and --tls-key, or listen on a loopback address"
    )]
    PlainOffLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("listening on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The data directory could not be read or created.
    #[error("the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving")]
    Io(#[source] std::io::Error),
}

/// Every route of the API, (method, path) as in the OpenAPI document: the test below
/// checks that the router serves each and that the document describes exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/whoami"),
    ("get", "/v1/public-key"),
    ("get", "/v1/secrets"),
    ("put", "/v1/secrets/{key}"),
    ("get", "/v1/secrets/{key}"),
    ("delete", "/v1/secrets/{key}"),
    ("post", "/v1/secrets/{key}/rotate"),
    ("post", "/v1/tokens"),
    ("get", "/v1/tokens"),
    ("delete", "/v1/tokens/{id}"),
    ("delete", "/v1/members/{user}"),
    ("get", "/v1/audit"),
    ("post", "/v1/runs"),
    ("get", "/v1/runs"),
    ("get", "/v1/runs/{id}"),
    ("get", "/v1/runs/{id}/audit"),
    ("get", "/v1/workflows"),
    ("put", "/v1/workflows/{name}"),
    ("post", "/v1/workflows/{name}/check"),
    ("get", "/v1/components"),
    ("post", "/v1/components"),
    ("get", "/v1/scripts"),
    ("put", "/v1/scripts"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The routes over `state`.
fn router(state: Arc<AppState>) -> Router {
    use routes::{access, registry, runs, secrets};
    let json_limit = DefaultBodyLimit::max(state.limits.max_json_bytes);
    let component_limit = DefaultBodyLimit::max(state.limits.max_component_bytes);
    let v1 = Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route("/whoami", get(access::whoami))
        .route("/public-key", get(access::public_key))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{key}",
            put(secrets::put)
                .get(secrets::describe)
                .delete(secrets::delete),
        )
        .route("/secrets/{key}/rotate", post(secrets::rotate))
        .route(
            "/tokens",
            post(access::create_token).get(access::list_tokens),
        )
        .route("/tokens/{id}", axum::routing::delete(access::revoke_token))
        .route(
            "/members/{user}",
            axum::routing::delete(access::remove_member),
        )
        .route("/audit", get(access::audit))
        .route("/runs", post(runs::start).get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/audit", get(runs::audit))
        .route("/workflows", get(registry::list_workflows))
        .route("/workflows/{name}", put(registry::register_workflow))
        .route("/workflows/{name}/check", post(registry::check))
        .route("/components", get(registry::list_components))
        .route(
            "/scripts",
            get(registry::script_policy).put(registry::set_script_policy),
        )
        .layer(json_limit)
        .merge(
            Router::new()
                .route("/components", post(registry::register_component))
                .layer(component_limit),
        );
    let mcp = Router::new()
        .route_service("/mcp", mcp::service(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mcp::authenticate,
        ));
    Router::new()
        .nest("/v1", v1)
        .merge(mcp)
        .merge(console::routes())
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::count,
        ))
        .layer(axum::middleware::from_fn(extract::utf8_query))
        .layer(axum::middleware::from_fn(console::harden))
        .layer(request_trace())
        .with_state(state)
}

/// Request tracing: method, path and status only. Never a body, a query string (a scope
/// or a key name is not secret, but a mistaken `?token=` would be) or a header.
fn request_trace() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &http::Request<axum::body::Body>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
        },
    )
}

/// Serves `latchkey` until SIGTERM or SIGINT, then drains runs in flight for at most
/// `config.drain`. `ready` is called with the bound address once the server accepts
/// connections.
pub async fn serve(
    latchkey: Arc<Latchkey>,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServeError::PlainOffLoopback(config.listen));
    }
    let tls = config
        .tls
        .as_ref()
        .map(|(c, k)| tls_acceptor(c, k))
        .transpose()?;
    let state = Arc::new(AppState::new(latchkey.clone(), config.limits.clone()));
    latchkey
        .observe_runs(state.metrics.clone())
        .map_err(ServeError::Platform)?;
    latchkey.maintain_runs().map_err(ServeError::Platform)?;
    let dir = config.data_dir.clone();
    let importing = latchkey.clone();
    tokio::task::spawn_blocking(move || legacy::import(&importing, &dir))
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?
        .map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    let app =
        router(state.clone()).layer(axum::Extension(routes::Transport { tls: tls.is_some() }));
    ready(addr);
    let shutdown = shutdown_signal(state.clone());
    match tls {
        None => axum::serve(unparsed::Listener(listener), app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Io)?,
        Some(acceptor) => serve_tls(listener, acceptor, app, shutdown).await?,
    }
    drain(&state, config.drain).await;
    // A refresh a run's deadline cut off goes on: let it store its tokens before exiting.
    if !state.latchkey.settle_refreshes().await {
        tracing::warn!("an OAuth2 refresh was still under way at exit");
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then marks the server draining.
async fn shutdown_signal(state: Arc<AppState>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: no new connections; draining runs in flight");
    state.draining.store(true, Ordering::SeqCst);
    state.mcp_streams.cancel();
}

/// Waits until no run is in flight, or `bound` has passed.
async fn drain(state: &AppState, bound: Duration) {
    let left = state.latchkey.wait_for_runs(bound).await;
    if left > 0 {
        tracing::warn!(
            runs = left,
            "runs still in flight at the end of the drain period"
        );
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("reading {}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{} holds no PEM private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections until `shutdown`, serving each with hyper.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    tokio::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        unparsed::no_delay(&stream);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            // A handshake that fails or stalls only costs its own task.
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(unparsed::Answering::new(tls)), service)
                .await;
        });
    }
    // Connections in flight finish their requests (bounded by the drain that follows).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use latchkey_host::Options;
    use latchkey_host::store::{MasterKey, MemoryBackend, SecretStore};
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        let master = MasterKey::generate().unwrap();
        let store =
            SecretStore::init_with(Box::new(MemoryBackend::default()), "mem", &master).unwrap();
        Arc::new(AppState::new(
            Arc::new(Latchkey::with_store(store, Options::default())),
            ServerLimits::default(),
        ))
    }

    #[test]
    fn the_document_is_openapi_3_1_and_describes_exactly_the_routes() {
        let doc = serde_json::to_value(openapi::document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let mut expected: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        expected.sort();
        assert_eq!(documented, expected);
    }

    #[tokio::test]
    async fn state_changes_from_another_origin_are_refused_before_authentication() {
        let app = router(state());
        let send = |method: &str, origin: Option<&str>| {
            let mut req = http::Request::builder()
                .method(method)
                .uri("/v1/tokens")
                .header("host", "127.0.0.1:8700");
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            app.clone()
                .oneshot(req.body(axum::body::Body::empty()).unwrap())
        };
        // Another site, an opaque origin, a look-alike host: refused (403), not even 401.
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8701",
            "http://127.0.0.1:8700.evil.example",
        ] {
            for method in ["POST", "PUT", "DELETE", "PATCH"] {
                let resp = send(method, Some(origin)).await.unwrap();
                assert_eq!(resp.status(), 403, "{method} from {origin}");
                assert!(resp.headers().contains_key("content-security-policy"));
            }
        }
        // The page's own origin, or no Origin (clients that are not browsers): on to the
        // token check. Reads are never refused for their origin.
        for (method, origin) in [
            ("POST", Some("http://127.0.0.1:8700")),
            ("POST", Some("https://127.0.0.1:8700")),
            ("POST", None),
            ("GET", Some("http://evil.example")),
        ] {
            let resp = send(method, origin).await.unwrap();
            assert_eq!(resp.status(), 401, "{method} from {origin:?}");
        }
    }

    #[tokio::test]
    async fn the_console_is_served_with_a_strict_policy() {
        let app = router(state());
        for (path, kind, bytes) in console::ASSETS {
            let req = http::Request::builder()
                .uri(*path)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let h = resp.headers().clone();
            assert_eq!(h["content-type"], *kind);
            assert_eq!(
                h["content-security-policy"],
                console::CONTENT_SECURITY_POLICY
            );
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            assert_eq!(&body[..], *bytes);
        }
        let policy = console::CONTENT_SECURITY_POLICY;
        assert!(!policy.contains("unsafe") && policy.contains("frame-ancestors 'none'"));
    }

    /// Generators name a client's methods after operationIds: each must be unique (two
    /// handlers named `list` and two named `audit` gave duplicates).
    #[test]
    fn every_operation_id_is_unique() {
        let doc = serde_json::to_value(openapi::document()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(seen.insert(id.clone()), "operationId {id} is used twice");
            }
        }
    }

    /// Roles are decided by the façade (`Role::may`): a route that compared a role, or
    /// built a run's context, would be deciding a rule itself.
    #[test]
    fn no_route_decides_a_role_or_builds_a_run_context() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let decides = [
                    "Role::Admin",
                    "Role::Member",
                    "Role::Runner",
                    ".may(",
                    "RunContext",
                ]
                .iter()
                .find(|p| line.contains(*p));
                assert!(decides.is_none(), "{}:{}: {line}", path.display(), n + 1);
            }
        }
    }

    /// The front ends (this server and the `latchkey` command) reach the engine only
    /// through the façade and the value types at `latchkey_host`'s root: a path into one
    /// of its modules, or a run context built by hand, would go around `Role::may`. (The
    /// modules are open to tests through the `testing` feature, which a workspace build
    /// turns on for everyone, so the compiler alone would not notice.)
    #[test]
    fn the_front_ends_use_only_the_facade() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for dir in [root.join("src"), root.join("../runtime/src")] {
            rust_files(&dir, &mut sources);
        }
        assert!(sources.len() > 20, "found only {} sources", sources.len());
        let engine_path = |line: &str| {
            line.match_indices("latchkey_host::")
                .any(|(i, m)| line[i + m.len()..].starts_with(|c: char| c.is_ascii_lowercase()))
        };
        for path in sources {
            let text = std::fs::read_to_string(&path).unwrap();
            // This file's own tests build a store directly.
            let text = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in text.lines().enumerate() {
                let reaches_in = engine_path(line)
                    && !line.contains("latchkey_host::seal_for_transit")
                    && !line.contains("latchkey_host::digest_of")
                    && !line.contains("latchkey_host::check_name")
                    && !line.contains("latchkey_host::visible");
                let builds_context = line.contains("RunContext::") || line.contains("RunContext {");
                assert!(
                    !reaches_in && !builds_context,
                    "{}:{}: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[tokio::test]
    async fn the_router_serves_every_documented_route() {
        let app = router(state());
        for (method, path) in ROUTES {
            let uri = path
                .replace("{key}", "K")
                .replace("{id}", "x")
                .replace("{user}", "u")
                .replace("{name}", "n");
            let req = http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            // Without a token every route but the public key answers 401; none falls through.
            assert!(
                !text.contains("no such endpoint"),
                "{method} {path}: {text}"
            );
            assert!(
                status != http::StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
        let req = http::Request::builder()
            .uri("/v1/openapi.json")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
    }
}
