//! The quota hook of a fetch: every credential of the request is counted against its
//! quota, all or none, after every other check passed and before the request is recorded
//! and sent. The counters and their windows are in `store::quota` and `policy::quota`.

use super::refusal::{Refusal, limit, trap};
use crate::sandbox::HostState;
use crate::store::{QuotaRefusal, SecretMeta};

impl HostState {
    /// Counts this request for every credential in `metas` that has a quota, or refuses it
    /// naming the credential and the window that is used up. The guest is not told the
    /// limit (the operator's business, like the binding); the audit trail is.
    pub(super) fn take_quotas(&self, metas: &[&SecretMeta]) -> Result<(), Refusal> {
        match self
            .shared
            .store
            .take_quota(metas, crate::store::unix_millis())
        {
            Ok(()) => Ok(()),
            Err(QuotaRefusal::Exceeded { key, window, .. }) => Err(limit(format!(
                "credential {key} has used its {window} request quota; nothing was sent"
            ))),
            Err(e) => Err(trap(format!("credential store failure: {e}"))),
        }
    }
}
