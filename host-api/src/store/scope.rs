//! Where a secret is stored: the scopes of docs/requirements.md (platform, workspace, workflow, a
//! user's personal keys, a user's key for one workflow, a builder's key for one workflow).

use std::fmt;

/// The scope a secret lives in. Names (workspace, workflow, user) are free-form but may not
/// contain `/`, `@`, `:` or control characters, so the textual form is unambiguous.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// Platform-wide fallback credentials (the last tier).
    Platform,
    /// Shared by every workflow of a workspace (the default scope).
    Workspace {
        /// Workspace name.
        workspace: String,
    },
    /// One workflow of a workspace; overrides the workspace scope.
    Workflow {
        /// Workspace name.
        workspace: String,
        /// Workflow name.
        workflow: String,
    },
    /// A user's personal keys, for any workflow they run (personal keys).
    User {
        /// User name.
        user: String,
    },
    /// A user's key for one workflow (the user's keys, per workflow).
    UserWorkflow {
        /// User name.
        user: String,
        /// Workspace name.
        workspace: String,
        /// Workflow name.
        workflow: String,
    },
    /// The workflow builder's key for one workflow (the builder's keys).
    BuilderWorkflow {
        /// Builder's user name.
        builder: String,
        /// Workspace name.
        workspace: String,
        /// Workflow name.
        workflow: String,
    },
}

/// Why a scope (or a name in it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid scope {scope:?}: {reason}")]
pub struct ScopeError {
    /// The refused text.
    pub scope: String,
    /// What is wrong with it.
    pub reason: String,
    /// Which name was refused; `None` when the textual form itself is malformed.
    pub name: Option<NameKind>,
}

/// The names a scope is made of (and step names, which follow the same rules because they
/// appear beside them in reports and the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A workspace name.
    Workspace,
    /// A workflow name.
    Workflow,
    /// A user name.
    User,
    /// A builder's user name.
    Builder,
    /// A step name.
    Step,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Workspace => "workspace",
            NameKind::Workflow => "workflow",
            NameKind::User => "user",
            NameKind::Builder => "builder",
            NameKind::Step => "step",
        })
    }
}

/// Checks one name inside a scope (or a step name): not empty, at most 200 bytes, no `/`,
/// `@`, `:` or control characters, so that the textual forms stay unambiguous.
pub fn check_name(what: NameKind, name: &str) -> Result<(), ScopeError> {
    let bad = |reason: String| ScopeError {
        scope: name.chars().take(100).collect(),
        reason,
        name: Some(what),
    };
    if name.is_empty() {
        return Err(bad(format!("the {what} name is empty")));
    }
    if name.len() > 200 {
        return Err(bad(format!("the {what} name is longer than 200 bytes")));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '@' | ':'))
    {
        return Err(bad(format!(
            "the {what} name contains '/', '@', ':' or a control character"
        )));
    }
    Ok(())
}

impl Scope {
    /// Builds a scope, validating every name in it.
    pub fn validated(self) -> Result<Self, ScopeError> {
        match &self {
            Scope::Platform => {}
            Scope::Workspace { workspace } => check_name(NameKind::Workspace, workspace)?,
            Scope::Workflow {
                workspace,
                workflow,
            } => {
                check_name(NameKind::Workspace, workspace)?;
                check_name(NameKind::Workflow, workflow)?;
            }
            Scope::User { user } => check_name(NameKind::User, user)?,
            Scope::UserWorkflow {
                user,
                workspace,
                workflow,
            } => {
                check_name(NameKind::User, user)?;
                check_name(NameKind::Workspace, workspace)?;
                check_name(NameKind::Workflow, workflow)?;
            }
            Scope::BuilderWorkflow {
                builder,
                workspace,
                workflow,
            } => {
                check_name(NameKind::Builder, builder)?;
                check_name(NameKind::Workspace, workspace)?;
                check_name(NameKind::Workflow, workflow)?;
            }
        }
        Ok(self)
    }

    /// Parses the textual form printed by `Display`:
    /// `platform`, `workspace:W`, `workflow:W/F`, `user:U`, `user:U@W/F`, `builder:B@W/F`.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let bad = |reason: &str| ScopeError {
            scope: s.chars().take(200).collect(),
            reason: reason.to_owned(),
            name: None,
        };
        let split_wf = |rest: &str| -> Result<(String, String), ScopeError> {
            let (w, f) = rest
                .split_once('/')
                .ok_or_else(|| bad("expected WORKSPACE/WORKFLOW"))?;
            Ok((w.to_owned(), f.to_owned()))
        };
        let scope = match s.split_once(':') {
            None if s == "platform" => Scope::Platform,
            Some(("workspace", w)) => Scope::Workspace {
                workspace: w.to_owned(),
            },
            Some(("workflow", rest)) => {
                let (workspace, workflow) = split_wf(rest)?;
                Scope::Workflow {
                    workspace,
                    workflow,
                }
            }
            Some(("user", rest)) => match rest.split_once('@') {
                None => Scope::User {
                    user: rest.to_owned(),
                },
                Some((user, wf)) => {
                    let (workspace, workflow) = split_wf(wf)?;
                    Scope::UserWorkflow {
                        user: user.to_owned(),
                        workspace,
                        workflow,
                    }
                }
            },
            Some(("builder", rest)) => {
                let (builder, wf) = rest
                    .split_once('@')
                    .ok_or_else(|| bad("expected builder:NAME@WORKSPACE/WORKFLOW"))?;
                let (workspace, workflow) = split_wf(wf)?;
                Scope::BuilderWorkflow {
                    builder: builder.to_owned(),
                    workspace,
                    workflow,
                }
            }
            _ => {
                return Err(bad(
                    "expected platform, workspace:W, workflow:W/F, user:U, user:U@W/F or builder:B@W/F",
                ));
            }
        };
        scope.validated()
    }

    /// Whether this is one of `user`'s own scopes (`user:U`, `user:U@W/F`, and
    /// `builder:U@W/F`, the keys of a workflow they built): what is stored there is theirs,
    /// whoever stored it.
    pub fn is_personal_to(&self, user: &str) -> bool {
        match self {
            Scope::User { user: u }
            | Scope::UserWorkflow { user: u, .. }
            | Scope::BuilderWorkflow { builder: u, .. } => u == user,
            _ => false,
        }
    }

    /// The creator-independent part of a storage id, unique per scope.
    pub(crate) fn storage_prefix(&self) -> String {
        format!("{self}\u{0}")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Platform => f.write_str("platform"),
            Scope::Workspace { workspace } => write!(f, "workspace:{workspace}"),
            Scope::Workflow {
                workspace,
                workflow,
            } => write!(f, "workflow:{workspace}/{workflow}"),
            Scope::User { user } => write!(f, "user:{user}"),
            Scope::UserWorkflow {
                user,
                workspace,
                workflow,
            } => {
                write!(f, "user:{user}@{workspace}/{workflow}")
            }
            Scope::BuilderWorkflow {
                builder,
                workspace,
                workflow,
            } => {
                write!(f, "builder:{builder}@{workspace}/{workflow}")
            }
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, ScopeError> {
        Scope::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_scope_form_and_round_trips() {
        for s in [
            "platform",
            "workspace:acme",
            "workflow:acme/daily-report",
            "user:alice",
            "user:alice@acme/daily-report",
            "builder:bob@acme/daily-report",
        ] {
            assert_eq!(Scope::parse(s).expect(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_scopes() {
        for s in [
            "",
            "global",
            "workspace:",
            "workflow:acme",
            "workflow:a/b/c",
            "user:",
            "builder:bob",
            "user:a@b",
            "workspace:a\nb",
            "user:a:b",
        ] {
            assert!(Scope::parse(s).is_err(), "{s:?}");
        }
    }
}
