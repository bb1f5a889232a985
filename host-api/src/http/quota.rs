//! The quota hook of a fetch: every credential of the request is counted against its
//! quota, all or none, after every other check passed and before anything is obtained for
//! the request (an OAuth2 access token), recorded or sent; a request refused after all is
//! given back. The counters and their windows are in `store::quota` and `policy::quota`.

use super::HttpView;
use super::refusal::{Refusal, limit, trap};
use crate::store::{QuotaRefusal, SecretMeta};

impl HttpView<'_> {
    /// Counts this request for every credential in `metas` that has a quota, or refuses it
    /// naming the credential and the window that is used up. The guest is not told the
    /// limit (the operator's business, like the binding); the audit trail is. Returns when
    /// it was counted, for [`HttpView::give_back_quotas`].
    pub(super) fn take_quotas(&self, metas: &[&SecretMeta]) -> Result<u64, Refusal> {
        let now = crate::store::unix_millis();
        match self.shared.store.take_quota(metas, now) {
            Ok(()) => Ok(now),
            Err(QuotaRefusal::Exceeded { key, window, .. }) => Err(limit(format!(
                "credential {key} has used its {window} request quota; nothing was sent"
            ))),
            Err(e) => Err(trap(format!("credential store failure: {e}"))),
        }
    }

    /// Gives back what [`HostState::take_quotas`] counted at `taken_at` for a request that
    /// was then refused before it left. Best effort: a failure leaves the request counted
    /// (over-counted, never under-counted).
    pub(super) fn give_back_quotas(&self, metas: &[&SecretMeta], taken_at: u64) {
        if let Err(e) = self.shared.store.give_back_quota(metas, taken_at) {
            tracing::warn!(error = %e, "could not give back the quota of a refused request");
        }
    }
}
