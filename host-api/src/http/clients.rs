//! The HTTP clients a runtime shares (rustls, no redirects, no proxies, and a resolver that
//! checks every address), and what a failed request says: used by `fetch` and by OAuth2
//! token requests alike.

use crate::policy::AddressPolicy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A destination refused after DNS resolution (or as an IP literal). The message names what
/// would allow it; none of it depends on a credential.
#[derive(Debug, thiserror::Error)]
#[error(
    "destination {host} refused: it resolves to a {reason} address ({})",
    allowed_by(.reason)
)]
pub(crate) struct DestinationRefused {
    pub host: String,
    pub reason: &'static str,
}

/// What allows a non-public address of the kind `reason`: an operator's grant (the flags of
/// `latchkey run` and `latchkey serve`), or bindings that allow internal destinations.
pub(crate) fn allowed_by(reason: &str) -> &'static str {
    if reason == "loopback" {
        "the operator may allow it with --allow-private-network or --allow-internal CIDR, or \
         every credential of the request with a binding made with --allow-internal"
    } else {
        "the operator may allow it with --allow-internal CIDR, or every credential of the \
         request with a binding made with --allow-internal"
    }
}

impl DestinationRefused {
    /// The refusal behind a failed request, if the address policy is what failed it.
    pub(crate) fn behind(e: &reqwest::Error) -> Option<&DestinationRefused> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<DestinationRefused>() {
                return Some(r);
            }
            source = s.source();
        }
        None
    }
}

/// A failed request in words, without its URL (which can hold a value injected into its
/// query) and with its causes: reqwest's Display names only the outermost error.
pub(crate) fn failure_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Resolves names with the system resolver and keeps only addresses the policy allows.
/// The client connects to what this returns, so the checked address is the one used.
struct CheckedResolver {
    policy: AddressPolicy,
    /// Whether non-public addresses are allowed because every credential of the request
    /// grants it (see [`AddressPolicy::check_with`]).
    internal_granted: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let internal = self.internal_granted;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut refused = None;
            for a in addrs {
                match policy.check_with(a.ip(), internal) {
                    Ok(()) => allowed.push(a),
                    Err(reason) => refused = Some(reason),
                }
            }
            if allowed.is_empty() {
                let reason = refused.unwrap_or("unresolvable");
                return Err(Box::new(DestinationRefused { host, reason })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            // A name with both public and internal addresses is refused outright: which
            // one the client would pick is not ours to guess.
            if let Some(reason) = refused {
                return Err(Box::new(DestinationRefused { host, reason })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client")]
pub struct ClientError(#[source] pub(crate) reqwest::Error);

/// A runtime's two HTTP clients, each built at the first fetch that needs it: building one
/// loads the system's root certificates (hundreds of files, milliseconds), which a step that
/// never fetches should not pay for at start-up.
pub(crate) struct Clients {
    policy: AddressPolicy,
    connect_timeout: Duration,
    public: std::sync::OnceLock<reqwest::Client>,
    internal: std::sync::OnceLock<reqwest::Client>,
}

impl Clients {
    pub fn new(policy: AddressPolicy, connect_timeout: Duration) -> Self {
        Clients {
            policy,
            connect_timeout,
            public: std::sync::OnceLock::new(),
            internal: std::sync::OnceLock::new(),
        }
    }

    /// The client for requests whose every credential grants internal access
    /// (`internal`), or the one for all others.
    pub fn get(&self, internal: bool) -> Result<reqwest::Client, ClientError> {
        let cell = if internal {
            &self.internal
        } else {
            &self.public
        };
        if let Some(c) = cell.get() {
            return Ok(c.clone());
        }
        let built = build_client(self.policy, internal, self.connect_timeout)?;
        Ok(cell.get_or_init(|| built).clone())
    }
}

/// Builds a shared client. A runtime has two: one for requests whose every credential
/// grants internal access (`internal_granted`), one for all others.
pub(crate) fn build_client(
    policy: AddressPolicy,
    internal_granted: bool,
    connect_timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    // reqwest is built without a default crypto provider (ring instead of aws-lc-rs, for
    // build time); install ring once per process. Err means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver {
            policy,
            internal_granted,
        }))
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(ClientError)
}
