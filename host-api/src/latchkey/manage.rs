//! Write-only secret management, members and store maintenance, each on behalf of a
//! principal whose role is checked first. Values go in; only metadata comes out.

use super::{Error, Latchkey};
use crate::principal::{Action, Principal, Role};
use crate::secret::{CredentialKey, SecretValue};
use crate::store::{
    CopyReport, KeyWrapper, Location, NameKind, Scope, SecretMeta, SecretSpec, StoreError,
    VerifyReport, check_name,
};
use crate::tokens::{self, Token, TokenError, TokenMeta};
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

    /// [`Self::rotate_secret`], also replacing the secret's quota when `quota` is given.
    pub fn rotate_secret_with_quota(
        &self,
        by: &Principal,
        scope: &Scope,
        key: &CredentialKey,
        value: SecretValue,
        allow_weak_value: bool,
        quota: Option<crate::policy::Quota>,
    ) -> Result<SecretMeta, Error> {
        self.allow(by, Action::ManageSecrets)?;
        Ok(self
            .store
            .rotate_with_quota(scope, key, value, allow_weak_value, quota, by.name())?)
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

    /// Removes member `user`: revokes their API tokens, then deletes their secrets: every
    /// secret they created, in any scope, and every secret in their own scopes (`user:U`,
    /// `user:U@W/F`, `builder:U@W/F`), whoever created it. Returns what was deleted. A name no member could
    /// have (see [`check_name`]) is refused before anything is changed or recorded.
    pub fn remove_member(&self, by: &Principal, user: &str) -> Result<Vec<SecretMeta>, Error> {
        self.allow(by, Action::ManageMembers)?;
        check_name(NameKind::User, user)?;
        tokens::revoke(&self.store, None, Some(user), by.name())?;
        Ok(self.store.delete_member_secrets(user, by.name())?)
    }

    /// Creates an API token for `name` with `role`. The token is returned once and never
    /// stored (only its HMAC is).
    pub fn create_token(
        &self,
        by: &Principal,
        name: &str,
        role: Role,
    ) -> Result<(TokenMeta, Token), Error> {
        self.create_expiring_token(by, name, role, None)
    }

    /// [`Self::create_token`] for a token that stops authenticating `expires_in` from now
    /// (`None`: only when revoked).
    pub fn create_expiring_token(
        &self,
        by: &Principal,
        name: &str,
        role: Role,
        expires_in: Option<std::time::Duration>,
    ) -> Result<(TokenMeta, Token), Error> {
        self.allow(by, Action::ManageTokens)?;
        Principal::new(name, role)?;
        Ok(tokens::create(
            &self.store,
            name,
            role,
            by.name(),
            expires_in,
        )?)
    }

    /// Every token's record (never a token), revoked ones marked.
    pub fn list_tokens(&self, by: &Principal) -> Result<Vec<TokenMeta>, Error> {
        self.allow(by, Action::ManageTokens)?;
        Ok(tokens::list(&self.store)?)
    }

    /// Revokes the token with public id `id`.
    pub fn revoke_token(&self, by: &Principal, id: &str) -> Result<TokenMeta, Error> {
        self.allow(by, Action::ManageTokens)?;
        let mut revoked = tokens::revoke(&self.store, Some(id), None, by.name())?;
        revoked
            .pop()
            .ok_or_else(|| Error::Token(TokenError::NotFound(id.to_owned())))
    }

    /// The principal `token` authenticates: unknown, revoked and malformed tokens all get
    /// the same answer. The token's record is read from the store at every call, so a
    /// revocation made through any host of a shared store is refused at the next request;
    /// only the check and parse of an unchanged record are reused.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        Ok(tokens::authenticate(&self.store, &self.tokens, token)?)
    }

    /// Checks that every record decodes and authenticates (never returning a value).
    pub fn verify_store(&self, by: &Principal) -> Result<VerifyReport, Error> {
        self.allow(by, Action::MaintainStore)?;
        Ok(self.store.verify_all()?)
    }

    /// Copies every record, sealed as stored, into a new store at `target` (a directory
    /// created for it, or a migrated database holding no store): `latchkey store copy`.
    /// The copy opens with the same master key.
    pub fn copy_store(&self, by: &Principal, target: &Location) -> Result<CopyReport, Error> {
        self.allow(by, Action::MaintainStore)?;
        let backend = target.backend(true)?;
        Ok(self.store.copy_into(backend.as_ref(), &target.shown())?)
    }

    /// Re-wraps the data key under `new`; afterwards only `new` opens the store. Needs the
    /// store to itself, so call it before loading any step.
    pub fn rotate_master(
        &mut self,
        by: &Principal,
        old: &dyn KeyWrapper,
        new: &dyn KeyWrapper,
    ) -> Result<(), Error> {
        self.allow(by, Action::MaintainStore)?;
        let store = Arc::get_mut(&mut self.store).ok_or(Error::InUse)?;
        Ok(store.rotate_master(old, new, by.name())?)
    }
}
