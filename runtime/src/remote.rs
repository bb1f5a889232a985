//! The CLI as a client of `latchkey serve`: `--server URL` (or `LATCHKEY_SERVER`) and a
//! token from `LATCHKEY_TOKEN` or `--token-file` (never argv). The acting principal is the
//! token's; values are sealed to the server's key before they leave. The token crosses the
//! network only over TLS: plain http is refused except to this machine.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Args;
use latchkey_host::SecretValue;
use latchkey_server::api::{ErrorBody, PublicKey};
use reqwest::{Client, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where the server is and how to prove who we are.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Talk to a `latchkey serve` at URL instead of opening the local store (secret,
    /// run, check, audit, member, token, scripts, component, workflow). The token comes from
    /// LATCHKEY_TOKEN or --token-file; the acting principal is the token's. https://, or
    /// plain http:// only to this machine (127.0.0.1, [::1] or localhost).
    #[arg(long, global = true, env = "LATCHKEY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// File holding the bearer token for --server (instead of LATCHKEY_TOKEN).
    #[arg(long, global = true, env = "LATCHKEY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// A connection to a server.
pub struct Remote {
    base: String,
    token: Zeroizing<String>,
    http: Client,
    /// The client's requests run on this thread: a command makes one or a few calls in
    /// turn, and `reqwest::blocking` would start a thread with a runtime of its own, hand
    /// each call to it and back, and join it at exit (bench/RESULTS.md, issue 24).
    io: tokio::runtime::Runtime,
}

impl RemoteArgs {
    /// The server to talk to, if `--server` is given.
    pub fn remote(&self) -> Result<Option<Remote>> {
        let Some(url) = &self.server else {
            return Ok(None);
        };
        let tls = server_url(url)?;
        let base = url.trim_end_matches('/').to_owned();
        let token = match &self.token_file {
            Some(f) => Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading the token file {}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => Zeroizing::new(
                std::env::var("LATCHKEY_TOKEN")
                    .context("--server needs a token: set LATCHKEY_TOKEN or give --token-file")?
                    .trim()
                    .to_owned(),
            ),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The server never redirects; a redirect could only take the token elsewhere.
        let mut builder = Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .redirect(reqwest::redirect::Policy::none());
        if !tls {
            // No TLS will be spoken: skip loading the system's root certificates, which is
            // most of a short command's start-up (hundreds of files under /etc/ssl/certs).
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let io = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the HTTP client's runtime")?;
        let http = builder.build().context("building the HTTP client")?;
        Ok(Some(Remote {
            base,
            token,
            http,
            io,
        }))
    }
}

/// Checks `--server`: an `https://` URL, or plain `http://` only to this machine (a
/// loopback IP address, or exactly `localhost`), since every request carries the bearer
/// token. Parsed, not compared as text: `http://localhost.evil.example` and
/// `http://127.0.0.1.evil.example` are other machines. Returns whether it is https.
fn server_url(text: &str) -> Result<bool> {
    let url =
        reqwest::Url::parse(text).with_context(|| format!("--server {text:?} is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "--server {text:?}: a URL with user info is refused; the token comes from LATCHKEY_TOKEN or --token-file"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--server {text:?}: give the server's base URL, without a query or fragment");
    }
    match url.scheme() {
        "https" => Ok(true),
        "http" if is_loopback(&url) => Ok(false),
        "http" => bail!(
            "--server {text:?}: plain http is only for a server on this machine (a loopback address or localhost), as the bearer token would cross the network in clear: use https://"
        ),
        other => bail!("--server must be an http:// or https:// URL (got {other}://)"),
    }
}

/// Whether `url`'s host is a loopback IP address or exactly `localhost` (which resolves
/// to loopback, RFC 6761); no other name is trusted to.
fn is_loopback(url: &reqwest::Url) -> bool {
    use std::net::IpAddr;
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // The URL parser has already put an address in its canonical form (`127.1` is
    // `127.0.0.1`); IPv6 comes bracketed.
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// `s` for a URL path segment or query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Remote {
    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.as_str())
    }

    /// Sends and decodes the answer; an error answer becomes an error naming the status and
    /// the server's message.
    fn send<T: DeserializeOwned>(&self, what: &str, rb: RequestBuilder) -> Result<T> {
        self.io.block_on(async {
            let r = rb
                .send()
                .await
                .with_context(|| format!("{what}: cannot reach {}", self.base))?;
            let status = r.status();
            if !status.is_success() {
                let message = r
                    .json::<ErrorBody>()
                    .await
                    .map(|e| e.message)
                    .unwrap_or_else(|_| "(no message)".to_owned())
                    // The API names its request field; this command's user passes a flag.
                    .replace("send \"allow_weak_value\": true", "pass --allow-weak-value");
                bail!("{what}: the server answered {status}: {message}");
            }
            r.json()
                .await
                .with_context(|| format!("{what}: reading the answer"))
        })
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T> {
        self.send(what, self.request(reqwest::Method::GET, path))
    }

    /// `METHOD path` with a JSON body (or none).
    pub fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let rb = self.request(method, path);
        let rb = match body {
            Some(b) => rb.json(b),
            None => rb,
        };
        self.send(what, rb)
    }

    /// `METHOD path` with raw bytes of `content_type`.
    pub fn upload<T: DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let rb = self
            .request(method, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(what, rb)
    }

    /// `value` sealed to the server's public key, base64.
    pub fn seal(&self, value: &SecretValue) -> Result<String> {
        let pk: PublicKey = self.get("fetching the server's public key", "/v1/public-key")?;
        if pk.algorithm != "x25519-sealed-box" {
            bail!(
                "the server seals with {}, which this client does not know",
                pk.algorithm
            );
        }
        let key: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(&pk.public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .context("the server's public key is not 32 bytes of base64")?;
        let sealed = latchkey_host::seal_for_transit(&key, value)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn plain_http_is_only_for_this_machine() {
        for (url, tls) in [
            ("https://latchkey.example", true),
            ("https://10.0.0.1:8700/", true),
            ("http://127.0.0.1:8700", false),
            ("http://127.1:8700", false),
            ("http://127.200.0.1", false),
            ("http://LOCALHOST:8700", false),
            ("http://[::1]:8700", false),
            ("http://[::ffff:127.0.0.1]:8700", false),
        ] {
            assert_eq!(server_url(url).expect(url), tls, "{url}");
        }
        for url in [
            "http://localhost.evil.example:8700",
            "http://127.0.0.1.evil.example",
            "http://localhost@evil.example",
            "http://user:pw@127.0.0.1",
            "http://10.0.0.1:8700",
            "http://[::2]",
            "http://example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:8700",
            "http://127.0.0.1/?x=1",
        ] {
            assert!(server_url(url).is_err(), "{url}");
        }
    }
}
