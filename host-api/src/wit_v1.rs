//! `latchkey:workflow@0.1.0` for the guests built against it: each call is converted into
//! its `0.2.0` form (0.1.0 is a subset: no signature parts) and handled by the same host
//! code, and the answer converted back. Nothing here decides anything.

use crate::bindings::CredentialHandle;
use crate::bindings::v1::latchkey::workflow::{credentials as c1, http as h1, log as l1};
use crate::bindings::{wit_credentials as c2, wit_http as h2, wit_log as l2};
use crate::credentials::{CredentialsHost, CredentialsView};
use crate::guest_log::{LogHost, LogView};
use crate::http::{HttpHost, HttpView};
use wasmtime::component::{Linker, Resource};

/// Adds the `0.1.0` interfaces to `linker`, beside the `0.2.0` ones, on the same views.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    credentials: fn(&mut T) -> CredentialsView<'_>,
    http: fn(&mut T) -> HttpView<'_>,
    log: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    c1::add_to_linker::<T, CredentialsHost>(linker, credentials)?;
    h1::add_to_linker::<T, HttpHost>(linker, http)?;
    l1::add_to_linker::<T, LogHost>(linker, log)
}

impl c1::Host for CredentialsView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CredentialHandle>, c1::Error>> {
        Ok(c2::Host::get(self, key)?.map_err(|e| match e {
            c2::Error::MissingCredential(k) => c1::Error::MissingCredential(k),
            c2::Error::InvalidKey(k) => c1::Error::InvalidKey(k),
            c2::Error::TooManyHandles => c1::Error::TooManyHandles,
        }))
    }
}

impl c1::HostCredential for CredentialsView<'_> {
    fn key(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<String> {
        c2::HostCredential::key(self, handle)
    }

    fn drop(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<()> {
        c2::HostCredential::drop(self, handle)
    }
}

impl l1::Host for LogView<'_> {
    fn log(&mut self, level: l1::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            l1::Level::Trace => l2::Level::Trace,
            l1::Level::Debug => l2::Level::Debug,
            l1::Level::Info => l2::Level::Info,
            l1::Level::Warn => l2::Level::Warn,
            l1::Level::Error => l2::Level::Error,
        };
        l2::Host::log(self, level, message)
    }
}

impl h1::Host for HttpView<'_> {
    async fn fetch(
        &mut self,
        request: h1::Request,
    ) -> wasmtime::Result<Result<h1::Response, h1::Error>> {
        let answer = h2::Host::fetch(self, request_v2(request)).await?;
        Ok(answer
            .map(|r| h1::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| match e {
                h2::Error::InvalidRequest(m) => h1::Error::InvalidRequest(m),
                h2::Error::Denied(m) => h1::Error::Denied(m),
                h2::Error::Transport(m) => h1::Error::Transport(m),
                h2::Error::Timeout => h1::Error::Timeout,
                h2::Error::LimitExceeded(m) => h1::Error::LimitExceeded(m),
            }))
    }
}

fn request_v2(r: h1::Request) -> h2::Request {
    h2::Request {
        method: match r.method {
            h1::Method::Get => h2::Method::Get,
            h1::Method::Head => h2::Method::Head,
            h1::Method::Post => h2::Method::Post,
            h1::Method::Put => h2::Method::Put,
            h1::Method::Patch => h2::Method::Patch,
            h1::Method::Delete => h2::Method::Delete,
            h1::Method::Options => h2::Method::Options,
        },
        url: r.url,
        headers: r
            .headers
            .into_iter()
            .map(|h| h2::Header {
                name: h.name,
                value: parts_v2(h.value),
            })
            .collect(),
        query: r
            .query
            .into_iter()
            .map(|q| h2::QueryParam {
                name: q.name,
                value: parts_v2(q.value),
            })
            .collect(),
        basic_auth: r.basic_auth.map(|b| h2::BasicAuth {
            username: b.username,
            password: b.password,
        }),
        body: r.body.map(|b| match b {
            h1::Body::Bytes(b) => h2::Body::Bytes(b),
            h1::Body::Template(parts) => h2::Body::Template(parts_v2(parts)),
        }),
        timeout_ms: r.timeout_ms,
    }
}

fn parts_v2(parts: Vec<h1::ValuePart>) -> Vec<h2::ValuePart> {
    parts
        .into_iter()
        .map(|p| match p {
            h1::ValuePart::Text(t) => h2::ValuePart::Text(t),
            h1::ValuePart::Secret(c) => h2::ValuePart::Secret(c),
        })
        .collect()
}
