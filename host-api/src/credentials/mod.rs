//! The WIT `credentials` interface: opaque handles in the instance's resource table.
//!
//! A handle records only the key. Each use re-resolves it for the step (allowlist, tiers,
//! integration) and decrypts afresh, so rotation and deletion take effect on the next call.

mod host;

use crate::secret::CredentialKey;

/// What a guest's `credential` resource stands for on the host. Carries no value.
#[derive(Debug)]
pub struct CredentialHandle {
    pub(crate) key: CredentialKey,
}
