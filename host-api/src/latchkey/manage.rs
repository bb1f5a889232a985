//! Write-only secret management, members and store maintenance, each on behalf of a
//! principal whose role is checked first. Values go in; only metadata comes out.

use super::{Error, Latchkey};
use crate::principal::{Action, Principal};
use crate::secret::{CredentialKey, SecretValue};
use crate::store::{MasterKey, Scope, SecretMeta, SecretSpec, StoreError, VerifyReport};
use std::sync::Arc;

impl Latchkey {
    /// Stores `value` as `key` in `scope` (creates it, or replaces value and binding).
    pub fn set_secret(
        &self,
        by: &Principal,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        spec: SecretSpec,
    ) -> Result<SecretMeta, Error> {
        self.allow(by, Action::ManageSecrets)?;
        Ok(self.store.set(scope, key, value, spec, by.name())?)
    }

    /// Replaces the value of an existing secret, keeping its binding; the next call of any
    /// step uses it. `allow_weak_value` replaces the override of the previous value.
    pub fn rotate_secret(
        &self,
        by: &Principal,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        allow_weak_value: bool,
    ) -> Result<SecretMeta, Error> {
        self.allow(by, Action::ManageSecrets)?;
        Ok(self
            .store
            .rotate(scope, key, value, allow_weak_value, by.name())?)
    }

    /// Deletes a secret; steps using it fail at their next call.
    pub fn delete_secret(
        &self,
        by: &Principal,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<SecretMeta, Error> {
        self.allow(by, Action::ManageSecrets)?;
        Ok(self.store.delete(scope, key, by.name())?)
    }

    /// The metadata of one secret, if it exists.
    pub fn describe_secret(
        &self,
        by: &Principal,
        scope: &Scope,
        key: &CredentialKey,
    ) -> Result<Option<SecretMeta>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        Ok(self.store.meta(scope, key)?)
    }

    /// Metadata of every secret, optionally only in `scope`; a damaged record is reported
    /// in place.
    pub fn list_secrets(
        &self,
        by: &Principal,
        scope: Option<&Scope>,
    ) -> Result<Vec<Result<SecretMeta, StoreError>>, Error> {
        self.allow(by, Action::ReadMetadata)?;
        Ok(self.store.list(scope)?)
    }

    /// Removes member `user`: deletes every secret they created, in every scope. Returns
    /// what was deleted.
    pub fn remove_member(&self, by: &Principal, user: &str) -> Result<Vec<SecretMeta>, Error> {
        self.allow(by, Action::ManageMembers)?;
        Ok(self.store.delete_created_by(user, by.name())?)
    }

    /// Checks that every record decodes and authenticates (never returning a value).
    pub fn verify_store(&self, by: &Principal) -> Result<VerifyReport, Error> {
        self.allow(by, Action::MaintainStore)?;
        Ok(self.store.verify_all()?)
    }

    /// Re-wraps the data key under `new`; afterwards only `new` opens the store. Needs the
    /// store to itself, so call it before loading any step.
    pub fn rotate_master(
        &mut self,
        by: &Principal,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<(), Error> {
        self.allow(by, Action::MaintainStore)?;
        let store = Arc::get_mut(&mut self.store).ok_or(Error::InUse)?;
        Ok(store.rotate_master(old, new, by.name())?)
    }
}
