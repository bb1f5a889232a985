//! `latchkey member …`: workspace members.

use crate::common::{ActorArgs, StoreArgs};
use crate::remote::{Remote, encode};
use anyhow::{Context, Result};
use clap::Subcommand;
use latchkey_host::Options;

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Remove a member: delete every secret they created, in every scope, and every
    /// secret in their own scopes (user:U, user:U@W/F, builder:U@W/F), whoever stored it.
    Remove {
        /// The member's user name.
        user: String,
        /// Acting identity recorded in the audit trail (default: the OS user).
        #[command(flatten)]
        actor: ActorArgs,
    },
}

impl MemberCommand {
    pub fn execute(self, args: &StoreArgs, server: Option<&Remote>) -> Result<()> {
        match self {
            MemberCommand::Remove { user, .. } if server.is_some() => {
                let r = server.context("--server")?;
                let removed: latchkey_server::api::MemberRemoved = r.call(
                    &format!("removing member {user}"),
                    reqwest::Method::DELETE,
                    &format!("/v1/members/{}", encode(&user)),
                    None::<&()>,
                )?;
                println!(
                    "removed member {user}: revoked their tokens, deleted {} secret(s)",
                    removed.deleted.len()
                );
                for m in removed.deleted {
                    println!("  {} {}", m.scope, m.key);
                }
                Ok(())
            }
            MemberCommand::Remove { user, actor } => {
                let by = actor.principal()?;
                let latchkey = args.open(Options::default())?;
                let deleted = latchkey
                    .remove_member(&by, &user)
                    .context("removing the member's secrets")?;
                println!("removed member {user}: deleted {} secret(s)", deleted.len());
                for m in deleted {
                    println!("  {} {}", m.scope, m.key);
                }
                Ok(())
            }
        }
    }
}
