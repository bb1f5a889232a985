//! Who acts, and what their role lets them do: the one place roles are decided.
//!
//! Every management call of [`crate::Latchkey`] takes the acting [`Principal`]; its name is
//! what the audit trail and a secret's `created_by`/`updated_by` record. No role can read a
//! value: there is no such action.

use crate::store::{NameKind, ScopeError, check_name};
use std::fmt;

/// What a principal may do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Manages secrets, members, tokens and the store; may do everything a member may.
    Admin,
    /// Lists metadata, reads the audit trail, checks and runs workflows as themselves.
    Member,
    /// Only runs workflows.
    Runner,
}

impl Role {
    /// The role's name, as written in tokens and reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Runner => "runner",
        }
    }

    /// Parses `admin`, `member` or `runner`.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Member, Role::Runner]
            .into_iter()
            .find(|r| r.name() == s)
    }

    /// Whether this role may perform `action`.
    pub fn may(self, action: Action) -> bool {
        match self {
            Role::Admin => true,
            // A member may read metadata and the trail, and run as themselves; choosing
            // a run's workspace, workflow, builder or integrations chooses whose keys it
            // resolves, and is an admin's.
            Role::Member => matches!(
                action,
                Action::ReadMetadata | Action::ReadAudit | Action::Run
            ),
            Role::Runner => matches!(action, Action::Run),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a principal asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Create, rotate or delete a secret.
    ManageSecrets,
    /// Remove a member.
    ManageMembers,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Register components and workflows on a server (code that will run with the
    /// store's credentials).
    ManageWorkflows,
    /// Re-wrap the store under a new master key, verify every record.
    MaintainStore,
    /// List and describe secrets' metadata (never values).
    ReadMetadata,
    /// Query and verify the audit trail.
    ReadAudit,
    /// Run registered steps and workflows as oneself, and see one's own runs.
    Run,
    /// Choose the context of a run (workspace, workflow, builder, integration types,
    /// allowlist): which scoped keys it may resolve, the platform's included.
    ChooseRunContext,
    /// See every principal's runs (and their audit records), not only one's own.
    ReadAllRuns,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::ManageSecrets => "managing secrets",
            Action::ManageMembers => "managing members",
            Action::ManageTokens => "managing tokens",
            Action::ManageWorkflows => "registering components and workflows",
            Action::MaintainStore => "maintaining the store",
            Action::ReadMetadata => "reading secret metadata",
            Action::ReadAudit => "reading the audit trail",
            Action::Run => "running workflows",
            Action::ChooseRunContext => {
                "choosing a run's workspace, workflow, builder or integrations"
            }
            Action::ReadAllRuns => "reading other principals' runs",
        })
    }
}

/// An authenticated actor: a user name (valid like a scope's user name) and a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    role: Role,
}

impl Principal {
    /// A principal named `name` with `role`; the name follows the rules of user names.
    pub fn new(name: &str, role: Role) -> Result<Self, ScopeError> {
        check_name(NameKind::User, name)?;
        Ok(Principal {
            name: name.to_owned(),
            role,
        })
    }

    /// The name recorded in the audit trail.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_requirements_say() {
        use Action::*;
        let all = [
            ManageSecrets,
            ManageMembers,
            ManageTokens,
            ManageWorkflows,
            MaintainStore,
            ReadMetadata,
            ReadAudit,
            Run,
            ChooseRunContext,
            ReadAllRuns,
        ];
        assert!(all.iter().all(|&a| Role::Admin.may(a)));
        let member: Vec<_> = all.iter().filter(|&&a| Role::Member.may(a)).collect();
        assert_eq!(member, [&ReadMetadata, &ReadAudit, &Run]);
        let runner: Vec<_> = all.iter().filter(|&&a| Role::Runner.may(a)).collect();
        assert_eq!(runner, [&Run]);
    }

    #[test]
    fn names_follow_user_name_rules() {
        assert!(Principal::new("alice", Role::Admin).is_ok());
        for bad in ["", "a/b", "a@b", "a:b", "a\u{1b}b", &"x".repeat(201)] {
            assert!(Principal::new(bad, Role::Member).is_err(), "{bad:?}");
        }
        assert_eq!(Role::parse("runner"), Some(Role::Runner));
        assert_eq!(Role::parse("root"), None);
    }
}
