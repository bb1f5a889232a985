//! Host side of `latchkey:workflow/credentials`.

use super::CredentialsView;
use crate::audit::AuditEvent;
use crate::bindings::CredentialHandle;
use crate::bindings::wit_credentials::{self, Error};
use crate::guest_log::GuestLogLine;
use crate::resolve::{self, ResolveError};
use crate::secret::CredentialKey;
use wasmtime::component::Resource;

impl wit_credentials::Host for CredentialsView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Resource<CredentialHandle>, Error>> {
        let key = match CredentialKey::new(&key) {
            Ok(k) => k,
            Err(e) => return Ok(Err(Error::InvalidKey(e.to_string()))),
        };
        if self.credentials.live_handles >= self.limits().max_handles {
            return Ok(Err(Error::TooManyHandles));
        }
        // Gets per run, not only live handles: a get/drop loop would otherwise resolve
        // and audit without end. Past the cap `get` answers `too-many-handles`
        // (the guest can handle it like the live-handle limit) and is neither resolved nor
        // audited, so the audit trail holds at most `max_credential_gets` records per run.
        let max_gets = self.limits().max_credential_gets;
        if self.credentials.gets >= max_gets {
            // The WIT error carries no text; tell the operator once which limit it was.
            if self.credentials.gets == max_gets {
                self.credentials.gets += 1;
                self.log.lines.push(GuestLogLine {
                    level: "warn",
                    message: format!(
                        "host: credentials.get refused after {max_gets} calls in this run (limit max_credential_gets)"
                    ),
                });
            }
            return Ok(Err(Error::TooManyHandles));
        }
        self.credentials.gets += 1;
        match resolve::resolve(&self.shared.store, &self.ctx, &key) {
            Ok(resolved) => {
                // Nothing leaves the host at a get: its record goes with the run's next
                // one (the fetch's, before its request leaves) or at the run's end.
                self.audit_later(self.record(
                    AuditEvent::Resolve,
                    &key,
                    Some(&resolved),
                    None,
                    None,
                    "ok".into(),
                ));
                self.credentials.note_resolved(&key, &resolved);
                self.note_tier(&key, resolved.tier);
                let handle = self.table.push(CredentialHandle { key })?;
                self.credentials.live_handles += 1;
                Ok(Ok(handle))
            }
            Err(e) => {
                let outcome = e.to_string();
                let shown = match &e {
                    ResolveError::Store(_) => "the host could not read the credential store",
                    _ => "missing-credential",
                };
                self.audit_refusal(
                    AuditEvent::ResolveDenied,
                    &key,
                    None,
                    None,
                    None,
                    outcome,
                    shown,
                );
                match e {
                    // A damaged store is the operator's problem, not the guest's: trap.
                    ResolveError::Store(err) => Err(wasmtime::Error::msg(format!(
                        "credential store failure: {err}"
                    ))),
                    _ => {
                        self.credentials.missing += 1;
                        Ok(Err(Error::MissingCredential(key.to_string())))
                    }
                }
            }
        }
    }
}

impl wit_credentials::HostCredential for CredentialsView<'_> {
    fn key(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.key.to_string())
    }

    fn drop(&mut self, handle: Resource<CredentialHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.credentials.live_handles = self.credentials.live_handles.saturating_sub(1);
        Ok(())
    }
}
