//! Host side of `latchkey:workflow/http`:
//! plan → resolve and check → inject → record → send → scrub.
//!
//! Nothing is sent unless every credential in the request passes its binding, every size
//! is within its limit, and the injection's audit record is durable. Size limits count
//! only what the guest supplies (text, parts, secret parts), never a value's length, so a
//! refusal says nothing about how long a value is; a secret part adds at most
//! 64 KiB, and a request has few of them.

use super::HttpView;
use super::exchange::{Outgoing, Received, exchange};
use super::plan::{self, Piece, Plan, PlannedBody, Use};
use super::refusal::{Refusal, denied, limit, trap};
use super::scrub::Matcher;
use super::sign::{self, Signature};
use crate::audit::AuditEvent;
use crate::bindings::wit_http::{self, Error, Request, Response};
use crate::policy::body::{self, BodyFormat, TemplatePart};
use crate::policy::{AwsSigner, SignerParams};
use crate::policy::{Destination, InjectLocation};
use crate::resolve::{self, ResolveError, Resolved};
use crate::secret::{CredentialKey, SecretValue};
use crate::signer::aws::{self, AwsKeys};
use crate::signer::jwt::{self, JwtKey};
use crate::store::{CredentialKind, SecretMeta};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A credential of this request, resolved and decrypted for this call only.
struct Resolution {
    key: CredentialKey,
    /// `scope/key@version`: which stored credential this is.
    id: String,
    resolved: Resolved,
    /// What is injected: the stored value, or for `oauth2` the current access token.
    value: SecretValue,
    /// What a `secret` part of a JWT kind puts in the request: a token minted for this
    /// call from `value`, which itself is never sent.
    minted: Option<SecretValue>,
    /// Values never sent but scrubbed like `value` (an `oauth2` client secret and refresh
    /// tokens).
    also_scrubbed: Vec<SecretValue>,
    /// What the credential held before its recent rotations: scrubbed, never injected.
    retired: Retired,
}

/// The values a credential had before its recent rotations: their ids
/// (`scope/key@version`), bindings and values, scrubbed and never injected.
type Retired = Vec<(String, crate::policy::Binding, SecretValue)>;

/// A credential a request carries, with the places it goes.
type Sent = (CredentialKey, Resolved, Vec<InjectLocation>);

/// A request ready to go, and what its audit records and scrubbing need.
struct Ready {
    outgoing: Outgoing,
    /// The request's URL as checked (the outgoing one may carry credentials in its query).
    checked_url: url::Url,
    destination: String,
    timeout: Duration,
    /// Whether the request may reach non-public addresses: every credential it carries
    /// grants it.
    internal: bool,
    /// Each distinct credential sent, with the places it went.
    sent: Vec<Sent>,
}

impl wit_http::Host for HttpView<'_> {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        let result = self.fetch_counted(request).await;
        if let Ok(Err(e)) = &result {
            let refused = &mut self.http.refused;
            match e {
                Error::Denied(_) => refused.denied += 1,
                Error::InvalidRequest(_) => refused.invalid_request += 1,
                Error::LimitExceeded(_) => refused.limit_exceeded += 1,
                Error::Transport(_) | Error::Timeout => {}
            }
        }
        result
    }
}

impl HttpView<'_> {
    /// `fetch`, with fetches and injections counted as they happen.
    async fn fetch_counted(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Response, Error>> {
        if self.http.fetches >= self.limits().max_fetches {
            return Ok(Err(Error::LimitExceeded(format!(
                "this run may make at most {} fetches",
                self.limits().max_fetches
            ))));
        }
        self.http.fetches += 1;
        let ready = match self.prepare(request).await {
            Ok(r) => r,
            Err(Refusal::Guest(e)) => return Ok(Err(e)),
            Err(Refusal::Trap(t)) => return Err(t),
        };
        // Built at the first fetch; a failure is the host's, before anything is recorded.
        let client = self
            .shared
            .clients
            .get(ready.internal)
            .map_err(|e| wasmtime::Error::msg(format!("{e}: {}", e.0)))?;
        // The record of an injection is written before the request leaves: a key is never
        // sent without a trace, whatever happens to the run afterwards.
        if let Err(e) = self.record_sent(&ready) {
            return Err(wasmtime::Error::msg(format!(
                "the audit trail could not be written, so nothing was sent: {e}"
            )));
        }
        self.http.injections += ready.sent.len() as u64;
        let limits = self.limits().clone();
        let timeout = ready.timeout.min(self.time_left());
        let received = exchange(client, ready.outgoing, &limits, timeout).await;
        if let Err(e) = &received {
            self.record_failed(&ready.sent, &ready.destination, e);
        }
        let matcher = with_destination(&ready.checked_url, |dest| {
            self.http.injected.for_destination(dest)
        });
        let matcher = match matcher {
            Ok(m) => m,
            // Fail closed: a response that cannot be checked is not handed over.
            Err(e) => {
                return Ok(Err(Error::Denied(format!(
                    "the response could not be checked for credential values: {e}"
                ))));
            }
        };
        let deadline = self.deadline_at;
        let max_inflated = limits
            .max_response_body
            .saturating_mul(INFLATED_PER_BODY_BYTE);
        let answer = match received {
            Ok(r) => {
                scrub_response(r, matcher.as_deref(), deadline, max_inflated).map_err(|withheld| {
                    self.record_outcome(&ready.sent, &ready.destination, withheld.outcome);
                    withheld.error
                })
            }
            Err(e) => Err(e),
        };
        Ok(answer.map_err(|e| scrub_error(e, matcher.as_deref(), deadline)))
    }
}

impl HttpView<'_> {
    /// Time left before the run's deadline.
    fn time_left(&self) -> Duration {
        self.deadline_at.saturating_duration_since(Instant::now())
    }

    /// Plan, resolve and check (bindings, body fields, quotas), then obtain access
    /// tokens and inject. A quota counted for a request that is refused after all (an
    /// access token could not be had) is given back: a counted request is one that leaves.
    async fn prepare(&mut self, req: Request) -> Result<Ready, Refusal> {
        let limits = self.limits().clone();
        let plan = plan::plan(req, &limits, self.table)?;
        let destination = destination_text(&plan.url)?;
        let resolutions = self.resolve_all(&plan, &destination)?;
        // Past this point every refusal concerns credentials that resolved: each is audited.
        let refuse = |this: &Self, r: Refusal| this.refuse_all(&resolutions, &destination, r);

        if self
            .http
            .injected
            .count_after(resolutions.iter().map(|r| r.id.as_str()))
            > limits.max_injected_credentials
        {
            return Err(refuse(
                self,
                limit(format!(
                    "a run may inject at most {} distinct credentials",
                    limits.max_injected_credentials
                )),
            ));
        }
        for u in &plan.uses {
            let r = entry_for(&resolutions, &u.key)?;
            if let Err(d) = check_use(&plan, u, r) {
                return Err(self.refuse(r, &destination, Some(&u.location), d));
            }
        }
        let internal = internal_granted(&resolutions);
        if let Err(reason) = self.check_literal_address(&plan.url, internal) {
            return Err(refuse(
                self,
                denied(format!(
                    "destination {destination} refused: {reason} address ({})",
                    super::clients::allowed_by(reason)
                )),
            ));
        }
        let body = self.check_body(&plan, &resolutions, &destination)?;
        // The last check: the request is counted against each quota now, and given back if
        // it is refused after all.
        let metas: Vec<SecretMeta> = resolutions
            .iter()
            .map(|r| r.resolved.meta.clone())
            .collect();
        let taken_at = self
            .take_quotas(&metas.iter().collect::<Vec<_>>())
            .map_err(|r| refuse(self, r))?;
        // Only now, with every use allowed, does the host ask a token endpoint: a step
        // cannot make it spend (or rotate) refresh tokens by naming a credential in a
        // request its binding, a body field or a quota refuses.
        let ready = self
            .inject_all(plan, resolutions, body, destination, internal)
            .await;
        if ready.is_err() {
            self.give_back_quotas(&metas.iter().collect::<Vec<_>>(), taken_at);
        }
        ready
    }

    /// Obtain access tokens, mint, fill the body and inject, for a request that passed
    /// every check; note what is sent for scrubbing.
    async fn inject_all(
        &mut self,
        plan: Plan,
        mut resolutions: Vec<Resolution>,
        body: Option<CheckedBody>,
        destination: String,
        internal: bool,
    ) -> Result<Ready, Refusal> {
        for r in &mut resolutions {
            if r.resolved.meta.kind == CredentialKind::OAuth2 {
                self.access_token(r, &destination).await?;
            }
        }
        for u in &plan.uses {
            let r = entry_for(&resolutions, &u.key)?;
            if r.resolved.meta.kind == CredentialKind::OAuth2
                && u.location.needs_header_safe_value()
                && !r.value.is_header_safe()
            {
                let d = Denial::same(format!(
                    "the access token of credential {} cannot be injected into {}: it is not header-safe",
                    u.key, u.location
                ));
                return Err(self.refuse(r, &destination, Some(&u.location), d));
            }
        }
        mint_tokens(&mut resolutions)
            .map_err(|r| self.refuse_all(&resolutions, &destination, r))?;
        let refuse = |this: &Self, r: Refusal| this.refuse_all(&resolutions, &destination, r);
        let body = match body {
            None => None,
            Some(b) => Some(self.fill_body(&resolutions, &destination, b)?),
        };
        let body_places: Vec<(CredentialKey, InjectLocation)> =
            body.as_ref().map(|b| b.places.clone()).unwrap_or_default();
        let (outgoing, signatures, computed) =
            inject(&plan, &resolutions, body).map_err(|r| refuse(self, r))?;

        for r in &resolutions {
            // A signing key is never sent, so it is never scrubbed for (that would answer
            // guesses); what the host computed from it and sent is.
            let binding = &r.resolved.meta.binding;
            if r.resolved.meta.kind.is_sent() {
                self.http.injected.note(&r.id, &r.value, binding);
            }
            for v in &r.also_scrubbed {
                self.http.injected.note(&r.id, v, binding);
            }
            for (id, binding, v) in &r.retired {
                self.http.injected.note_retired(id, v, binding);
            }
            if let Some(token) = &r.minted {
                self.http.injected.note_once(&r.id, token, binding);
                // Its signature alone too: an upstream's error may quote just that part.
                if let Some(i) = token.expose().iter().rposition(|b| *b == b'.')
                    && let Ok(sig) = SecretValue::new(token.expose()[i + 1..].to_vec())
                {
                    self.http.injected.note_once(&r.id, &sig, binding);
                }
            }
        }
        for (key, v) in &computed {
            let r = entry_for(&resolutions, key)?;
            self.http
                .injected
                .note_once(&r.id, v, &r.resolved.meta.binding);
        }
        for s in &signatures {
            let r = entry_for(&resolutions, &s.key)?;
            let binding = &r.resolved.meta.binding;
            self.http.injected.note_once(&r.id, &s.text, binding);
            self.http.injected.note_once(&r.id, &s.raw, binding);
        }
        let limits = self.limits();
        let timeout = plan
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .map_or(limits.request_timeout, |t| t.min(limits.request_timeout));
        let sent = resolutions
            .iter()
            .map(|r| {
                let places = plan
                    .uses
                    .iter()
                    .filter(|u| u.key == r.key && !u.location.is_body())
                    .map(|u| u.location.clone())
                    .chain(
                        body_places
                            .iter()
                            .filter(|(k, _)| *k == r.key)
                            .map(|(_, l)| l.clone()),
                    )
                    .collect();
                (r.key.clone(), r.resolved.clone(), places)
            })
            .collect();
        Ok(Ready {
            outgoing,
            checked_url: plan.url,
            destination,
            timeout,
            internal,
            sent,
        })
    }

    /// Resolves and decrypts each distinct key of the request once, at this call: a
    /// rotation is seen by the next call, a deletion refuses it.
    fn resolve_all(&self, plan: &Plan, destination: &str) -> Result<Vec<Resolution>, Refusal> {
        let mut out: Vec<Resolution> = Vec::new();
        for u in &plan.uses {
            if out.iter().any(|r| r.key == u.key) {
                continue;
            }
            let at = self.tier_of(&u.key);
            let found = resolve::resolve_value_at(&self.shared.store, &self.ctx, &u.key, at)
                .and_then(|(resolved, value)| {
                    let retired = resolve::retired_values(&self.shared.store, &resolved)?;
                    Ok((resolved, value, retired))
                });
            match found {
                Ok((resolved, value, retired)) => out.push(Resolution {
                    key: u.key.clone(),
                    id: format!(
                        "{}/{}@{}",
                        resolved.meta.scope, u.key, resolved.meta.version
                    ),
                    retired: retired
                        .into_iter()
                        .map(|(meta, v)| {
                            let id = format!("{}/{}@{}", meta.scope, meta.key, meta.version);
                            (id, meta.binding, v)
                        })
                        .collect(),
                    resolved,
                    value,
                    minted: None,
                    also_scrubbed: Vec::new(),
                }),
                Err(ResolveError::Store(e)) => {
                    return Err(trap(format!("credential store failure: {e}")));
                }
                Err(e) => {
                    let shown = format!("credential {} is no longer available to this step", u.key);
                    self.audit_refusal(
                        AuditEvent::InjectDenied,
                        &u.key,
                        None,
                        Some(destination.to_owned()),
                        Some(u.location.to_string()),
                        e.to_string(),
                        &format!("denied: {shown}"),
                    );
                    return Err(denied(shown));
                }
            }
        }
        Ok(out)
    }

    /// Puts the current access token of the `oauth2` credential `r` in place of its stored
    /// value (refreshing it if need be), once every use of it in the request has passed its
    /// binding: the injection and the scrubbing then see what is sent. A failure refuses the request,
    /// audited, in words that name the credential and the endpoint's status, never a value.
    async fn access_token(&mut self, r: &mut Resolution, destination: &str) -> Result<(), Refusal> {
        let shared = self.shared.clone();
        let http = shared
            .clients
            .get(false)
            .map_err(|e| trap(format!("{e}: {}", e.0)))?;
        let cx = crate::oauth::Context {
            store: shared.store.clone(),
            http,
            policy: shared.address_policy,
            deadline: self.deadline_at,
            request_timeout: self.limits().request_timeout,
            audit: self.record(
                AuditEvent::TokenRefresh,
                &r.key,
                Some(&r.resolved),
                None,
                None,
                String::new(),
            ),
        };
        match shared
            .tokens
            .access_token(cx, &r.resolved.meta, &r.value)
            .await
        {
            Ok(got) => {
                r.id = format!("{}/{}@{}", got.meta.scope, r.key, got.meta.version);
                r.resolved.meta = got.meta;
                r.value = got.access;
                r.also_scrubbed = got.scrub;
                Ok(())
            }
            Err(crate::oauth::OAuthError::Store { source, .. })
                if !matches!(source, crate::store::StoreError::Conflict { .. }) =>
            {
                Err(trap(format!("credential store failure: {source}")))
            }
            Err(e) => {
                let refusal = if e.is_refusal() {
                    denied(e.to_string())
                } else {
                    Refusal::Guest(Error::Transport(e.to_string()))
                };
                self.audit_refusal(
                    AuditEvent::InjectDenied,
                    &r.key,
                    Some(&r.resolved),
                    Some(destination.to_owned()),
                    None,
                    e.to_string(),
                    &shown(&refusal),
                );
                Err(refusal)
            }
        }
    }

    /// Refuses the request because of one credential use, with its audit record.
    fn refuse(
        &self,
        r: &Resolution,
        destination: &str,
        location: Option<&InjectLocation>,
        denial: Denial,
    ) -> Refusal {
        let refusal = denied(denial.guest);
        self.audit_refusal(
            AuditEvent::InjectDenied,
            &r.key,
            Some(&r.resolved),
            Some(destination.to_owned()),
            location.map(ToString::to_string),
            denial.audit,
            &shown(&refusal),
        );
        refusal
    }

    /// Refuses the request as a whole, with an audit record for each credential it carried.
    fn refuse_all(&self, rs: &[Resolution], destination: &str, refusal: Refusal) -> Refusal {
        let why = match &refusal {
            Refusal::Guest(e) => error_summary(e),
            Refusal::Trap(t) => format!("trap: {t}"),
        };
        let told = shown(&refusal);
        for r in rs {
            self.audit_refusal(
                AuditEvent::InjectDenied,
                &r.key,
                Some(&r.resolved),
                Some(destination.to_owned()),
                None,
                why.clone(),
                &told,
            );
        }
        refusal
    }

    /// An IP literal never goes through the resolver: its address is checked here.
    fn check_literal_address(&self, url: &url::Url, internal: bool) -> Result<(), &'static str> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(a)) => std::net::IpAddr::V4(a),
            Some(url::Host::Ipv6(a)) => std::net::IpAddr::V6(a),
            _ => return Ok(()),
        };
        self.shared.address_policy.check_with(ip, internal)
    }

    /// The body, checked before any value is obtained: a template with credentials is
    /// parsed as JSON or form (never pasted into the guest's bytes), and each credential
    /// must sit as a whole value in a field its binding names; the host re-serialises it
    /// ([`HostState::fill_body`]) once the values are final (an access token obtained).
    ///
    /// Template parts → format (from the bindings and the guest's Content-Type) → parsed
    /// template → each slot checked against its binding.
    fn check_body(
        &self,
        plan: &Plan,
        rs: &[Resolution],
        destination: &str,
    ) -> Result<Option<CheckedBody>, Refusal> {
        let pieces = match &plan.body {
            None => return Ok(None),
            Some(PlannedBody::Bytes(b)) => {
                return Ok(Some(CheckedBody::Plain(Zeroizing::new(b.clone()))));
            }
            Some(PlannedBody::Template(pieces)) => pieces,
        };
        let (keys, parts) = template_parts(pieces);
        if keys.is_empty() {
            return Ok(Some(CheckedBody::Plain(assemble(pieces, rs, &[])?)));
        }
        let used: Vec<&Resolution> = keys
            .iter()
            .map(|k| entry_for(rs, k))
            .collect::<Result<_, _>>()?;
        let format = self.body_format(plan, rs, &used, destination)?;
        let template = body::parse_template(&parts, format)
            .map_err(|e| self.refuse_body(rs, destination, e))?;
        let places = self.check_body_slots(&template, &used, destination)?;
        Ok(Some(CheckedBody::Template {
            keys: keys.into_iter().cloned().collect(),
            format,
            template,
            places,
        }))
    }

    /// The body to send: a checked template filled with the values of its credentials.
    fn fill_body(
        &self,
        rs: &[Resolution],
        destination: &str,
        checked: CheckedBody,
    ) -> Result<FilledBody, Refusal> {
        let (keys, format, template, places) = match checked {
            CheckedBody::Plain(bytes) => return Ok(FilledBody::plain(bytes)),
            CheckedBody::Template {
                keys,
                format,
                template,
                places,
            } => (keys, format, template, places),
        };
        let values: Vec<&[u8]> = keys
            .iter()
            .map(|k| entry_for(rs, k).map(|r| r.value.expose()))
            .collect::<Result<_, _>>()?;
        let bytes = template
            .fill(&values)
            .map_err(|e| self.refuse_body(rs, destination, e))?;
        Ok(FilledBody {
            bytes,
            content_type: Some(format.content_type()),
            places,
        })
    }

    /// JSON or form, from the body locations of the bindings of `used` and the guest's
    /// Content-Type. A credential whose binding names no body location is refused, with
    /// its audit record: which one it is, is the binding's business.
    fn body_format(
        &self,
        plan: &Plan,
        rs: &[Resolution],
        used: &[&Resolution],
        destination: &str,
    ) -> Result<BodyFormat, Refusal> {
        let locations: Vec<&[InjectLocation]> = used
            .iter()
            .map(|r| r.resolved.meta.binding.locations.as_slice())
            .collect();
        let guest_type = plan
            .headers
            .iter()
            .find(|(n, _)| n == http::header::CONTENT_TYPE)
            .and_then(|(_, pieces)| match pieces.as_slice() {
                [Piece::Text(t)] => std::str::from_utf8(t).ok(),
                _ => None,
            });
        BodyFormat::choose(&locations, guest_type).map_err(|e| match e {
            body::BodyError::NoBodyLocation => {
                let r = used
                    .iter()
                    .find(|r| {
                        !r.resolved
                            .meta
                            .binding
                            .locations
                            .iter()
                            .any(|l| BodyFormat::of(l).is_some())
                    })
                    .copied()
                    .unwrap_or(used[0]);
                self.refuse(
                    r,
                    destination,
                    Some(&InjectLocation::Body),
                    Denial::same(format!(
                        "credential {} may not be injected into the body",
                        r.key
                    )),
                )
            }
            other => self.refuse_body(rs, destination, other),
        })
    }

    /// Where each credential goes in the parsed template, each field checked against its
    /// binding.
    fn check_body_slots(
        &self,
        template: &body::BodyTemplate,
        used: &[&Resolution],
        destination: &str,
    ) -> Result<Vec<(CredentialKey, InjectLocation)>, Refusal> {
        let mut places = Vec::new();
        for slot in template.slots() {
            let r = used[slot.secret];
            if !r.resolved.meta.binding.allows_location(&slot.location) {
                let msg = format!(
                    "credential {} may not be injected into {}",
                    r.key, slot.location
                );
                return Err(self.refuse(r, destination, Some(&slot.location), Denial::same(msg)));
            }
            places.push((r.key.clone(), slot.location.clone()));
        }
        Ok(places)
    }

    /// Refuses a body that could not be parsed or filled, for every credential it carried.
    fn refuse_body(&self, rs: &[Resolution], destination: &str, e: body::BodyError) -> Refusal {
        self.refuse_all(
            rs,
            destination,
            super::refusal::invalid(format!("body: {e}")),
        )
    }

    /// One audit record per credential sent, written before the request leaves (synced
    /// together under strict durability).
    /// A request recorded as `sent` that then failed: the same records again, with what
    /// became of it. Only the kind of failure: an error's text can hold the URL, and with it
    /// a value injected into the query.
    fn record_failed(&self, sent: &[Sent], destination: &str, e: &Error) {
        let outcome = match e {
            Error::Timeout => "failed: timeout",
            Error::Transport(_) => "failed: transport error",
            Error::LimitExceeded(_) => "failed: response over a limit",
            Error::Denied(_) => "failed: refused after sending",
            Error::InvalidRequest(_) => "failed: invalid request",
        };
        self.record_outcome(sent, destination, outcome);
    }

    /// A second record for each credential sent: what became of the request.
    fn record_outcome(&self, sent: &[Sent], destination: &str, outcome: &str) {
        for (key, resolved, places) in sent {
            let places: Vec<String> = places.iter().map(ToString::to_string).collect();
            self.audit(
                AuditEvent::Inject,
                key,
                Some(resolved),
                Some(destination.to_owned()),
                Some(places.join(",")),
                outcome.into(),
            );
        }
    }

    fn record_sent(&self, ready: &Ready) -> Result<(), crate::audit::AuditError> {
        self.audit_before_send(ready.sent.iter().map(|(key, resolved, places)| {
            let places: Vec<String> = places.iter().map(ToString::to_string).collect();
            self.record(
                AuditEvent::Inject,
                key,
                Some(resolved),
                Some(ready.destination.clone()),
                Some(places.join(",")),
                "sent".into(),
            )
        }))
    }
}

/// Why a use was refused: what the guest is told, and what the audit trail keeps. The
/// guest never learns what a binding does allow (its hosts, methods or paths).
struct Denial {
    guest: String,
    audit: String,
}

impl Denial {
    fn same(msg: String) -> Self {
        Denial {
            audit: msg.clone(),
            guest: msg,
        }
    }
}

/// Whether the binding of `r` allows this use: destination, method and path, location,
/// and whether the value fits there. Body uses are checked field by field once the body
/// is parsed ([`HostState::fill_body`]).
fn check_use(plan: &Plan, u: &Use, r: &Resolution) -> Result<(), Denial> {
    let binding = &r.resolved.meta.binding;
    let kind = r.resolved.meta.kind;
    if u.signature && !kind.is_signature_key() {
        return Err(Denial::same(format!(
            "credential {} is not an hmac-sha256 key: use it as a secret part",
            u.key
        )));
    }
    if !u.signature && kind.is_signature_key() {
        return Err(Denial::same(format!(
            "credential {} is a signing key ({kind}): it is never sent, use it in a signature part",
            u.key
        )));
    }
    let url = &plan.url;
    with_destination(url, |dest| {
        if !binding.allows_destination(dest) {
            if dest.scheme == "http"
                && binding
                    .hosts
                    .iter()
                    .any(|p| p.matches(dest.host, dest.port, dest.scheme))
            {
                return Err(Denial::same(format!(
                    "credential {} may only be sent over https",
                    u.key
                )));
            }
            let guest = format!(
                "credential {} may not be sent to {}",
                u.key,
                destination_text(url).unwrap_or_default()
            );
            // The operator's record says what the binding allows and what would change it;
            // the step is told the refusal only (never another destination of the binding).
            return Err(Denial {
                audit: format!("{guest}: {}", binding_fix(binding, &dest)),
                guest,
            });
        }
        Ok(())
    })?;
    if let Err(why) = binding.allows_request(plan.method.as_str(), url) {
        return Err(Denial {
            guest: format!(
                "credential {} may not be used for {} {}",
                u.key,
                plan.method,
                plan::shorten(url.path())
            ),
            audit: format!("credential {}: {why}", u.key),
        });
    }
    if !binding.methods.is_empty() && plan.overrides_method() {
        return Err(Denial {
            guest: format!(
                "credential {} may not be used with a `_method` query parameter or body field",
                u.key
            ),
            audit: format!(
                "credential {}: its binding allows only {} and the request carries a `_method` override, from which frameworks take the method",
                u.key,
                binding.methods.join(", ")
            ),
        });
    }
    if u.location.is_body() {
        return Ok(());
    }
    if !binding.allows_location(&u.location) {
        return Err(Denial::same(format!(
            "credential {} may not be injected into {}",
            u.key, u.location
        )));
    }
    // What the host computes (a signature, a token) is always header-safe; an OAuth2
    // access token is checked once it is obtained, after these checks.
    if kind.is_sent()
        && kind != CredentialKind::OAuth2
        && u.location.needs_header_safe_value()
        && !r.value.is_header_safe()
    {
        return Err(Denial::same(format!(
            "credential {} cannot be injected into {}: its value is not header-safe",
            u.key, u.location
        )));
    }
    Ok(())
}

/// What a binding allows against the destination `dest` it refused, and the `secret set`
/// flags that would allow it: `its binding allows api.example.com over https only
/// (secret set --allow-host 127.0.0.1:39127 --allow-http)`.
fn binding_fix(binding: &crate::policy::Binding, dest: &Destination<'_>) -> String {
    let hosts: Vec<String> = binding.hosts.iter().map(ToString::to_string).collect();
    let schemes = if binding.allow_http {
        "over https or http"
    } else {
        "over https only"
    };
    // url::Host writes an IPv6 address in brackets, as --allow-host takes it.
    let mut flags = format!("--allow-host {}:{}", dest.host, dest.port);
    if dest.scheme == "http" && !binding.allow_http {
        flags.push_str(" --allow-http");
    }
    format!(
        "its binding allows {} {schemes} (to allow this destination: `latchkey secret set` with {flags})",
        hosts.join(", ")
    )
}

/// Whether the request may reach non-public addresses: it carries credentials, and every
/// one of them has a binding that allows it.
fn internal_granted(rs: &[Resolution]) -> bool {
    !rs.is_empty() && rs.iter().all(|r| r.resolved.meta.binding.allow_internal)
}

/// A body whose credentials' places passed their bindings, not yet filled.
enum CheckedBody {
    /// Bytes with no credential in them.
    Plain(Zeroizing<Vec<u8>>),
    /// A parsed template, its credentials by index (`keys`), and where each goes.
    Template {
        keys: Vec<CredentialKey>,
        format: BodyFormat,
        template: body::BodyTemplate,
        places: Vec<(CredentialKey, InjectLocation)>,
    },
}

/// A body ready to send.
struct FilledBody {
    bytes: Zeroizing<Vec<u8>>,
    /// The Content-Type the host sets (replacing the guest's), for a filled template.
    content_type: Option<&'static str>,
    /// Where each credential went.
    places: Vec<(CredentialKey, InjectLocation)>,
}

impl FilledBody {
    fn plain(bytes: Zeroizing<Vec<u8>>) -> Self {
        FilledBody {
            bytes,
            content_type: None,
            places: Vec::new(),
        }
    }
}

/// Puts the values in place, and the signatures computed over the final body. Plaintext is
/// assembled in zeroizing buffers.
fn inject(
    plan: &Plan,
    rs: &[Resolution],
    body: Option<FilledBody>,
) -> Result<(Outgoing, Vec<Signature>, Computed), Refusal> {
    let signed = body.as_ref().map_or(&[][..], |b| b.bytes.as_slice());
    let sigs = sign::sign_all(plan, |k| entry_for(rs, k).map(|r| &r.value), signed)?;
    let host_type = body.as_ref().and_then(|b| b.content_type);
    let mut headers = HeaderMap::new();
    let mut aws: Option<&Resolution> = None;
    for (name, pieces) in &plan.headers {
        if host_type.is_some() && name == http::header::CONTENT_TYPE {
            continue;
        }
        if let Some(r) = aws_credential(pieces, rs)? {
            // Signed last, over everything else: see `sign_aws`.
            aws = Some(r);
            continue;
        }
        let bytes = assemble(pieces, rs, &sigs)?;
        if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(plan::invalid_value(&format!("header {name}")));
        }
        let mut v = HeaderValue::from_bytes(&bytes)
            .map_err(|_| plan::invalid_value(&format!("header {name}")))?;
        if pieces.iter().any(Piece::is_credential) {
            v.set_sensitive(true);
        }
        headers.append(name.clone(), v);
    }
    if let Some((user, key)) = &plan.basic {
        let mut creds = Zeroizing::new(format!("{user}:").into_bytes());
        creds.extend_from_slice(value_for(rs, key)?.expose());
        let blob = Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds.as_slice())
        ));
        let mut v = HeaderValue::from_str(&blob)
            .map_err(|_| plan::invalid_value("the basic-auth header"))?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    // The host owns content coding: an encoded response could not be scrubbed.
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let mut url = plan.url.clone();
    if !plan.query.is_empty() {
        // Appended as bytes, percent-encoded: a value that is not UTF-8 is sent exactly as
        // stored (a lossy conversion would send other bytes, which no scrub of the value's
        // echo would recognise).
        let mut query = Zeroizing::new(url.query().unwrap_or_default().to_owned());
        for (name, pieces) in &plan.query {
            let bytes = assemble(pieces, rs, &sigs)?;
            if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(plan::invalid_value(&format!(
                    "query parameter {}",
                    plan::shorten(name)
                )));
            }
            if !query.is_empty() {
                query.push('&');
            }
            query.extend(url::form_urlencoded::byte_serialize(name.as_bytes()));
            query.push('=');
            query.extend(url::form_urlencoded::byte_serialize(&bytes));
        }
        url.set_query(Some(&query));
    }
    if let Some(t) = host_type {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    let mut outgoing = Outgoing {
        method: plan.method.clone(),
        url,
        headers,
        body: body.map(|b| b.bytes),
    };
    let computed = match aws {
        Some(r) => sign_aws(&mut outgoing, r)?,
        None => Vec::new(),
    };
    Ok((outgoing, sigs, computed))
}

/// Values the host computed and sent for a credential (a SigV4 authorization, a session
/// token): scrubbed from responses like injected values.
type Computed = Vec<(CredentialKey, SecretValue)>;

/// The `aws-sigv4` credential a header's value is, if it is one. Such a credential is the
/// whole value of its header (its binding allows only `authorization`): text around a
/// signature would not be a SigV4 authorization.
fn aws_credential<'r>(
    pieces: &[Piece],
    rs: &'r [Resolution],
) -> Result<Option<&'r Resolution>, Refusal> {
    for p in pieces {
        let Piece::Secret(k) = p else { continue };
        let r = entry_for(rs, k)?;
        if r.resolved.meta.kind != CredentialKind::AwsSigv4 {
            continue;
        }
        if pieces.len() != 1 {
            return Err(super::refusal::invalid(format!(
                "credential {k} is an aws-sigv4 key: it must be the whole authorization header value, with no text around it"
            )));
        }
        return Ok(Some(r));
    }
    Ok(None)
}

/// Signs the request as it will be sent with the AWS keys of `r`, for the region and
/// service of its binding, replacing any value the step gave for the headers SigV4 sets.
fn sign_aws(out: &mut Outgoing, r: &Resolution) -> Result<Computed, Refusal> {
    let Some(SignerParams::Aws(AwsSigner { region, service })) = &r.resolved.meta.binding.signer
    else {
        return Err(trap(
            "an aws-sigv4 key without a region and service (host bug)",
        ));
    };
    let keys = AwsKeys::parse(&r.value)
        .map_err(|e| trap(format!("credential {} is unusable: {e}", r.key)))?;
    for name in aws::SET_HEADERS {
        out.headers.remove(*name);
    }
    let mut signed_headers = Vec::with_capacity(out.headers.len());
    for (name, value) in &out.headers {
        let text = value.to_str().map_err(|_| {
            plan::invalid_value(&format!("header {name} (a signed header must be text)"))
        })?;
        signed_headers.push((name.as_str().to_owned(), text.to_owned()));
    }
    let body = out.body.as_deref().map_or(&[][..], |b| b.as_slice());
    let request = (
        out.method.as_str(),
        out.url.as_str(),
        &signed_headers[..],
        body,
    );
    let set = aws::sign_request(
        &keys,
        region,
        service,
        request,
        std::time::SystemTime::now(),
    )
    .map_err(|e| trap(format!("credential {} could not sign: {e}", r.key)))?;
    let mut computed = Vec::new();
    for (name, value) in set {
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| trap("SigV4 gave a header value that is not a header (host bug)"))?;
        if name == "authorization" || name == "x-amz-security-token" {
            v.set_sensitive(true);
            // The whole value, what follows its scheme, and the signature alone: an echo
            // may split an authorization header at its scheme or its fields.
            let mut forms = vec![value.as_str()];
            if name == "authorization" {
                forms.extend(value.split_once(' ').map(|(_, rest)| rest));
                forms.extend(value.rsplit_once("Signature=").map(|(_, sig)| sig));
            }
            for form in forms {
                let sent = SecretValue::new(form.as_bytes().to_vec())
                    .map_err(|_| trap("a SigV4 value did not fit a value (host bug)"))?;
                computed.push((r.key.clone(), sent));
            }
        }
        out.headers.insert(name, v);
    }
    Ok(computed)
}

/// Mints the JWT each JWT-kind credential puts in this request.
fn mint_tokens(rs: &mut [Resolution]) -> Result<(), Refusal> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for r in rs.iter_mut().filter(|r| r.resolved.meta.kind.is_jwt()) {
        let Some(SignerParams::Jwt(claims)) = &r.resolved.meta.binding.signer else {
            return Err(trap("a JWT key without claims (host bug)"));
        };
        let es256 = r.resolved.meta.kind == CredentialKind::JwtEs256;
        let key = JwtKey::parse(&r.value, es256)
            .map_err(|e| trap(format!("credential {} is unusable: {e}", r.key)))?;
        let token = jwt::mint(&key, claims, now)
            .map_err(|e| trap(format!("credential {} could not mint a token: {e}", r.key)))?;
        r.minted = Some(
            SecretValue::new(token.as_bytes().to_vec())
                .map_err(|_| trap("a minted token did not fit a value (host bug)"))?,
        );
    }
    Ok(())
}

/// `scheme://host:port` of a URL, for messages and the audit trail.
fn destination_text(url: &url::Url) -> Result<String, Refusal> {
    let host = url
        .host()
        .ok_or_else(|| super::refusal::invalid("the URL has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| super::refusal::invalid("the URL has no port"))?;
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

/// Calls `f` with the destination of `url` (which [`plan::plan`] checked has a host and
/// a port).
fn with_destination<R>(url: &url::Url, f: impl FnOnce(Destination<'_>) -> R) -> R {
    let host = url.host().unwrap_or(url::Host::Domain(""));
    let port = url.port_or_known_default().unwrap_or(0);
    f(Destination {
        scheme: url.scheme(),
        host: &host,
        port,
    })
}

fn entry_for<'r>(rs: &'r [Resolution], key: &CredentialKey) -> Result<&'r Resolution, Refusal> {
    rs.iter()
        .find(|r| r.key == *key)
        .ok_or_else(|| trap("credential used but not resolved (host bug)"))
}

/// What a `secret` part of `key` puts in the request: the value of a static credential,
/// the token minted for a JWT one; never a key that is only for signing.
fn value_for<'r>(rs: &'r [Resolution], key: &CredentialKey) -> Result<&'r SecretValue, Refusal> {
    let r = entry_for(rs, key)?;
    match (&r.minted, r.resolved.meta.kind.is_sent()) {
        (Some(token), _) => Ok(token),
        (None, true) => Ok(&r.value),
        (None, false) => Err(trap("a signing key was about to be sent (host bug)")),
    }
}

/// The template as the body parser sees it: text, and secrets numbered by their key's
/// first appearance; and those keys, in that order.
fn template_parts(pieces: &[Piece]) -> (Vec<&CredentialKey>, Vec<TemplatePart<'_>>) {
    let mut keys: Vec<&CredentialKey> = Vec::new();
    let parts = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => TemplatePart::Text(t),
            // A signature part never reaches a body: `plan` refuses it there. Were one to,
            // it would be numbered like a secret and refused by the kind check.
            Piece::Secret(k) | Piece::Signature(k, _) => {
                let i = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
                    keys.push(k);
                    keys.len() - 1
                });
                TemplatePart::Secret(i)
            }
        })
        .collect();
    (keys, parts)
}

fn assemble(
    pieces: &[Piece],
    rs: &[Resolution],
    sigs: &[Signature],
) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let mut out = Zeroizing::new(Vec::new());
    for p in pieces {
        match p {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Secret(k) => out.extend_from_slice(value_for(rs, k)?.expose()),
            Piece::Signature(k, e) => out.extend_from_slice(sign::text_for(sigs, k, *e)?),
        }
    }
    Ok(out)
}

/// How many times larger than the largest response body accepted a body that is
/// compressed without saying so may inflate while it is checked (4 MiB by default: 16 MiB).
const INFLATED_PER_BODY_BYTE: usize = 4;

/// A response not handed over: what the guest is told, and the audit outcome.
struct Withheld {
    error: Error,
    outcome: &'static str,
}

impl Withheld {
    fn new(outcome: &'static str, message: String) -> Self {
        Withheld {
            error: Error::Denied(message),
            outcome,
        }
    }
}

/// What the guest gets: the values bound to this destination scrubbed from header names,
/// header values and body, and from a value's pieces cut over several header values or
/// JSON string values. A body in a content coding cannot be scrubbed, so where any value
/// applies, a coded body is refused (the host asks for `identity`); every
/// `Content-Encoding` and `Transfer-Encoding` header counts, not only the first. A body
/// that starts like gzip, zlib or zstd whatever its headers say is inflated (at most
/// `max_inflated` bytes, by the deadline) and refused if it holds a value: redacting inside
/// compressed bytes would corrupt them and could miss what the guest inflates.
fn scrub_response(
    r: Received,
    matcher: Option<&Matcher>,
    deadline: Instant,
    max_inflated: usize,
) -> Result<Response, Withheld> {
    let Some(m) = matcher else {
        return Ok(Response {
            status: r.status,
            headers: r
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.body.to_vec(),
        });
    };
    if is_coded(&r.headers) {
        return Err(Withheld::new(
            "refused: content-encoded response",
            "the response is content-encoded (compressed) and cannot be checked for credential values".into(),
        ));
    }
    let unchecked = |e: super::scrub::ScrubError| {
        Withheld::new(
            "refused: response could not be checked",
            format!("the response could not be checked for credential values: {e}"),
        )
    };
    match super::compressed::inflate(&r.body, max_inflated, deadline) {
        Ok(None) => {}
        Ok(Some(inflated)) => {
            if m.holds(&inflated, Some(deadline)).map_err(unchecked)? {
                return Err(Withheld::new(
                    "refused: compressed body holds a credential value",
                    "the response body is compressed and holds a credential value".into(),
                ));
            }
        }
        Err(e) => {
            return Err(Withheld::new(
                "refused: compressed body could not be checked",
                format!(
                    "the response body is compressed and could not be checked for credential values: {e}"
                ),
            ));
        }
    }
    let names = r
        .headers
        .keys()
        .map(|n| {
            m.scrub(n.as_str().as_bytes(), Some(deadline))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(unchecked)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let values: Vec<&[u8]> = r.headers.values().map(HeaderValue::as_bytes).collect();
    let values = m.scrub_pieces(&values, Some(deadline)).map_err(unchecked)?;
    // `keys` gives each name once and `values` every value: pair them again in order.
    let mut headers = Vec::with_capacity(values.len());
    let mut values = values.into_iter();
    for (name, clean) in r.headers.keys().zip(names) {
        for _ in r.headers.get_all(name) {
            let v = values.next().unwrap_or_default();
            headers.push((clean.clone(), String::from_utf8_lossy(&v).into_owned()));
        }
    }
    Ok(Response {
        status: r.status,
        headers,
        body: m.scrub_body(&r.body, Some(deadline)).map_err(unchecked)?,
    })
}

/// Whether any content or transfer coding other than `identity` (and `chunked`, which
/// the HTTP client removes) applies to the body.
fn is_coded(headers: &HeaderMap) -> bool {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    codings(http::header::CONTENT_ENCODING)
        .iter()
        .any(|c| c != "identity")
        || codings(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|c| c != "identity" && c != "chunked")
}

/// Error text the guest sees, scrubbed like the response it stands for: it may carry
/// guest-chosen text (a host name), so only values bound to the destination apply.
fn scrub_error(e: Error, matcher: Option<&Matcher>, deadline: Instant) -> Error {
    let Some(m) = matcher else { return e };
    let clean = |msg: String| match m.scrub(msg.as_bytes(), Some(deadline)) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => super::injected::WITHHELD.to_owned(),
    };
    match e {
        Error::Transport(m) => Error::Transport(clean(m)),
        Error::Denied(m) => Error::Denied(clean(m)),
        Error::InvalidRequest(m) => Error::InvalidRequest(clean(m)),
        Error::LimitExceeded(m) => Error::LimitExceeded(clean(m)),
        Error::Timeout => Error::Timeout,
    }
}

/// What the guest was told of a refusal: the error it got, or, for a trap, only that it
/// was stopped (a trap's text is the operator's).
fn shown(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Guest(e) => error_summary(e),
        Refusal::Trap(_) => "the step was stopped by the host (a trap)".to_owned(),
    }
}

fn error_summary(e: &Error) -> String {
    match e {
        Error::InvalidRequest(m) => format!("invalid request: {m}"),
        Error::Denied(m) => format!("denied: {m}"),
        Error::Transport(m) => format!("transport: {m}"),
        Error::Timeout => "timeout".into(),
        Error::LimitExceeded(m) => format!("limit: {m}"),
    }
}
