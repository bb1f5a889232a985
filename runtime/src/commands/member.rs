//! `latchkey member …`: workspace members.

use crate::common::{ActorArgs, StoreArgs};
use anyhow::{Context, Result};
use clap::Subcommand;
use latchkey_host::Options;

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Remove a member: delete every secret they created, in every scope.
    Remove {
        /// The member's user name.
        user: String,
        /// Acting identity recorded in the audit trail (default: the OS user).
        #[command(flatten)]
        actor: ActorArgs,
    },
}

impl MemberCommand {
    pub fn execute(self, args: &StoreArgs) -> Result<()> {
        match self {
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
