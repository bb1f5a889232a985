//! `latchkey token …`: API tokens of `latchkey serve`, managed on the local store (to
//! create the first admin token before the server starts).

use crate::common::{ActorArgs, StoreArgs};
use crate::json::{self, JsonArgs};
use crate::remote::{Remote, encode};
use anyhow::Result;
use clap::Subcommand;
use latchkey_host::TokenMeta;
use latchkey_host::{Options, Role};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token for a principal and print it once (only its HMAC is stored).
    Create {
        /// The principal's name (user-name rules: no '/', '@', ':' or control characters).
        #[arg(long)]
        name: String,
        /// `admin` (secrets, members, tokens, workflows), `member` (metadata, audit, runs as
        /// themselves) or `runner` (runs only).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// How long the token authenticates, e.g. `90d`, `12h`, `30m`. Default: until
        /// revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// List tokens: id, principal, role, when created, by whom, revoked (never a token).
    List {
        #[command(flatten)]
        actor: ActorArgs,
        #[command(flatten)]
        json: JsonArgs,
    },
    /// Revoke a token by its id (from `token list`).
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

fn parse_lifetime(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 90d, 12h or 30m: {e}"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{s:?} is under one second"));
    }
    Ok(d)
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: use admin, member or runner"))
}

impl TokenCommand {
    pub fn execute(self, store: &StoreArgs, server: Option<&Remote>) -> Result<()> {
        if let Some(r) = server {
            return self.execute_remote(r);
        }
        let latchkey = store.open(Options::default())?;
        match self {
            TokenCommand::Create {
                name,
                role,
                expires_in,
                actor,
            } => {
                let (meta, token) =
                    latchkey.create_expiring_token(&actor.principal()?, &name, role, expires_in)?;
                eprintln!(
                    "created token {} for {} ({}); it is shown once, keep it secret:",
                    meta.id, meta.name, meta.role
                );
                println!("{}", token.expose());
            }
            TokenCommand::List { actor, json } => {
                print_tokens(&latchkey.list_tokens(&actor.principal()?)?, json)?;
            }
            TokenCommand::Revoke { id, actor } => {
                let t = latchkey.revoke_token(&actor.principal()?, &id)?;
                println!("revoked token {} of {} ({})", t.id, t.name, t.role);
            }
        }
        Ok(())
    }
}

impl TokenCommand {
    fn execute_remote(self, r: &Remote) -> Result<()> {
        match self {
            TokenCommand::Create {
                name,
                role,
                expires_in,
                ..
            } => {
                let created: latchkey_server::api::CreatedToken = r.call(
                    "creating a token",
                    reqwest::Method::POST,
                    "/v1/tokens",
                    Some(&latchkey_server::api::CreateToken {
                        name,
                        role,
                        expires_in_secs: expires_in.map(|d| d.as_secs().max(1)),
                    }),
                )?;
                let m = created.meta;
                eprintln!(
                    "created token {} for {} ({}); it is shown once, keep it secret:",
                    m.id, m.name, m.role
                );
                println!("{}", created.token);
            }
            TokenCommand::List { json, .. } => print_tokens(
                &r.get::<Vec<TokenMeta>>("listing tokens", "/v1/tokens")?,
                json,
            )?,
            TokenCommand::Revoke { id, .. } => {
                let t: TokenMeta = r.call(
                    &format!("revoking token {id}"),
                    reqwest::Method::DELETE,
                    &format!("/v1/tokens/{}", encode(&id)),
                    None::<&()>,
                )?;
                println!("revoked token {} of {} ({})", t.id, t.name, t.role);
            }
        }
        Ok(())
    }
}

/// The tokens, as text or (`--json`) as `GET /v1/tokens` answers them, one per line.
fn print_tokens(tokens: &[TokenMeta], as_json: JsonArgs) -> Result<()> {
    if as_json.json {
        return json::lines(tokens);
    }
    for t in tokens {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.created_at_ms),
        );
        let now = crate::common::unix_millis();
        let revoked = match (t.revoked_at_ms, t.expires_at_ms) {
            (Some(_), _) => " REVOKED".to_owned(),
            (None, Some(e)) => {
                let at = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(e),
                );
                if t.is_active(now) {
                    format!(" expires {at}")
                } else {
                    format!(" EXPIRED {at}")
                }
            }
            (None, None) => String::new(),
        };
        println!(
            "{} {:<24} {:<7} {when} by {}{revoked}",
            t.id, t.name, t.role, t.created_by
        );
    }
    Ok(())
}
