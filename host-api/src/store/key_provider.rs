//! Who wraps the data key: the operator's master key (a key file or environment variable),
//! or an OpenBao / Vault **Transit** key, so that the master key never exists on a runtime
//! host (the host holds a token allowed to ask Transit to unwrap, and the data key in
//! memory once it has).
//!
//! The stored data-key record says which wrapped it: a Transit record starts with
//! [`TRANSIT_MAGIC`] and names its key, so a store opened with the other kind of key fails
//! at once with a message naming both.

use super::seal::{MASTER_KEY_BYTES, MasterKey, SealError};
use base64::Engine as _;
use zeroize::Zeroizing;

/// The start of a data-key record wrapped by Transit: magic ‖ key name ‖ `\n` ‖ Transit's
/// ciphertext (`vault:vN:…`).
pub const TRANSIT_MAGIC: &[u8] = b"latchkey-transit/v1:";

/// Why a data key could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// This key does not open the wrapped data key.
    #[error("the key does not open the data key")]
    WrongKey,
    /// The local random source failed.
    #[error(transparent)]
    Seal(SealError),
    /// The data key was wrapped by another kind of key than the one configured.
    #[error("the store's data key is wrapped by {found}, but {configured} was configured")]
    OtherProvider {
        /// What wrapped it.
        found: String,
        /// What was given.
        configured: String,
    },
    /// The key service refused (wrong or revoked token, unknown or rotated-away key).
    #[error("{provider} refused to {action} the data key: {reason}")]
    Refused {
        /// The service and key, e.g. `OpenBao Transit key latchkey at http://…`.
        provider: String,
        /// `wrap`, `unwrap`.
        action: &'static str,
        /// The service's own words.
        reason: String,
    },
    /// A Transit mount or key name that would not stay one path segment.
    #[error(
        "invalid Transit mount {mount:?} or key name {key:?}: use letters, digits, '-', '_' and '.'"
    )]
    BadName {
        /// The mount given.
        mount: String,
        /// The key name given.
        key: String,
    },
    /// A Transit address the token may not be sent to: not https, and not plain http to a
    /// loopback address either.
    #[error("refusing the Transit address {address}: {reason}")]
    InsecureAddress {
        /// The address given (without any user or password in it).
        address: String,
        /// Why.
        reason: &'static str,
    },
    /// The key service could not be reached.
    #[error("{provider} is unreachable: {reason}")]
    Unreachable {
        /// The service and key.
        provider: String,
        /// Why.
        reason: String,
    },
}

/// Wraps and unwraps the store's data key.
pub trait KeyWrapper: Send + Sync {
    /// The wrapped form of `dek`, as stored.
    fn wrap(&self, dek: &[u8; MASTER_KEY_BYTES]) -> Result<Vec<u8>, WrapError>;
    /// The data key inside `wrapped`.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, WrapError>;
    /// What this is, for messages (never a key or a token).
    fn describe(&self) -> String;
}

/// What wrapped a stored data-key record, for messages.
fn wrapped_by(wrapped: &[u8]) -> String {
    match wrapped.strip_prefix(TRANSIT_MAGIC) {
        Some(rest) => {
            let name = rest.split(|b| *b == b'\n').next().unwrap_or_default();
            format!(
                "the OpenBao/Vault Transit key {:?}",
                String::from_utf8_lossy(name)
            )
        }
        None => "a master key (key file or LATCHKEY_MASTER_KEY)".into(),
    }
}

impl KeyWrapper for MasterKey {
    fn wrap(&self, dek: &[u8; MASTER_KEY_BYTES]) -> Result<Vec<u8>, WrapError> {
        self.wrap_raw(dek).map_err(WrapError::Seal)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, WrapError> {
        if wrapped.starts_with(TRANSIT_MAGIC) {
            return Err(WrapError::OtherProvider {
                found: wrapped_by(wrapped),
                configured: self.describe(),
            });
        }
        self.unwrap_raw(wrapped).map_err(|_| WrapError::WrongKey)
    }

    fn describe(&self) -> String {
        "a master key (key file or LATCHKEY_MASTER_KEY)".into()
    }
}

/// An OpenBao (or Vault) Transit key, used through its HTTP API
/// (`POST /v1/{mount}/encrypt/{key}`, `/decrypt/{key}`). The token is sent as
/// `X-Vault-Token` and never shown, only to the configured address: over https, or plain
/// http to a loopback address (a server on this host), and never to where a redirect points
/// (a redirect would re-send the token, and with `encrypt` the data key, to its target).
pub struct TransitKey {
    /// `http(s)://host:port` of the server.
    pub address: String,
    /// The secrets engine's mount path (`transit`).
    pub mount: String,
    /// The key's name.
    pub key: String,
    token: Zeroizing<String>,
}

impl TransitKey {
    /// A Transit key at `address` (`https://vault.example.com:8200`, or plain http to a
    /// loopback address: `http://127.0.0.1:8200`), mount and key name, used with `token`.
    /// The mount and the name go into the request path, so they are limited to letters,
    /// digits, `-`, `_` and `.` (and `/` between a mount's segments).
    pub fn new(
        address: &str,
        mount: &str,
        key: &str,
        token: Zeroizing<String>,
    ) -> Result<Self, WrapError> {
        let mount = mount.trim_matches('/');
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !plain(key) || !mount.split('/').all(plain) {
            return Err(WrapError::BadName {
                mount: mount.chars().take(64).collect(),
                key: key.chars().take(64).collect(),
            });
        }
        check_address(address)?;
        Ok(TransitKey {
            address: address.trim_end_matches('/').to_owned(),
            mount: mount.to_owned(),
            key: key.to_owned(),
            token,
        })
    }

    /// One Transit call: `POST {address}/v1/{mount}/{op}/{key}` with `body`; the `data`
    /// object of the answer. Made on a thread of its own: the blocking HTTP client may
    /// not run inside an async runtime, and opening a store may happen inside one.
    fn call(
        &self,
        op: &str,
        action: &'static str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, WrapError> {
        let url = format!("{}/v1/{}/{op}/{}", self.address, self.mount, self.key);
        let provider = self.describe();
        let token = self.token.clone();
        let answer = std::thread::scope(|s| {
            s.spawn(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::blocking::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())?;
                let r = client
                    .post(&url)
                    .header("X-Vault-Token", token.as_str())
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .map_err(|e| {
                        let mut text = e.to_string();
                        let mut cause = std::error::Error::source(&e);
                        while let Some(c) = cause {
                            text = format!("{text}: {c}");
                            cause = c.source();
                        }
                        text
                    })?;
                let status = r.status();
                let text = r.text().map_err(|e| e.to_string())?;
                Ok::<_, String>((status, text))
            })
            .join()
            .unwrap_or_else(|_| Err("the HTTP client panicked".into()))
        });
        let (status, text) = answer.map_err(|reason| WrapError::Unreachable {
            provider: provider.clone(),
            reason,
        })?;
        if status.is_redirection() {
            return Err(WrapError::Refused {
                provider,
                action,
                reason: format!(
                    "HTTP {status}: a redirect, which is not followed (the token goes only to the configured address)"
                ),
            });
        }
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            let errors = json["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(WrapError::Refused {
                provider,
                action,
                reason: format!("HTTP {status}: {errors}"),
            });
        }
        Ok(json["data"].clone())
    }
}

/// Refuses a Transit address the token may not be sent to: anything but an `https` URL, or
/// an `http` one whose host is a loopback address (`127.0.0.0/8`, `::1`) or exactly
/// `localhost`. The URL is parsed, not matched as text: `http://localhost.evil.example`
/// is not loopback. No user or password in it either (they would be sent, and shown).
fn check_address(address: &str) -> Result<(), WrapError> {
    let refuse = |reason| WrapError::InsecureAddress {
        address: shown_address(address),
        reason,
    };
    let url = url::Url::parse(address)
        .map_err(|_| refuse("it is not a URL (expected https://HOST:PORT)"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "it has a user or password in it (the token goes in a header)",
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(refuse("it has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(refuse(
            "plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost); use https",
        )),
        _ => Err(refuse("it is not an http(s) URL")),
    }
}

/// `address` for a message: without anything before an `@` in its authority (a password).
fn shown_address(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("", address));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let shown = if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    };
    shown.chars().take(200).collect()
}

impl KeyWrapper for TransitKey {
    fn wrap(&self, dek: &[u8; MASTER_KEY_BYTES]) -> Result<Vec<u8>, WrapError> {
        let plaintext = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(dek));
        let data = self.call(
            "encrypt",
            "wrap",
            serde_json::json!({ "plaintext": plaintext.as_str() }),
        )?;
        let ciphertext = data["ciphertext"]
            .as_str()
            .ok_or_else(|| WrapError::Refused {
                provider: self.describe(),
                action: "wrap",
                reason: "the answer has no data.ciphertext".into(),
            })?;
        let mut out = TRANSIT_MAGIC.to_vec();
        out.extend_from_slice(self.key.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(ciphertext.as_bytes());
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, WrapError> {
        let other = || WrapError::OtherProvider {
            found: wrapped_by(wrapped),
            configured: self.describe(),
        };
        let rest = wrapped.strip_prefix(TRANSIT_MAGIC).ok_or_else(other)?;
        let mut parts = rest.splitn(2, |b| *b == b'\n');
        let name = parts.next().unwrap_or_default();
        let ciphertext = parts.next().ok_or(WrapError::WrongKey)?;
        if name != self.key.as_bytes() {
            return Err(other());
        }
        let data = self.call(
            "decrypt",
            "unwrap",
            serde_json::json!({ "ciphertext": String::from_utf8_lossy(ciphertext) }),
        )?;
        let plaintext = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(data["plaintext"].as_str().unwrap_or_default())
                .map_err(|_| WrapError::WrongKey)?,
        );
        let raw: [u8; MASTER_KEY_BYTES] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| WrapError::WrongKey)?;
        Ok(Zeroizing::new(raw))
    }

    fn describe(&self) -> String {
        format!(
            "the OpenBao/Vault Transit key {:?} (mount {}) at {}",
            self.key, self.mount, self.address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mount: &str, name: &str) -> Result<TransitKey, WrapError> {
        TransitKey::new(
            "http://127.0.0.1:8200",
            mount,
            name,
            Zeroizing::new("t".into()),
        )
    }

    #[test]
    fn transit_names_stay_one_path_segment() {
        assert!(key("transit", "latchkey-prod_1.v2").is_ok());
        assert!(key("/team/transit/", "k").is_ok());
        for (mount, name) in [
            ("transit", "../sys/seal"),
            ("transit", "a/b"),
            ("transit", ""),
            ("transit", "k?x=1"),
            ("transit/../sys", "k"),
            ("", "k"),
        ] {
            assert!(
                matches!(key(mount, name), Err(WrapError::BadName { .. })),
                "{mount:?} {name:?} accepted"
            );
        }
    }

    #[test]
    fn plain_http_is_refused_except_to_a_loopback_address() {
        let at = |address: &str| {
            TransitKey::new(address, "transit", "k", Zeroizing::new("t".into())).map(|_| ())
        };
        for ok in [
            "https://vault.example.com:8200",
            "https://10.0.0.5",
            "http://127.0.0.1:8200",
            "http://127.3.4.5:8200/",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            assert!(at(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "http://vault.example.com:8200",
            "http://10.0.0.5:8200",
            "http://localhost.evil.example:8200",
            "http://127.0.0.1.nip.io:8200",
            "ftp://127.0.0.1",
            "127.0.0.1:8200",
            "https://user:pw@vault.example.com",
        ] {
            let e = at(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(matches!(e, WrapError::InsecureAddress { .. }), "{bad}: {e}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    /// A server on 127.0.0.1:0 that answers the first request within `wait` with
    /// `response`, and returns what it received (`None`: nobody came).
    fn answer_once(
        response: String,
        wait: std::time::Duration,
    ) -> (u16, std::thread::JoinHandle<Option<String>>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let handle = std::thread::spawn(move || {
            let until = std::time::Instant::now() + wait;
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(_) if std::time::Instant::now() < until => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => return None,
                }
            };
            conn.set_nonblocking(false).expect("blocking");
            conn.set_read_timeout(Some(std::time::Duration::from_millis(500)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body the Content-Length announces.
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = conn.write_all(response.as_bytes());
            Some(String::from_utf8_lossy(&got).to_string())
        });
        (port, handle)
    }

    #[test]
    fn a_redirect_is_not_followed_so_the_token_and_data_key_go_nowhere_else() {
        let body = r#"{"data":{"ciphertext":"vault:v1:c2VjcmV0"}}"#;
        let (elsewhere, other) = answer_once(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
            std::time::Duration::from_secs(3),
        );
        let (port, first) = answer_once(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/v1/transit/encrypt/k\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
            std::time::Duration::from_secs(10),
        );
        let key = TransitKey::new(
            &format!("http://127.0.0.1:{port}"),
            "transit",
            "k",
            Zeroizing::new("s.vault-token-1234".into()),
        )
        .expect("key");
        let result = key.wrap(&[9u8; MASTER_KEY_BYTES]);
        let asked = first
            .join()
            .expect("server")
            .expect("the Transit address was not asked");
        assert!(asked.contains("s.vault-token-1234"), "{asked}");
        let followed = other.join().expect("server");
        assert!(
            followed.is_none(),
            "the redirect was followed: the target received {followed:?}"
        );
        let e = result.expect_err("a redirect wrapped the data key");
        assert!(e.to_string().contains("redirect"), "{e}");
        assert!(!e.to_string().contains("s.vault-token"), "{e}");
    }

    #[test]
    fn a_master_key_names_a_transit_wrapped_record_instead_of_failing_blindly() {
        let m = MasterKey::generate().expect("rng");
        let record = [TRANSIT_MAGIC, b"prod\nvault:v1:abc"].concat();
        let Err(err) = m.unwrap(&record) else {
            panic!("a master key opened a Transit-wrapped record");
        };
        assert!(
            err.to_string()
                .contains("wrapped by the OpenBao/Vault Transit key \"prod\""),
            "{err}"
        );
        let wrapped = m.wrap(&[7u8; MASTER_KEY_BYTES]).expect("wrap");
        assert_eq!(
            *m.unwrap(&wrapped).expect("unwrap"),
            [7u8; MASTER_KEY_BYTES]
        );
        let other = MasterKey::generate().expect("rng");
        assert!(matches!(other.unwrap(&wrapped), Err(WrapError::WrongKey)));
    }
}
